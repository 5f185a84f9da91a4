//! tests/common/servers.rs: running real servers in private namespaces and asking them
//! what they serve.
//!
//! Every server runs in a network namespace of its own (`unshare --net`, root only), so
//! it may bind `0.0.0.0` and `[::]` without touching the host. What the kernel bound is
//! read from /proc/PID/net/{tcp,tcp6,udp,udp6}, which show the namespace of PID, and
//! clients connect from a thread that joined that namespace with setns(2) (which moves
//! only the calling thread). Real clients: HTTP, the memcached text protocol over TCP
//! and UDP, and DNS queries over UDP and TCP built here byte by byte.
//!
//! Missing programs, or no namespaces, are a [`skip`](super::skip): a failure under
//! `FORCE_BIND_REQUIRE=all`, which CI sets (and tests/install-deps.sh installs every
//! program).

use super::*;
// The harness's one skip, also by its old path here (tests/attacks.rs calls
// `common::servers::skip`).
pub use super::skip;

use std::cmp::Ordering as CmpOrdering;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

// ---------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------

/// The path of program `name`: `name` itself when it holds a '/', else the first
/// executable in PATH or in the sbin directories (which a user's PATH may lack).
pub fn find_program(name: &str) -> Option<String> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return is_exec(Path::new(name)).then(|| name.to_string());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exec(p))
        .map(|p| p.to_str().expect("utf-8 path").to_string())
}

/// Why this machine cannot make network and mount namespaces, if it cannot.
pub fn namespaces_unavailable() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        for tool in ["unshare", "nsenter", "ip", "mount"] {
            if find_program(tool).is_none() {
                return Some(format!("{tool} not found (util-linux, mount, iproute2)"));
            }
        }
        let out = Command::new("unshare")
            .args(["--net", "--mount", "--", "ip", "link", "set", "lo", "up"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "unshare --net --mount failed (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run unshare: {e}")),
        }
    })
    .clone()
}

/// Why the bpf engine's tests with servers cannot run here (root, cgroup2,
/// namespaces), if they cannot.
pub fn bpf_servers_unavailable() -> Option<String> {
    super::Engine::Bpf
        .unavailable()
        .or_else(namespaces_unavailable)
}

/// `#[test]`s that need the bpf engine and network namespaces; each skips (through
/// the harness) where `bpf_servers_unavailable` says why.
#[allow(unused_macros)]
macro_rules! bpf_test {
    ($( $(#[$attr:meta])* fn $name:ident() $body:block )*) => {$(
        $(#[$attr])*
        #[test]
        fn $name() {
            if let Some(why) = $crate::common::servers::bpf_servers_unavailable() {
                return $crate::common::skip(&why);
            }
            $body
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use bpf_test;

/// The paths of `programs`, when they are all there and namespaces can be made;
/// otherwise `skip()`s the test (a failure under the switch) and returns None.
pub fn require(programs: &[&str]) -> Option<Vec<String>> {
    if let Some(why) = namespaces_unavailable() {
        skip(&why);
        return None;
    }
    let mut paths = Vec::new();
    for name in programs {
        match find_program(name) {
            Some(p) => paths.push(p),
            None => {
                skip(&format!(
                    "{name} not found (tests/install-deps.sh installs it)"
                ));
                return None;
            }
        }
    }
    Some(paths)
}

// ---------------------------------------------------------------------------
// Helper programs
// ---------------------------------------------------------------------------

/// `tests/go/gosrv` built with `CGO_ENABLED=0` (a static binary that makes its own
/// syscalls), once per test process, into the target directory; `go` is the Go
/// command. Everything the build writes (GOCACHE, GOPATH) stays under the target
/// directory and nothing is fetched: the server uses the standard library only.
pub fn gosrv(go: &str) -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/gosrv");
        let dir = tmp_dir().join("gosrv");
        fs::create_dir_all(&dir).expect("create gosrv dir");
        // Built under a private name and renamed, so concurrent test processes never
        // run a half-written binary.
        let tmp = dir.join(format!("gosrv.{}", std::process::id()));
        let out = Command::new(go)
            .args(["build", "-buildvcs=false", "-trimpath", "-o"])
            .arg(&tmp)
            .arg(".")
            .current_dir(&src)
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOENV", "off")
            .env("GO111MODULE", "on")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {go}: {e}"));
        assert!(
            out.status.success(),
            "go build tests/go/gosrv failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join("gosrv");
        fs::rename(&tmp, &path).expect("rename gosrv");
        assert!(is_static_elf(path.to_str().unwrap()), "gosrv is not static");
        path.to_str().expect("utf-8 path").to_string()
    })
}

/// `tests/c/sd_activate_multi.c`: socket activation with stream and datagram sockets.
pub fn sd_activate_multi() -> &'static str {
    c_program("sd_activate_multi", &[])
}

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

/// `'...'` quoting for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `cmd` run in new namespaces: a network namespace with loopback up, set up further
/// by the shell commands `setup`, and, when `mounts` is not empty, a mount namespace
/// (private propagation, unshare's default) in which each `(file, over)` is
/// bind-mounted over `over`:
/// `unshare --net [--mount] -- sh -c 'ip link set lo up && ... && exec "$@"' sh CMD...`.
/// unshare without --fork and sh's `exec` keep the PID, so the Proc's PID is CMD's
/// own (force-bind, or its wrapper) and the Proc's guard kills it as usual.
pub fn in_new_namespaces(setup: &[&str], mounts: &[(&Path, &str)], cmd: Command) -> Command {
    let mut script = String::from("set -e\nip link set lo up\n");
    for line in setup {
        script.push_str(line);
        script.push('\n');
    }
    for (file, over) in mounts {
        let file = file.to_str().expect("utf-8 path");
        script.push_str(&format!(
            "mount --bind {} {}\n",
            sh_quote(file),
            sh_quote(over)
        ));
    }
    script.push_str("exec \"$@\"\n");
    let mut args = vec!["--net"];
    if !mounts.is_empty() {
        args.push("--mount");
    }
    args.extend(["--", "sh", "-c", &script, "sh"]);
    rewrap("unshare", &args, cmd)
}

/// `cmd` in a new network namespace with loopback up, after the shell commands
/// `setup`; see `in_new_namespaces`.
pub fn in_new_netns(setup: &[&str], cmd: Command) -> Command {
    in_new_namespaces(setup, &[], cmd)
}

/// `cmd` run in the network (and, with `mount`, mount) namespace of `pid`:
/// `nsenter --target PID --net [--mount] -- CMD...` (nsenter execs CMD: same PID).
pub fn in_namespaces_of(pid: i32, mount: bool, cmd: Command) -> Command {
    let pid = pid.to_string();
    let mut args = vec!["--target", &pid, "--net"];
    if mount {
        args.push("--mount");
    }
    args.push("--");
    rewrap("nsenter", &args, cmd)
}

/// `PROGRAM ARGS... CMD...` with CMD's environment changes and working directory.
pub fn rewrap(program: &str, args: &[&str], cmd: Command) -> Command {
    let mut outer = command(program, args);
    outer.arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => outer.env(key, v),
            None => outer.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        outer.current_dir(dir);
    }
    outer
}

/// Runs `f` on a thread that joined the network namespace of `pid` (setns(2) moves
/// only the calling thread), for clients that must reach a server in there.
pub fn in_netns_of<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) with a namespace descriptor we opened; it moves only
            // this thread, which ends when `f` returns.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns {path}: {}", io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .expect("client thread")
    })
}

// ---------------------------------------------------------------------------
// Sockets of a namespace
// ---------------------------------------------------------------------------

/// A listening TCP socket or a bound, unconnected UDP socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub proto: Proto,
    pub addr: SocketAddr,
}

pub fn tcp(addr: SocketAddr) -> Listener {
    Listener {
        proto: Proto::Tcp,
        addr,
    }
}

pub fn udp(addr: SocketAddr) -> Listener {
    Listener {
        proto: Proto::Udp,
        addr,
    }
}

impl Ord for Listener {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        let key = |l: &Listener| (l.proto == Proto::Udp, l.addr);
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for Listener {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{proto} {}", self.addr)
    }
}

impl Listener {
    /// Where a client connects to reach this socket: the loopback address of the
    /// family for a wildcard, the IPv4 address for a v4-mapped one.
    pub fn client_addr(self) -> SocketAddr {
        let ip: IpAddr = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(a) if a.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => v4.into(),
                None => a.into(),
            },
            a => a,
        };
        SocketAddr::new(ip, self.addr.port())
    }
}

/// Every listener of the network namespace of `pid`, with its socket inode; Err once
/// `pid` is gone.
pub fn listeners_of(pid: i32) -> io::Result<Vec<(Listener, u64)>> {
    let mut out = Vec::new();
    for (file, proto, state) in [
        ("tcp", Proto::Tcp, TCP_LISTEN),
        ("tcp6", Proto::Tcp, TCP_LISTEN),
        ("udp", Proto::Udp, TCP_CLOSE),
        ("udp6", Proto::Udp, TCP_CLOSE),
    ] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{file}"))?;
        out.extend(
            parse_proc_net(&text)
                .into_iter()
                .filter(|s| s.state == state)
                .map(|s| {
                    (
                        Listener {
                            proto,
                            addr: s.addr,
                        },
                        s.inode,
                    )
                }),
        );
    }
    Ok(out)
}

/// The listeners of the namespace of `pid` split into those on `ports` and the others.
pub fn listeners_split(pid: i32, ports: &[u16]) -> (BTreeSet<Listener>, BTreeSet<Listener>) {
    listeners_of(pid)
        .unwrap_or_default()
        .into_iter()
        .map(|(l, _)| l)
        .partition(|l| ports.contains(&l.addr.port()))
}

/// The socket inode of listener `l` in the namespace of `pid`.
pub fn inode_of(pid: i32, l: Listener) -> Option<u64> {
    listeners_of(pid)
        .ok()?
        .into_iter()
        .find_map(|(found, inode)| (found == l).then_some(inode))
}

/// `root` and its descendants that have socket `inode` open, with their command names.
pub fn holders(root: i32, inode: u64) -> Vec<(i32, String)> {
    let link = format!("socket:[{inode}]");
    std::iter::once(root)
        .chain(descendants(root))
        .filter(|&p| {
            fs::read_dir(format!("/proc/{p}/fd")).is_ok_and(|dir| {
                dir.flatten().any(|e| {
                    fs::read_link(e.path()).is_ok_and(|t| t.to_str() == Some(link.as_str()))
                })
            })
        })
        .map(|p| (p, comm(p).unwrap_or_default()))
        .collect()
}

/// Who holds listener `l` of the namespace of `root`, among `root` and its
/// descendants, for assertion messages: `[(pid, comm)...]`, or why nobody does.
pub fn describe_holders(root: i32, l: Listener) -> String {
    match inode_of(root, l) {
        Some(inode) => format!("{l:?} is held by {:?}", holders(root, inode)),
        None => format!("{l:?} is gone"),
    }
}

/// Waits (bounded) until the listeners of `server`'s namespace on `ports` are exactly
/// `want`; panics with what was there and the server's output otherwise, or when the
/// server exits first.
pub fn wait_listeners(server: &mut Proc, ports: &[u16], want: &BTreeSet<Listener>) {
    let mut last = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if !server.is_running() {
            panic!(
                "the server exited before listening at {want:?} (it had {last:?})\n{}",
                server.context()
            );
        }
        last = listeners_split(server.pid(), ports).0;
        if last == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "listeners on ports {ports:?}: want {want:?}, have {last:?}\n{}",
            server.context()
        );
        thread::sleep(STEP);
    }
}

/// Asserts that `server`'s namespace has no listener on a port other than `ports`.
pub fn assert_no_other_listeners(server: &Proc, ports: &[u16]) {
    let others = listeners_split(server.pid(), ports).1;
    assert!(
        others.is_empty(),
        "listeners on other ports than {ports:?}: {others:?}\n{}",
        server.context()
    );
}

/// Waits (bounded) for `server` to exit by itself, watching its namespace meanwhile;
/// returns how it ended and every listener seen on `ports` while it ran.
pub fn watch_until_exit(server: Proc, ports: &[u16]) -> (Finished, BTreeSet<Listener>) {
    let mut server = server;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while server.is_running() && Instant::now() < deadline {
        seen.extend(listeners_split(server.pid(), ports).0);
        thread::sleep(Duration::from_millis(5));
    }
    (server.finish(Duration::ZERO), seen)
}

// ---------------------------------------------------------------------------
// Clients (run them with `in_netns_of`)
// ---------------------------------------------------------------------------

/// Retries `attempt` until it succeeds or `WAIT` passes (a server may still be
/// starting, or be started by the first connection); the last error otherwise.
pub fn retry<T>(
    what: &str,
    mut attempt: impl FnMut(Duration) -> io::Result<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match attempt(left.clamp(Duration::from_millis(100), Duration::from_secs(3))) {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(format!("{what}: {e}")),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn stream(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// `GET /` at `addr`: the status and the body.
pub fn http_get_body(addr: SocketAddr) -> Result<(u16, String), String> {
    retry(&format!("GET http://{addr}/"), |timeout| {
        let mut s = stream(addr, timeout)?;
        s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut response = Vec::new();
        (&mut s).take(64 * 1024).read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.lines().next().unwrap_or_default();
        match status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
        {
            Some(code) if status.starts_with("HTTP/") => Ok((code, body.to_string())),
            _ => Err(io::Error::other(format!("not an HTTP response: {text:?}"))),
        }
    })
}

/// memcached's `version` command over TCP; returns the reply line.
pub fn memcached_version_tcp(addr: SocketAddr) -> Result<String, String> {
    retry(&format!("memcached version over tcp {addr}"), |timeout| {
        let mut s = stream(addr, timeout)?;
        s.write_all(b"version\r\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        reply_starting(line.trim_end(), "VERSION ")
    })
}

/// memcached's `version` command over UDP, in its 8-byte frame (request id, sequence
/// number, datagram count, reserved: protocol.txt "UDP protocol"); returns the reply.
pub fn memcached_version_udp(addr: SocketAddr) -> Result<String, String> {
    retry(&format!("memcached version over udp {addr}"), |timeout| {
        let frame: &[u8] = &[0x12, 0x34, 0, 0, 0, 1, 0, 0];
        let reply = udp_exchange(addr, &[frame, b"version\r\n"].concat(), timeout)?;
        if reply.len() < 8 || reply[..2] != [0x12, 0x34] {
            return Err(io::Error::other(format!("bad UDP frame: {reply:?}")));
        }
        reply_starting(String::from_utf8_lossy(&reply[8..]).trim_end(), "VERSION ")
    })
}

fn reply_starting(reply: &str, prefix: &str) -> io::Result<String> {
    if reply.starts_with(prefix) {
        Ok(reply.to_string())
    } else {
        Err(io::Error::other(format!("unexpected reply {reply:?}")))
    }
}

/// One datagram to `addr` from a fresh socket of its family, and the answer.
fn udp_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => v4("0.0.0.0", 0),
        SocketAddr::V6(_) => v6("::", 0),
    };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.send(request)?;
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf)?;
    Ok(buf[..n].to_vec())
}

/// A DNS query (RFC 1035 4.1) for the A record of `name`, with `id` and RD set.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // flags: standard query, recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1, AN/NS/AR 0
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // QTYPE A, QCLASS IN
    q
}

/// The first A record of a DNS response to query `id`.
pub fn dns_answer(id: u16, msg: &[u8]) -> Result<Ipv4Addr, String> {
    let bad = |why: &str| format!("{why}: {msg:02x?}");
    let u16_at = |o: usize| -> Result<u16, String> {
        msg.get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("truncated"))
    };
    if u16_at(0)? != id || msg[2] & 0x80 == 0 {
        return Err(bad("not the response to our query"));
    }
    if msg[3] & 0x0f != 0 {
        return Err(bad(&format!("rcode {}", msg[3] & 0x0f)));
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    // A name: labels ending in a zero byte, or in a two-byte compression pointer.
    let skip_name = |mut o: usize| -> Result<usize, String> {
        loop {
            let len = *msg.get(o).ok_or_else(|| bad("truncated name"))?;
            match len {
                0 => return Ok(o + 1),
                l if l & 0xc0 == 0xc0 => return Ok(o + 2),
                l => o += 1 + l as usize,
            }
        }
    };
    let mut o = 12;
    for _ in 0..qd {
        o = skip_name(o)? + 4;
    }
    for _ in 0..an {
        o = skip_name(o)?;
        let (rtype, rdlen) = (u16_at(o)?, u16_at(o + 8)? as usize);
        let rdata = msg
            .get(o + 10..o + 10 + rdlen)
            .ok_or_else(|| bad("truncated rdata"))?;
        if rtype == 1 && rdlen == 4 {
            return Ok(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        o += 10 + rdlen;
    }
    Err(bad("no A record"))
}

/// The A record of `name` from the DNS server at `addr`, over UDP.
pub fn dns_lookup_udp(addr: SocketAddr, name: &str) -> Result<Ipv4Addr, String> {
    let reply = retry(
        &format!("DNS query for {name} over udp {addr}"),
        |timeout| udp_exchange(addr, &dns_query(0x4242, name), timeout),
    )?;
    dns_answer(0x4242, &reply)
}

/// The A record of `name` from the DNS server at `addr`, over TCP (each message
/// after a two-byte length, RFC 1035 4.2.2).
pub fn dns_lookup_tcp(addr: SocketAddr, name: &str) -> Result<Ipv4Addr, String> {
    let reply = retry(
        &format!("DNS query for {name} over tcp {addr}"),
        |timeout| {
            let mut s = stream(addr, timeout)?;
            let q = dns_query(0x4343, name);
            s.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat())?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut reply)?;
            Ok(reply)
        },
    )?;
    dns_answer(0x4343, &reply)
}

/// dnsmasq as a plain DNS server on `port`: in the foreground, logging to stderr,
/// no configuration, upstream servers, hosts file, pid file or DHCP, answering
/// `ADDRESSES` (`--address=/NAME/IP` values) itself.
pub fn dnsmasq_args(dnsmasq: &str, port: u16, addresses: &[&str]) -> Vec<String> {
    let mut args = vec![
        dnsmasq.to_string(),
        "--no-daemon".into(),
        "--log-facility=-".into(),
        "--conf-file=/dev/null".into(),
        format!("--port={port}"),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
        "--group=root".into(),
        "--pid-file=".into(),
    ];
    args.extend(addresses.iter().map(|a| format!("--address={a}")));
    args
}
