// diagnose.rs: why a bind failed, for the -v line. EADDRINUSE: who holds the address
// (the socket's inode in the target's /proc/PID/net/{tcp,udp}{,6}, matched against
// every process's descriptors). EADDRNOTAVAIL: whether the address is on a local
// interface of the target's network namespace (/proc/PID/net/fib_trie, if_inet6).
// Only runs when a bind already failed; parsing is pure and unit-tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nix::unistd::Pid;

use crate::event::Holder;

/// TCP_LISTEN in /proc/net/tcp's `st` column.
const TCP_LISTEN: u8 = 0x0a;
/// TCP_TIME_WAIT: a socket that is gone but for its timer, owned by nobody.
const TCP_TIME_WAIT: u8 = 0x06;

/// One row of /proc/net/{tcp,udp}{,6}.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetRow {
    pub local: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// Decodes the kernel's `ADDR:PORT` hex: the address as the in-memory 32-bit words of
/// in_addr/in6_addr printed with %08X (so each word in host order), the port %04X.
pub fn decode_hex_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

pub fn parse_net_table(text: &str) -> Vec<NetRow> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(NetRow {
                local: decode_hex_addr(f.get(1)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether a socket bound to `row` is in the way of binding `want`: same port, and
/// the same address or a wildcard on either side (v4-mapped addresses compared as
/// IPv4).
fn conflicts(row: &SocketAddr, want: &SocketAddr) -> bool {
    let norm = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let (a, b) = (norm(row.ip()), norm(want.ip()));
    row.port() == want.port() && (a == b || a.is_unspecified() || b.is_unspecified())
}

/// The inode of the socket that most likely holds `want`: a listener first, then
/// any other bound socket but one in TIME_WAIT.
pub fn holding_inode(rows: &[NetRow], want: &SocketAddr) -> Option<u64> {
    let candidates = rows
        .iter()
        .filter(|r| r.inode != 0 && r.state != TCP_TIME_WAIT && conflicts(&r.local, want));
    let (listening, other): (Vec<&NetRow>, Vec<&NetRow>) =
        candidates.partition(|r| r.state == TCP_LISTEN);
    listening.first().or(other.first()).map(|r| r.inode)
}

/// Who holds `want`, as seen from the network namespace of `pid`.
pub fn holder(pid: Pid, want: SocketAddr, sock_type: Option<i32>) -> Holder {
    let tables: &[&str] = match sock_type {
        Some(libc::SOCK_DGRAM) => &["udp", "udp6"],
        Some(libc::SOCK_STREAM) => &["tcp", "tcp6"],
        _ => &["tcp", "tcp6", "udp", "udp6"],
    };
    let rows: Vec<NetRow> = tables
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| parse_net_table(&text))
        .collect();
    match holding_inode(&rows, &want).and_then(owner_of_socket) {
        Some((pid, comm)) => Holder::Process { pid, comm },
        None => Holder::Unknown,
    }
}

/// Where TCP socket `inode` of `pid`'s network namespace listens, from
/// /proc/PID/net/tcp{,6} (a listening socket is in those tables; one that is only
/// bound is not): for events before Linux 5.6, where there is no copy to ask.
pub fn listening_addr(pid: Pid, inode: u64) -> Option<SocketAddr> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| parse_net_table(&text))
        .find(|row| row.inode == inode)
        .map(|row| row.local)
}

/// The process with a descriptor on socket `inode`: a scan of /proc/*/fd, bounded by
/// the number of processes and descriptors on the machine.
fn owner_of_socket(inode: u64) -> Option<(i32, String)> {
    let needle = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == needle.as_str()) {
                return Some((pid, crate::target::comm(Pid::from_raw(pid))));
            }
        }
    }
    None
}

/// Local IPv4 addresses from /proc/net/fib_trie: the address line before a
/// "/32 host LOCAL" line.
pub fn parse_fib_trie_local(text: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut local = Vec::new();
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']).trim();
        if let Ok(ip) = t.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !local.contains(&ip)
        {
            local.push(ip);
        }
    }
    local
}

/// Local IPv6 addresses from /proc/net/if_inet6 (32 hex digits first on each line).
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|l| u128::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

/// A hint for EADDRNOTAVAIL when `ip` is not an address of the target's interfaces.
pub fn not_local_hint(pid: Pid, ip: IpAddr) -> Option<String> {
    let local = match ip {
        // The whole of 127.0.0.0/8 is local on Linux.
        IpAddr::V4(v4) if v4.is_loopback() => true,
        IpAddr::V4(v4) => std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie"))
            .map(|t| parse_fib_trie_local(&t).contains(&v4))
            .unwrap_or(true),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return not_local_hint(pid, IpAddr::V4(v4)),
            None => std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6"))
                .map(|t| parse_if_inet6(&t).contains(&v6))
                .unwrap_or(true),
        },
    };
    (!local && !ip.is_unspecified())
        .then(|| format!("{ip} is not an address of any local interface (see `ip address`); IP_FREEBIND would allow it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 100 0 0 10 0
   2: 0100007F:1F92 0100007F:D431 06 00000000:00000000 03:00001767 00000000     0        0 0 3 0
   3: 0200007F:1F93 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3333 2 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F94 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0
   1: 0000000000000000FFFF00000100007F:1F95 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0
";

    #[test]
    fn decodes_proc_net_rows() {
        let rows = parse_net_table(TCP);
        assert_eq!(
            rows[0],
            NetRow {
                local: "127.0.0.1:8080".parse().unwrap(),
                state: 0x0a,
                inode: 1111
            }
        );
        assert_eq!(rows[1].local, "0.0.0.0:8081".parse().unwrap());
        let rows6 = parse_net_table(TCP6);
        assert_eq!(rows6[0].local, "[::1]:8084".parse().unwrap());
        assert_eq!(rows6[1].local, "[::ffff:127.0.0.1]:8085".parse().unwrap());
        assert_eq!(decode_hex_addr("zz:1"), None);
        assert_eq!(decode_hex_addr("0100007F"), None);
    }

    #[test]
    fn finds_who_is_in_the_way() {
        let mut rows = parse_net_table(TCP);
        rows.extend(parse_net_table(TCP6));
        let holder = |want: &str| holding_inode(&rows, &want.parse().unwrap());
        assert_eq!(holder("127.0.0.1:8080"), Some(1111));
        assert_eq!(holder("0.0.0.0:8080"), Some(1111));
        assert_eq!(holder("127.0.0.5:8081"), Some(2222)); // wildcard holder
        assert_eq!(holder("127.0.0.1:8082"), None); // TIME_WAIT has no owner
        assert_eq!(holder("127.0.0.2:8083"), Some(3333)); // bound, not listening
        assert_eq!(holder("127.0.0.1:8085"), Some(5555)); // v4-mapped holder
        assert_eq!(holder("[::1]:8084"), Some(4444));
        assert_eq!(holder("[::1]:8080"), None);
        assert_eq!(holder("127.0.0.1:9999"), None);
    }

    #[test]
    fn reads_local_addresses() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.0.0.0/24 2 0 2\n        |-- 10.0.0.5\n           /32 host LOCAL\n        |-- 10.0.0.255\n           /32 link BROADCAST\n";
        assert_eq!(parse_fib_trie_local(trie), vec![Ipv4Addr::new(10, 0, 0, 5)]);
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\nfd000000000000000000000000000001 02 40 00 80    dummy0\n";
        assert_eq!(
            parse_if_inet6(inet6),
            vec![
                "::1".parse::<Ipv6Addr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
    }
}
