// resolve.rs: turn the host names written in rules into addresses, once, at start-up.
//
// Not getaddrinfo(3): the static build links glibc with +crt-static, and glibc answers
// host lookups through NSS, which dlopen()s libnss_*.so at run time; a static binary
// cannot load them safely (they need the shared libc of the same version), so the
// lookup would fail or crash. Instead we follow /etc/nsswitch.conf ourselves, read
// /etc/hosts and ask the nameservers of /etc/resolv.conf over DNS, identically in every
// build, so a static and a dynamic force-bind never disagree about what a name means.
// A plain RFC 1035 stub: no EDNS(0), no DNSSEC, no cache (each name is asked once).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const NSSWITCH: &str = "/etc/nsswitch.conf";
const HOSTS: &str = "/etc/hosts";
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// resolv.conf(5): "Up to MAXNS (currently 3) name servers", "up to 6 domains"; glibc
/// caps `ndots:` at 15 and `attempts:` at 5.
const MAX_SERVERS: usize = 3;
const MAX_SEARCH: usize = 6;
const MAX_NDOTS: usize = 15;
const MAX_ATTEMPTS: u32 = 5;
/// One try waits at most this long (glibc's default is 5 s): start-up must not hang.
const MAX_TRY: Duration = Duration::from_secs(2);
/// The whole DNS part of one lookup, every search domain, server and attempt included.
const DNS_BUDGET: Duration = Duration::from_secs(5);
/// More datagrams than this in one try is a flood, not a server.
const MAX_DATAGRAMS: usize = 64;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_NOERROR: u16 = 0;
const RCODE_NXDOMAIN: u16 = 3;
/// AAAA first: glibc's RFC 6724 default policy sorts ::1 before 127.0.0.1.
const QTYPES: [u16; 2] = [TYPE_AAAA, TYPE_A];

/// Why a name gave no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError(pub String);

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LookupError {}

/// What one source said, in NSS's terms: Some(empty) is NOTFOUND, None is UNAVAIL.
type Answer = Option<Vec<IpAddr>>;

/// Every address of `name`, in the system resolver's order, duplicates removed; Err when there is none.
pub fn lookup(name: &str) -> Result<Vec<IpAddr>, LookupError> {
    if let Ok(address) = name.parse::<IpAddr>() {
        return Ok(vec![address]);
    }
    let invalid = |why| LookupError(format!("'{name}' is not a host name: {why}"));
    check_host_name(name).map_err(invalid)?;
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let mut tried = Vec::new();
    for (source, stop_on_notfound) in host_sources(&read(NSSWITCH)) {
        let answer = match source {
            // A missing /etc/hosts is UNAVAIL to glibc, here NOTFOUND: only
            // [NOTFOUND=return] tells them apart, and nobody writes that after files.
            Source::Files => {
                tried.push(HOSTS.to_string());
                Some(hosts_addresses(&read(HOSTS), name))
            }
            Source::Dns => {
                let conf = ResolvConf::parse(&read(RESOLV_CONF));
                let tries = Tries::within(conf.timeout, conf.attempts, DNS_BUDGET);
                let answer = dns_addresses(&conf.candidates(name), &conf.servers, &tries);
                let servers: Vec<String> =
                    conf.servers.iter().map(|s| s.ip().to_string()).collect();
                let silent = if answer.is_none() { ": no reply" } else { "" };
                tried.push(format!("DNS (nameservers {}{silent})", servers.join(", ")));
                answer
            }
        };
        match answer {
            Some(mut addresses) if !addresses.is_empty() => {
                let mut seen = HashSet::new();
                addresses.retain(|address| seen.insert(*address));
                return Ok(addresses);
            }
            Some(_) if stop_on_notfound => break,
            _ => {}
        }
    }
    let tried = tried.join(" or ");
    Err(LookupError(format!("no address for '{name}' in {tried}")))
}

/// Letters, digits, '-', '_' (seen in real names) and dots, no empty label; a trailing
/// dot is allowed (it makes the name absolute).
fn check_host_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let odd = |c: &char| !(c.is_ascii_alphanumeric() || "-._".contains(*c));
    if bare.is_empty() {
        Err("it is empty".into())
    } else if bare.len() > 253 {
        Err(format!("it has {} characters, more than 253", bare.len()))
    } else if let Some(c) = bare.chars().find(odd) {
        Err(format!("{c:?} is not a letter, digit, '-', '_' or '.'"))
    } else if bare.split('.').any(str::is_empty) {
        Err("it has an empty label".into())
    } else if let Some(label) = bare.split('.').find(|label| label.len() > 63) {
        Err(format!("label '{label}' has more than 63 characters"))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Files,
    Dns,
}

/// The sources of nsswitch.conf's `hosts:` line we know, in order, each with whether
/// `[NOTFOUND=return]` follows it: of the actions we honour only that one (a definite
/// "no such name" ends the lookup) and ignore the rest, e.g. `[!UNAVAIL=return]`, so we
/// at worst ask one source more than glibc. An action after a service we skip
/// (`mdns4_minimal [NOTFOUND=return] dns`) is that service's, and dropped with it.
/// `resolve` (systemd-resolved) is asked as DNS, through the stub in resolv.conf.
fn host_sources(nsswitch: &str) -> Vec<(Source, bool)> {
    let line = nsswitch.lines().find_map(|line| {
        let (database, services) = line.split('#').next()?.split_once(':')?;
        let hosts = database.trim().eq_ignore_ascii_case("hosts");
        hosts.then_some(services)
    });
    let words = line.unwrap_or("").replace('[', " [ ").replace(']', " ] ");
    let mut sources: Vec<(Source, bool)> = Vec::new();
    let (mut last, mut in_action): (Option<usize>, bool) = (None, false);
    for word in words.split_whitespace() {
        let source = match word.to_ascii_lowercase().as_str() {
            "[" | "]" => {
                in_action = word == "[";
                continue;
            }
            "notfound=return" if in_action => {
                if let Some(i) = last {
                    sources[i].1 = true;
                }
                continue;
            }
            _ if in_action => continue,
            "files" => Some(Source::Files),
            "dns" | "resolve" => Some(Source::Dns),
            _ => None,
        };
        last = None;
        if let Some(source) = source.filter(|s| !sources.iter().any(|(known, _)| known == s)) {
            sources.push((source, false));
            last = Some(sources.len() - 1);
        }
    }
    if sources.is_empty() {
        return vec![(Source::Files, false), (Source::Dns, false)];
    }
    sources
}

/// The addresses /etc/hosts gives `name` (any case, a trailing dot ignored), in file
/// order. Scoped addresses (`fe80::1%lo`) do not parse as IpAddr and are skipped.
fn hosts_addresses(hosts: &str, name: &str) -> Vec<IpAddr> {
    let bare = |name: &'_ str| name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let name = bare(name);
    let entry = |line: &str| {
        let mut fields = line.split('#').next()?.split_whitespace();
        let address = fields.next()?.parse::<IpAddr>().ok()?;
        fields.any(|alias| bare(alias) == name).then_some(address)
    };
    hosts.lines().filter_map(entry).collect()
}

/// What resolv.conf(5) says, as far as we use it. Not read: `sortlist`, `rotate`, the
/// RES_OPTIONS and LOCALDOMAIN variables, and the host's own domain as default search.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResolvConf {
    servers: Vec<SocketAddr>,
    search: Vec<String>,
    ndots: usize,
    timeout: Duration,
    attempts: u32,
}

impl ResolvConf {
    fn parse(text: &str) -> ResolvConf {
        let (servers, search) = (Vec::new(), Vec::new());
        let (ndots, timeout, attempts) = (1, MAX_TRY, 2);
        let mut conf = ResolvConf {
            servers,
            search,
            ndots,
            timeout,
            attempts,
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") if conf.servers.len() < MAX_SERVERS => {
                    conf.servers
                        .extend(words.next().and_then(nameserver_address));
                }
                // The last `search` or `domain` line wins, as in glibc.
                Some("search" | "domain") => {
                    let domains = words.map(|domain| domain.trim_end_matches('.'));
                    let domains = domains.filter(|domain| !domain.is_empty());
                    conf.search = domains.take(MAX_SEARCH).map(str::to_string).collect();
                }
                Some("options") => {
                    for (option, value) in words.filter_map(|word| word.split_once(':')) {
                        let Ok(n) = value.parse::<u32>() else {
                            continue;
                        };
                        let seconds = Duration::from_secs(n.max(1).into());
                        match option {
                            "ndots" => conf.ndots = (n as usize).min(MAX_NDOTS),
                            "timeout" => conf.timeout = seconds.min(MAX_TRY),
                            "attempts" => conf.attempts = n.clamp(1, MAX_ATTEMPTS),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            conf.servers.push((Ipv4Addr::LOCALHOST, 53).into());
        }
        conf
    }

    /// The names to ask, in glibc's order: with fewer than `ndots` dots the search list
    /// first, then the name as given; otherwise the other way round. A trailing dot makes
    /// the name absolute: only it is asked.
    fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.search.iter().map(|domain| format!("{name}.{domain}"));
        let mut names: Vec<String> = searched.filter(|n| check_host_name(n).is_ok()).collect();
        let bare_first = name.matches('.').count() >= self.ndots;
        names.insert(if bare_first { 0 } else { names.len() }, name.to_string());
        names
    }
}

/// `192.0.2.1`, `2001:db8::1`, or `fe80::1%eth0` (interface name or index), port 53.
fn nameserver_address(text: &str) -> Option<SocketAddr> {
    let Some((address, scope)) = text.split_once('%') else {
        return Some((text.parse::<IpAddr>().ok()?, 53).into());
    };
    let scope_id = scope.parse().ok().or_else(|| interface_index(scope))?;
    Some(SocketAddrV6::new(address.parse().ok()?, 53, 0, scope_id).into())
}

fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call, which only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// How long to wait: per try, how many rounds over the servers, when to give up anyway.
struct Tries {
    per_try: Duration,
    attempts: u32,
    deadline: Instant,
}

impl Tries {
    fn within(per_try: Duration, attempts: u32, budget: Duration) -> Tries {
        let deadline = Instant::now() + budget;
        Tries {
            per_try,
            attempts,
            deadline,
        }
    }
}

/// Asks `servers` about each candidate name in turn until one has addresses: its AAAA
/// answers, then its A answers. A candidate nobody answered does not end the search (the
/// deadline bounds it), but turns a final NOTFOUND into UNAVAIL.
fn dns_addresses(candidates: &[String], servers: &[SocketAddr], tries: &Tries) -> Answer {
    let mut unanswered = false;
    for qname in candidates {
        let answers = ask_servers(qname, servers, tries);
        unanswered |= answers.iter().any(Option::is_none);
        let addresses: Vec<IpAddr> = answers.into_iter().flatten().flatten().collect();
        if !addresses.is_empty() {
            return Some(addresses);
        }
    }
    (!unanswered).then(Vec::new)
}

/// The answer to each of QTYPES about `qname`, from the first server that gave one.
fn ask_servers(qname: &str, servers: &[SocketAddr], tries: &Tries) -> [Answer; 2] {
    let mut answers = [None, None];
    for _ in 0..tries.attempts {
        for &server in servers {
            let until = (Instant::now() + tries.per_try).min(tries.deadline);
            if remaining(until).is_none() || answers.iter().all(Option::is_some) {
                return answers;
            }
            ask(server, qname, &mut answers, until);
        }
    }
    answers
}

fn remaining(until: Instant) -> Option<Duration> {
    let left = until.checked_duration_since(Instant::now())?;
    (!left.is_zero()).then_some(left)
}

/// One try at one server: sends the queries not yet answered together over UDP (as glibc
/// does), fills in the replies that match, and asks again over TCP when one is truncated.
fn ask(server: SocketAddr, qname: &str, answers: &mut [Answer; 2], until: Instant) {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // connect(2) makes the kernel drop datagrams from anyone else, and report ICMP "port
    // unreachable" as ECONNREFUSED, so a server that is down fails at once.
    let socket = UdpSocket::bind(local).and_then(|socket| socket.connect(server).map(|()| socket));
    let Ok(socket) = socket else { return };
    let mut pending = Vec::new();
    for (slot, qtype) in QTYPES.into_iter().enumerate() {
        let query = encode_query(random_id(), qname, qtype);
        if answers[slot].is_none() {
            // The ICMP error of the first query fails the next call, which may be this.
            if socket.send(&query).is_err() {
                return;
            }
            pending.push((slot, query));
        }
    }
    let mut buffer = [0u8; 4096];
    for _ in 0..MAX_DATAGRAMS {
        let Some(left) = remaining(until).filter(|_| !pending.is_empty()) else {
            return;
        };
        let received = socket
            .set_read_timeout(Some(left))
            .and_then(|()| socket.recv_from(&mut buffer));
        let Ok((len, from)) = received else { return };
        if from != server {
            continue;
        }
        let packet = &buffer[..len];
        let found = pending
            .iter()
            .enumerate()
            .find_map(|(i, (_, query))| parse_reply(packet, query).map(|r| (i, r)));
        let Some((i, mut reply)) = found else {
            continue;
        };
        let (slot, query) = pending.swap_remove(i);
        if reply.truncated {
            match ask_tcp(server, &query, until).and_then(|packet| parse_reply(&packet, &query)) {
                Some(full) if !full.truncated => reply = full,
                _ => continue,
            }
        }
        answers[slot] = match reply.rcode {
            RCODE_NOERROR => Some(reply.addresses),
            RCODE_NXDOMAIN => Some(Vec::new()),
            // SERVFAIL, REFUSED, ...: the next server may know better.
            _ => None,
        };
    }
}

/// RFC 1035 4.2.2: the same query over TCP, each message prefixed by its 2-byte length.
fn ask_tcp(server: SocketAddr, query: &[u8], until: Instant) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, remaining(until)?).ok()?;
    stream.set_write_timeout(Some(remaining(until)?)).ok()?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).ok()?;
    let mut length = [0u8; 2];
    read_until(&mut stream, &mut length, until)?;
    let mut reply = vec![0u8; u16::from_be_bytes(length).into()];
    read_until(&mut stream, &mut reply, until)?;
    Some(reply)
}

/// read_exact that gives up at `until`, however slowly the peer drips the bytes.
fn read_until(stream: &mut TcpStream, buffer: &mut [u8], until: Instant) -> Option<()> {
    let mut filled = 0;
    while filled < buffer.len() {
        stream.set_read_timeout(Some(remaining(until)?)).ok()?;
        match stream.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
    }
    Some(())
}

/// A query id an off-path attacker cannot guess (RFC 5452). No rand crate: SipHash under
/// std's random per-process keys, which RandomState::new() changes on every call.
fn random_id() -> u16 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u16
}

/// A standard query with RD set; `qname` is a checked host name without a trailing dot.
fn encode_query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in qname.split('.').filter(|label| !label.is_empty()) {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&[qtype.to_be_bytes(), CLASS_IN.to_be_bytes()].concat());
    query
}

/// A reply to one of our queries, as far as we use it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    rcode: u16,
    truncated: bool,
    /// The addresses of the asked type for the asked name or the end of its CNAME chain.
    addresses: Vec<IpAddr>,
}

/// Decodes `packet` if it answers `query` (same id, question, type and class); None for
/// anything else (another query's reply, garbage), which the caller ignores.
fn parse_reply(packet: &[u8], query: &[u8]) -> Option<Reply> {
    let u16_at = |at: usize| Some(u16::from_be_bytes(packet.get(at..at + 2)?.try_into().ok()?));
    let (flags, answers) = (u16_at(2)?, u16_at(6)?);
    // Our query is its header and question: the reply must repeat both (QR set, no
    // other question; RFC 1035 4.1.1), the name in any case.
    let question = query.get(12..)?;
    let same_question = packet
        .get(12..12 + question.len())?
        .eq_ignore_ascii_case(question);
    if packet[..2] != query[..2] || flags & 0x8000 == 0 || u16_at(4)? != 1 || !same_question {
        return None;
    }
    let (rcode, truncated) = (flags & 0x000f, flags & 0x0200 != 0);
    let (mut at, mut addresses) = (12 + question.len(), Vec::new());
    let qtype = u16_at(at - 4)?; // ours: the question matched
    // The chain from the asked name, in the answer section's order, as glibc follows it.
    let (mut owner, _) = read_name(packet, 12)?;
    // A truncated answer section is cut anywhere: the caller asks again over TCP.
    let records = if truncated { 0 } else { answers };
    // Each record takes at least 11 bytes or fails, so the packet bounds this loop.
    for _ in 0..records {
        let (name, next) = read_name(packet, at)?;
        let (rtype, class) = (u16_at(next)?, u16_at(next + 2)?);
        let length = usize::from(u16_at(next + 8)?);
        let rdata = packet.get(next + 10..next + 10 + length)?;
        let v4 = <[u8; 4]>::try_from(rdata).ok().map(IpAddr::from);
        let v6 = <[u8; 16]>::try_from(rdata).ok().map(IpAddr::from);
        match rtype {
            _ if name != owner || class != CLASS_IN => {}
            TYPE_CNAME => owner = read_name(packet, next + 10)?.0,
            // qtype is A or AAAA; a record of the wrong length is skipped.
            _ if rtype == qtype => addresses.extend(if rtype == TYPE_A { v4 } else { v6 }),
            _ => {}
        }
        at = next + 10 + length;
    }
    Some(Reply {
        rcode,
        truncated,
        addresses,
    })
}

/// The name at `at`, lowercased, labels joined by dots, and the offset just past it.
/// Compression pointers (RFC 1035 4.1.4) may only point backwards, and at most 128
/// steps are taken, so a hostile packet cannot make us loop.
fn read_name(packet: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let (mut name, mut end) = (Vec::new(), None);
    for _ in 0..128 {
        let length = usize::from(*packet.get(at)?);
        match length {
            0 => return Some((name, end.unwrap_or(at + 1))),
            0xc0.. => {
                let target = (length & 0x3f) << 8 | usize::from(*packet.get(at + 1)?);
                end.get_or_insert(at + 2);
                at = Some(target).filter(|&target| target < at)?;
            }
            // 0x40 and 0x80 are extended and reserved label types (RFC 6891).
            0x40.. => return None,
            _ => {
                let label = packet.get(at + 1..at + 1 + length)?;
                if !name.is_empty() {
                    name.push(b'.');
                }
                name.extend(label.iter().map(u8::to_ascii_lowercase));
                at += 1 + length;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn host_names_table() {
        let (long_label, long_name) = ("a".repeat(64), ["abcdefghi"; 26].join("."));
        let good = "localhost|web.internal.|_srv-1.Example.COM|9.9".split('|');
        for name in good.chain([&"a".repeat(63) as &str]) {
            assert_eq!(check_host_name(name), Ok(()), "{name:?}");
        }
        let bad = "|.|a..b|.a|a b|a/b|ünï|a:b|a\0".split('|');
        for name in bad.chain([&long_label as &str, &long_name]) {
            assert!(check_host_name(name).is_err(), "{name:?}");
        }
        let error = lookup("bad name").unwrap_err().to_string();
        let why = "' ' is not a letter, digit, '-', '_' or '.'";
        assert_eq!(error, format!("'bad name' is not a host name: {why}"));
        assert_eq!(lookup("::1"), Ok(ips(&["::1"])));
    }

    #[test]
    fn nsswitch_table() {
        // Expected sources, "!" after one that [NOTFOUND=return] follows.
        let cases = [
            ("", "files dns"),
            ("passwd: files\nhosts: myhostname", "files dns"),
            ("hosts: dns files\n", "dns files"),
            ("hosts:files mdns4 [NOTFOUND=return] dns", "files dns"),
            ("hosts: files resolve [!UNAVAIL=return] dns", "files dns"),
            ("HOSTS:  Files [ notfound=RETURN ] dns # x", "files! dns"),
            ("hosts: dns[NOTFOUND=return]files", "dns! files"),
            ("# hosts: dns\nhosts: files [", "files"),
        ];
        for (text, want) in cases {
            let show = |(source, stop)| format!("{source:?}{}", if stop { "!" } else { "" });
            let got: Vec<String> = host_sources(text).into_iter().map(show).collect();
            assert_eq!(got.join(" ").to_lowercase(), want, "{text:?}");
        }
    }

    #[test]
    fn hosts_table() {
        let hosts = "# comment\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost # v6\n\
            fe80::1%lo scoped\n10.0.0.1 web.internal Web  # web\n  10.0.0.2   web.internal.\n\
            10.0.0.1 web.internal\n999.1.1.1 bad\n#10.0.0.3 web.internal\n";
        let cases: &[(&str, &[&str])] = &[
            ("localhost", &["127.0.0.1", "::1"]),
            ("LOCALHOST.", &["127.0.0.1", "::1"]),
            ("web", &["10.0.0.1"]),
            ("web.internal", &["10.0.0.1", "10.0.0.2", "10.0.0.1"]),
            ("scoped", &[]),
            ("bad", &[]),
            ("comment", &[]),
        ];
        for (name, want) in cases {
            assert_eq!(hosts_addresses(hosts, name), ips(want), "{name}");
        }
    }

    #[test]
    fn resolv_conf_table() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let secs = Duration::from_secs;
        let text = "# x\nnameserver 127.0.0.53 # stub\nnameserver bogus\nnameserver ::1\n\
            nameserver fe80::1%7\nnameserver 10.9.9.9\ndomain old.example\n\
            search a.example b.example.\noptions edns0 ndots:3 timeout:9 attempts:0\n";
        let conf = ResolvConf::parse(text);
        let servers = [sa("127.0.0.53:53"), sa("[::1]:53"), sa("[fe80::1%7]:53")];
        assert_eq!(conf.servers, servers);
        assert_eq!(conf.search, ["a.example", "b.example"]);
        assert_eq!((conf.ndots, conf.timeout, conf.attempts), (3, secs(2), 1));
        let text = "search x.example\ndomain y.example\noptions ndots:99 timeout:1 attempts:9";
        let conf = ResolvConf::parse(text);
        assert_eq!(
            (conf.servers, conf.search),
            (vec![sa("127.0.0.1:53")], vec!["y.example".into()])
        );
        assert_eq!((conf.ndots, conf.timeout, conf.attempts), (15, secs(1), 5));
        let lo = interface_index("lo").unwrap();
        let want = Some(sa(&format!("[fe80::1%{lo}]:53")));
        assert_eq!(nameserver_address("fe80::1%lo"), want);
        assert_eq!(nameserver_address("fe80::1%no-such-if0"), None);

        let conf = ResolvConf::parse("search a.example b.example\noptions ndots:2");
        let long = "a".repeat(250);
        let cases: &[(&str, &[&str])] = &[
            ("web", &["web.a.example", "web.b.example", "web"]),
            ("web.x", &["web.x.a.example", "web.x.b.example", "web.x"]),
            (
                "web.x.y",
                &["web.x.y", "web.x.y.a.example", "web.x.y.b.example"],
            ),
            ("web.", &["web"]),
            (&long, &[&long]),
        ];
        for (name, want) in cases {
            assert_eq!(conf.candidates(name), *want, "{name}");
        }
    }

    #[test]
    fn encodes_query() {
        let want = b"\x12\x34\x01\x00\0\x01\0\0\0\0\0\0\x03web\x08internal\0\0\x1c\0\x01";
        assert_eq!(encode_query(0x1234, "web.internal", TYPE_AAAA), want);
    }

    fn wire_name(dotted: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in dotted.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// A reply to `query` (its id and question) with `flags` ORed into QR|RD|RA and
    /// `records` as (owner, type, rdata); owner "" points to the question's name.
    fn reply(query: &[u8], flags: u16, records: &[(&str, u16, &[u8])]) -> Vec<u8> {
        let mut out = query.to_vec();
        out[2..4].copy_from_slice(&(0x8180 | flags).to_be_bytes());
        out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (owner, rtype, rdata) in records {
            let pointer = [0xc0, 12].to_vec();
            let owner = Some(pointer)
                .filter(|_| owner.is_empty())
                .unwrap_or(wire_name(owner));
            let fixed = [rtype.to_be_bytes(), [0, 1], [0, 0], [1, 0]].concat();
            let length = (rdata.len() as u16).to_be_bytes();
            out.extend([owner, fixed, length.to_vec(), rdata.to_vec()].concat());
        }
        out
    }

    /// The usual answers: AAAA ::1 and ::2, A 127.0.0.1 and 127.0.0.2.
    fn good(query: &[u8]) -> Vec<u8> {
        let qtype = u16::from(query[query.len() - 3]);
        let (one, two) = match qtype {
            TYPE_AAAA => ([&[0; 15][..], &[1]].concat(), [&[0; 15][..], &[2]].concat()),
            _ => (vec![127, 0, 0, 1], vec![127, 0, 0, 2]),
        };
        reply(query, 0, &[("", qtype, &one), ("", qtype, &two)])
    }

    const ALL: &[&str] = &["::1", "::2", "127.0.0.1", "127.0.0.2"];

    /// rcode, truncated, addresses; None for a packet to ignore.
    type Expected<'a> = Option<(u16, bool, &'a [&'a str])>;

    #[test]
    fn parses_replies_table() {
        let query = encode_query(7, "www.example", TYPE_A);
        let ok = good(&query);
        let (mut other_id, mut not_reply) = (ok.clone(), ok.clone());
        (other_id[1], not_reply[2]) = (8, 0x01);
        let other_name = good(&encode_query(7, "www.exampl", TYPE_A));
        let other_type = good(&encode_query(7, "www.example", TYPE_AAAA));
        let (web, host) = (
            wire_name("web.example"),
            [4, b'h', b'o', b's', b't', 0xc0, 16],
        );
        let chain = [
            ("", TYPE_CNAME, &web[..]),
            ("other.example", TYPE_A, &[10, 0, 0, 9]),
            ("web.EXAMPLE", TYPE_CNAME, &host), // "host" and a pointer to "example"
            ("host.example", TYPE_A, &[127, 0, 0, 9]),
        ];
        let chain = reply(&query, 0, &chain);
        let looped = [("", TYPE_CNAME, &[0xc0, 12][..]), ("", TYPE_A, &[0; 3])];
        let looped = reply(&query, 0, &looped);
        let self_pointer = [&query[..12], &[0xc0, 12, 0, 1, 0, 1]].concat();
        let (nxdomain, tc) = (reply(&query, 3, &[]), reply(&query, 0x0200, &[]));
        let cases: &[(&str, &[u8], Expected)] = &[
            ("good", &ok, Some((0, false, &["127.0.0.1", "127.0.0.2"]))),
            ("other id", &other_id, None),
            ("query, not reply", &not_reply, None),
            ("other name", &other_name, None),
            ("other type", &other_type, None),
            ("nxdomain", &nxdomain, Some((3, false, &[]))),
            ("truncated", &tc, Some((0, true, &[]))),
            ("cname chain", &chain, Some((0, false, &["127.0.0.9"]))),
            ("cname loop, short A", &looped, Some((0, false, &[]))),
            ("pointer to itself", &self_pointer, None),
            ("empty", &[], None),
            ("header only", &ok[..12], None),
            ("cut in answer", &ok[..ok.len() - 2], None),
        ];
        for (what, packet, want) in cases {
            let got = parse_reply(packet, &query).map(|r| (r.rcode, r.truncated, r.addresses));
            let want = want.map(|(rcode, tc, addresses)| (rcode, tc, ips(addresses)));
            assert_eq!(got, want, "{what}");
        }
        // Fuzz-ish: no cut and no single-byte change of a good reply may panic.
        for i in 0..ok.len() {
            parse_reply(&ok[..i], &query);
            for byte in [0, 1, 0x3f, 0x40, 0xc0, 0xff] {
                let mut bad = ok.clone();
                bad[i] = byte;
                parse_reply(&bad, &query);
            }
        }
    }

    /// A fake DNS server on 127.0.0.1 for 10 idle seconds: `answer` gives the datagrams
    /// to send back to a query.
    fn fake_server(answer: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let address = socket.local_addr().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((len, from)) = socket.recv_from(&mut buffer) {
                for datagram in answer(&buffer[..len]) {
                    let _ = socket.send_to(&datagram, from);
                }
            }
        });
        address
    }

    fn ask_fake(servers: &[SocketAddr], names: &[&str]) -> Answer {
        let tries = Tries::within(Duration::from_millis(500), 2, Duration::from_secs(2));
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        dns_addresses(&names, servers, &tries)
    }

    #[test]
    fn dns_aaaa_then_a() {
        let server = fake_server(|q| vec![good(q)]);
        assert_eq!(ask_fake(&[server], &["web.internal"]), Some(ips(ALL)));
    }

    #[test]
    fn dns_search_and_cname() {
        let server = fake_server(|q| match &q[12..q.len() - 4] {
            b"\x03www\x01a\x07example\0" if q[q.len() - 3] == TYPE_A as u8 => {
                let web = wire_name("web.a.example");
                let records = [
                    ("", TYPE_CNAME, &web[..]),
                    ("web.a.example", TYPE_A, &[127, 0, 0, 9]),
                ];
                vec![reply(q, 0, &records)]
            }
            b"\x03www\x01a\x07example\0" => vec![reply(q, 0, &[])],
            _ => vec![reply(q, 3, &[])],
        });
        let found = ask_fake(&[server], &["www.z.example", "www.a.example"]);
        assert_eq!(found, Some(ips(&["127.0.0.9"])));
        assert_eq!(ask_fake(&[server], &["a", "b"]), Some(vec![]));
    }

    #[test]
    fn dns_garbage_then_good_reply() {
        let server = fake_server(|q| {
            let (mut other, cut) = (good(q), good(q)[..20].to_vec());
            other[0] ^= 0xff;
            vec![b"garbage".to_vec(), vec![], other, cut, good(q)]
        });
        assert_eq!(ask_fake(&[server], &["web"]), Some(ips(ALL)));
    }

    #[test]
    fn dns_down_and_servfail_then_next_server() {
        // Bound and closed again: the port answers with ICMP "port unreachable".
        let down = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr());
        let failing = fake_server(|q| vec![reply(q, 2, &[])]);
        let servers = [down.unwrap(), failing, fake_server(|q| vec![good(q)])];
        let started = Instant::now();
        assert_eq!(ask_fake(&servers, &["web"]), Some(ips(ALL)));
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn dns_truncated_then_tcp() {
        let server = fake_server(|q| vec![reply(q, 0x0200, &[])]);
        let listener = TcpListener::bind(server).unwrap();
        thread::spawn(move || {
            for mut stream in listener.incoming().take(2).flatten() {
                let mut query = [0u8; 2 + 21]; // length, then 12 + "\x03web\0" + 4
                stream.read_exact(&mut query).unwrap();
                let full = good(&query[2..]);
                let framed = [(full.len() as u16).to_be_bytes().to_vec(), full].concat();
                // In two writes: the reader must put them together.
                stream.write_all(&framed[..5]).unwrap();
                thread::sleep(Duration::from_millis(20));
                stream.write_all(&framed[5..]).unwrap();
            }
        });
        assert_eq!(ask_fake(&[server], &["web"]), Some(ips(ALL)));
    }

    #[test]
    fn dns_silent_server_gives_up_in_time() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_v6 = UdpSocket::bind("[::1]:0").ok();
        let servers: Vec<SocketAddr> = [Some(&silent), silent_v6.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.local_addr().unwrap())
            .collect();
        // Far more tries than the deadline allows: the deadline must win.
        let tries = Tries::within(MAX_TRY, MAX_ATTEMPTS, Duration::from_secs(1));
        let (names, started) = (["a".to_string(), "b".to_string()], Instant::now());
        assert_eq!(dns_addresses(&names, &servers, &tries), None);
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}
