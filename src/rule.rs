// rule.rs: the rules. Parses `-b`, `-m` and `-d` into rules, resolving host names
// through a resolver the caller passes in, and refuses rules that can never apply.
// Pure: no syscalls (the resolver is a parameter), so every case is a table-driven
// unit test. What a rule does to one bind is decided in policy.rs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use ipnet::IpNet;

/// One `-b`, `-m` or `-d`, with the text the user gave (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub text: String,
    pub pattern: Pattern,
    pub action: Action,
}

/// The transport a MATCH may name (`tcp:`, `udp:`, `sctp:`, `raw:`) and events show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP and MPTCP (SOCK_STREAM with IPPROTO_TCP or IPPROTO_MPTCP).
    Tcp,
    /// UDP and UDP-Lite.
    Udp,
    Sctp,
    /// SOCK_RAW, whatever the protocol.
    Raw,
    /// Anything else (ICMP "ping" sockets, DCCP, unknown).
    Other,
}

impl Proto {
    /// The protocol of a socket from its SO_TYPE and SO_PROTOCOL.
    pub fn of_socket(sock_type: i32, protocol: i32) -> Proto {
        const IPPROTO_MPTCP: i32 = 262;
        if sock_type == libc::SOCK_RAW {
            return Proto::Raw;
        }
        match protocol {
            libc::IPPROTO_TCP | IPPROTO_MPTCP => Proto::Tcp,
            libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE => Proto::Udp,
            libc::IPPROTO_SCTP => Proto::Sctp,
            _ => Proto::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            Proto::Raw => "raw",
            Proto::Other => "other",
        }
    }

    /// The MATCH prefixes, as written before the address (`tcp::53`).
    const PREFIXES: [(&'static str, Proto); 4] = [
        ("tcp:", Proto::Tcp),
        ("udp:", Proto::Udp),
        ("sctp:", Proto::Sctp),
        ("raw:", Proto::Raw),
    ];
}

/// Which bind requests a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// None: every protocol.
    pub proto: Option<Proto>,
    /// None: any address of any family (`:PORT`, `-d`). Several networks for a host
    /// name with several addresses.
    pub nets: Option<Vec<IpNet>>,
    /// None: any port, and no port named (a port-0 bind is then not a service bind to
    /// the rule; policy.rs).
    pub ports: Option<PortRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// What a rule does to a bind it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bind to the first of `ips` (of the socket's family) that the kernel takes, on
    /// `port` or (None) on the port the program asked for. One address, or a host
    /// name's addresses in the resolver's order.
    Rewrite {
        ips: Vec<IpAddr>,
        port: Option<u16>,
    },
    /// Put an inherited socket in place of the program's (dup2) instead of binding.
    Replace(FdRef),
    Allow,
    Deny,
}

/// How a rule names an inherited socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdRef {
    /// `fd=N`: descriptor N as inherited.
    Fd(RawFd),
    /// `sd=N`: the N-th socket of systemd socket activation, i.e. fd 3+N.
    Systemd(u32),
    /// `sd=NAME`: the sockets that LISTEN_FDNAMES names NAME (systemd gives every
    /// socket of one .socket unit the same name).
    SystemdName(String),
}

impl fmt::Display for FdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdRef::Fd(n) => write!(f, "fd={n}"),
            FdRef::Systemd(n) => write!(f, "sd={n}"),
            FdRef::SystemdName(name) => write!(f, "sd={name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub arg: String,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid rule '{}': {}", self.arg, self.reason)
    }
}

impl std::error::Error for RuleError {}

fn bad(arg: &str, reason: impl Into<String>) -> RuleError {
    RuleError {
        arg: arg.to_string(),
        reason: reason.into(),
    }
}

/// Looks a host name up: its addresses in the resolver's order, or why there are none.
pub type Resolver<'a> = &'a mut dyn FnMut(&str) -> Result<Vec<IpAddr>, String>;

/// A resolver for callers that have none (the fuzz targets): every name is refused.
pub fn no_resolver(name: &str) -> Result<Vec<IpAddr>, String> {
    Err(format!("'{name}' is not an IP address"))
}

/// `-d`: every bind of every family is denied.
pub fn deny_all() -> Rule {
    Rule {
        text: "-d".into(),
        pattern: Pattern {
            proto: None,
            nets: None,
            ports: None,
        },
        action: Action::Deny,
    }
}

/// `-b ADDR` without host names (see `parse_bind_with`).
pub fn parse_bind(arg: &str) -> Result<Rule, RuleError> {
    parse_bind_with(arg, &mut no_resolver)
}

/// `-m MATCH=ADDR` without host names (see `parse_match_with`).
pub fn parse_match(arg: &str) -> Result<Rule, RuleError> {
    parse_match_with(arg, &mut no_resolver)
}

/// `-b [PROTO:]ADDR`: every bind of ADDR's family (both, for a host name with
/// addresses of both) goes to ADDR. An ADDR without a family (`fd=3`, `allow`,
/// `deny`) applies to every bind. `-b MATCH=ADDR` is read as `-m`, as the C
/// force-bind's own examples use it.
pub fn parse_bind_with(arg: &str, resolve: Resolver) -> Result<Rule, RuleError> {
    let text = format!("-b {arg}");
    let (proto, rest) = split_proto(arg);
    let action = match parse_action(rest, resolve) {
        Ok(action) => action,
        Err(err) if rest.contains('=') && !is_fd_action(rest) => {
            return parse_match_with(arg, resolve)
                .map(|rule| Rule { text, ..rule })
                .map_err(|_| bad(arg, err.reason));
        }
        Err(err) => return Err(bad(arg, err.reason)),
    };
    let nets = match &action {
        Action::Rewrite { ips, .. } => {
            let mut nets = Vec::new();
            if ips.iter().any(IpAddr::is_ipv4) {
                nets.push(IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("/0"));
            }
            if ips.iter().any(IpAddr::is_ipv6) {
                nets.push(IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).expect("/0"));
            }
            Some(nets)
        }
        _ => None,
    };
    Ok(Rule {
        text,
        pattern: Pattern {
            proto,
            nets,
            ports: None,
        },
        action,
    })
}

fn is_fd_action(arg: &str) -> bool {
    ["fd=", "fd-", "sd=", "sd-"]
        .iter()
        .any(|p| arg.starts_with(p))
}

/// A leading `tcp:`, `udp:`, `sctp:` or `raw:` (none of them can start an address:
/// t, u, s and r are not hex digits).
fn split_proto(s: &str) -> (Option<Proto>, &str) {
    for (prefix, proto) in Proto::PREFIXES {
        if let Some(rest) = s.strip_prefix(prefix) {
            return (Some(proto), rest);
        }
    }
    (None, s)
}

/// `-m [PROTO:]MATCH=ADDR`.
pub fn parse_match_with(arg: &str, resolve: Resolver) -> Result<Rule, RuleError> {
    // MATCH never contains '='; ADDR may (`fd=3`), so split at the first one.
    let Some((pattern, action)) = arg.split_once('=') else {
        return Err(bad(arg, "expected MATCH=ADDR, e.g. ':80=127.0.0.1:8080'"));
    };
    let (proto, pattern) = split_proto(pattern);
    let rule = Rule {
        text: format!("-m {arg}"),
        pattern: parse_pattern(arg, proto, pattern, resolve)?,
        action: parse_action(action, resolve).map_err(|e| bad(arg, e.reason))?,
    };
    if let Some(why) = never_applies(&rule) {
        return Err(bad(arg, why));
    }
    Ok(rule)
}

/// MATCH: `:PORTS`, `HOST[:PORTS][/PREFIX]`, `[IPv6 or NAME][:PORTS][/PREFIX]`, a bare
/// IPv6 address with an optional `/PREFIX`, or `*`; HOST is an IPv4 address or a host
/// name. PORTS: `N`, `N-M` or `*`; no PORTS means any port, no PREFIX the whole
/// address. A v4-mapped IPv6 address (`[::ffff:10.0.0.0]/104`) is the IPv4 network it
/// maps, since that is what a bind of such an address binds.
fn parse_pattern(
    arg: &str,
    proto: Option<Proto>,
    s: &str,
    resolve: Resolver,
) -> Result<Pattern, RuleError> {
    if s == "*" {
        return Ok(Pattern {
            proto,
            nets: None,
            ports: None,
        });
    }
    if let Some(ports) = s.strip_prefix(':').filter(|rest| !rest.starts_with(':')) {
        return Ok(Pattern {
            proto,
            nets: None,
            ports: parse_ports(arg, ports)?,
        });
    }
    let (host_port, prefix) = match s.rsplit_once('/') {
        Some((hp, p)) => {
            let p: u8 = p
                .parse()
                .map_err(|_| bad(arg, format!("prefix '/{p}' is not a number")))?;
            (hp, Some(p))
        }
        None => (s, None),
    };
    let (host, ports) = split_host_port(arg, host_port)?;
    let ports = match ports {
        Some(p) => parse_ports(arg, p)?,
        None => None,
    };
    let ips = host.addresses(arg, resolve)?;
    let nets = ips
        .iter()
        .map(|ip| {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.unwrap_or(max);
            let net = IpNet::new(*ip, prefix)
                .map_err(|_| bad(arg, format!("prefix /{prefix} is longer than {max}")))?;
            Ok(unmap_net(net))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pattern {
        proto,
        nets: Some(nets),
        ports,
    })
}

/// `::ffff:a.b.c.d/N` with N >= 96 is the IPv4 network a.b.c.d/(N-96).
fn unmap_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(v4.into(), v6.prefix_len() - 96).expect("prefix <= 32"),
            None => net,
        },
        _ => net,
    }
}

/// The host part of a MATCH or ADDR, before resolution.
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

impl Host<'_> {
    /// The addresses it stands for: the address itself, or the name's, resolved now.
    fn addresses(&self, arg: &str, resolve: Resolver) -> Result<Vec<IpAddr>, RuleError> {
        match self {
            Host::Ip(ip) => Ok(vec![*ip]),
            Host::Name(name) => match resolve(name) {
                Ok(ips) if !ips.is_empty() => {
                    let mut unique: Vec<IpAddr> = Vec::new();
                    for ip in ips {
                        if !unique.contains(&ip) {
                            unique.push(ip);
                        }
                    }
                    Ok(unique)
                }
                Ok(_) => Err(bad(arg, format!("host name '{name}' has no address"))),
                Err(why) => Err(bad(arg, why)),
            },
        }
    }
}

/// A v4-mapped address is the IPv4 address it maps.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Host-name syntax (RFC 1123 labels, and '_' which some local names use): what a
/// host part must look like to be resolved rather than refused outright.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // All digits and dots is a mistyped IPv4 address, not a name.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Splits `1.2.3.4`, `1.2.3.4:P`, `name`, `name:P`, `[v6]`, `[v6]:P`, `[name]:P` or
/// a bare `v6` into the host and the port text (unparsed, so callers can accept ranges
/// or `*`).
fn split_host_port<'a>(arg: &str, s: &'a str) -> Result<(Host<'a>, Option<&'a str>), RuleError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(arg, format!("'{s}' has '[' without ']'")))?;
        let host = match host.parse::<Ipv6Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V6(ip)),
            Err(_) if is_host_name(host) => Host::Name(host),
            Err(_) => {
                return Err(bad(
                    arg,
                    format!("'{host}' is not an IPv6 address or a host name"),
                ));
            }
        };
        let port =
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    bad(arg, format!("expected ':PORT' after ']', found '{after}'"))
                })?),
            };
        return Ok((host, port));
    }
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Ok((Host::Ip(IpAddr::V6(ip)), None));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    if is_host_name(host) && port.is_none_or(|p| !p.contains(':')) {
        return Ok((Host::Name(host), port));
    }
    let hint = if s.matches(':').count() > 1 {
        " (put an IPv6 address with a port in brackets: [::1]:80)"
    } else {
        ""
    };
    Err(bad(
        arg,
        format!("'{host}' is not an IP address or a host name{hint}"),
    ))
}

fn parse_port(arg: &str, s: &str) -> Result<u16, RuleError> {
    s.parse::<u16>()
        .map_err(|_| bad(arg, format!("port '{s}' is not a number from 0 to 65535")))
}

/// `N`, `N-M` or `*` (None: any port).
fn parse_ports(arg: &str, s: &str) -> Result<Option<PortRange>, RuleError> {
    if s == "*" {
        return Ok(None);
    }
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (parse_port(arg, a)?, parse_port(arg, b)?),
        None => {
            let p = parse_port(arg, s)?;
            (p, p)
        }
    };
    if first > last {
        return Err(bad(arg, format!("port range '{s}' is empty")));
    }
    Ok(Some(PortRange { first, last }))
}

/// The words an ADDR may be, for suggesting the nearest to a misspelt one.
const ACTION_WORDS: [&str; 2] = ["allow", "deny"];

/// ADDR: `HOST:PORT`, `HOST`, `HOST:*`, `[v6 or NAME]:PORT`, `[v6]`, a bare v6
/// address, `fd=N`, `fd-N`, `sd=N`, `sd-N`, `sd=NAME`, `allow` or `deny`; HOST an IPv4
/// address or a host name.
fn parse_action(s: &str, resolve: Resolver) -> Result<Action, RuleError> {
    match s {
        "allow" => return Ok(Action::Allow),
        "deny" => return Ok(Action::Deny),
        "" => return Err(bad(s, "empty address")),
        _ => {}
    }
    if let Some(n) = s.strip_prefix("fd=").or_else(|| s.strip_prefix("fd-")) {
        let fd = n
            .parse::<RawFd>()
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| bad(s, format!("'{n}' is not a file descriptor number")))?;
        return Ok(Action::Replace(FdRef::Fd(fd)));
    }
    if let Some(n) = s.strip_prefix("sd=").or_else(|| s.strip_prefix("sd-")) {
        if n.is_empty() {
            return Err(bad(s, "sd= needs a number or a LISTEN_FDNAMES name"));
        }
        if n.bytes().all(|b| b.is_ascii_digit()) {
            let index = n.parse::<u32>().ok().filter(|i| *i < (i32::MAX - 3) as u32);
            return index
                .map(|i| Action::Replace(FdRef::Systemd(i)))
                .ok_or_else(|| bad(s, format!("'{n}' is too large a socket index")));
        }
        if n.starts_with('-') && n[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                s,
                format!("'{n}' is not a socket index (sd=N counts from 0)"),
            ));
        }
        if s.starts_with("sd-") {
            return Err(bad(s, "names go with sd=NAME, not sd-NAME"));
        }
        // LISTEN_FDNAMES is colon-separated, and systemd refuses control characters.
        if n.contains(':') || n.chars().any(char::is_control) {
            return Err(bad(s, format!("'{n}' cannot be a LISTEN_FDNAMES name")));
        }
        return Ok(Action::Replace(FdRef::SystemdName(n.to_string())));
    }
    let (host, port) = split_host_port(s, s)?;
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(parse_port(s, p)?),
    };
    // A one-word ADDR close to an action is a misspelt action, not a host to look up
    // (no DNS query for a typo; a host really named "alow" needs its domain).
    if let Host::Name(word) = &host
        && !word.contains('.')
        && let Some(near) = nearest_word(word, &ACTION_WORDS)
    {
        return Err(bad(
            s,
            format!("unknown action '{word}' (did you mean '{near}'?)"),
        ));
    }
    let ips = host.addresses(s, resolve)?;
    // A v4-mapped address to go to is the IPv4 address: mapped again for AF_INET6
    // sockets (policy.rs).
    let mut unique: Vec<IpAddr> = Vec::new();
    for ip in ips.into_iter().map(unmap) {
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    Ok(Action::Rewrite { ips: unique, port })
}

/// The word of `words` within two edits of `word`, if any (the closest).
pub fn nearest_word<'a>(word: &str, words: &[&'a str]) -> Option<&'a str> {
    words
        .iter()
        .map(|w| (edit_distance(&word.to_ascii_lowercase(), w), *w))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, w)| w)
}

/// Levenshtein distance, on bytes (the words compared are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Why `rule` can match no bind that its action could then apply to, if so: an
/// IPv6-only MATCH that cannot be a dual-stack `[::]` bind with only IPv4 addresses
/// to go to (an IPv6 address never becomes an IPv4 bind), or an IPv4-only MATCH with
/// only IPv6 addresses (an IPv4 bind never becomes an IPv6 one).
fn never_applies(rule: &Rule) -> Option<String> {
    let (Some(nets), Action::Rewrite { ips, .. }) = (&rule.pattern.nets, &rule.action) else {
        return None;
    };
    let match_v4 = nets.iter().any(|n| matches!(n, IpNet::V4(_)));
    let match_dual_wildcard = nets
        .iter()
        .any(|n| matches!(n, IpNet::V6(v6) if v6.contains(&Ipv6Addr::UNSPECIFIED)));
    let to_v4 = ips.iter().any(IpAddr::is_ipv4);
    let to_v6 = ips.iter().any(IpAddr::is_ipv6);
    let match_v6 = nets.iter().any(|n| matches!(n, IpNet::V6(_)));
    if !to_v4 && !match_v6 {
        return Some(
            "it matches only IPv4 binds and rewrites them to IPv6 addresses, which an \
             IPv4 bind cannot take"
                .into(),
        );
    }
    if !to_v6 && !match_v4 && !match_dual_wildcard {
        return Some(
            "it matches only IPv6 binds and rewrites them to IPv4 addresses, which only \
             a dual-stack [::] bind can take"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn nets(s: &[&str]) -> Option<Vec<IpNet>> {
        Some(s.iter().map(|n| n.parse().unwrap()).collect())
    }
    fn ports(first: u16, last: u16) -> Option<PortRange> {
        Some(PortRange { first, last })
    }
    fn rewrite(ips: &[&str], port: Option<u16>) -> Action {
        Action::Rewrite {
            ips: ips.iter().map(|s| ip(s)).collect(),
            port,
        }
    }

    /// A resolver with a fixed table, as a test's /etc/hosts.
    fn hosts(name: &str) -> Result<Vec<IpAddr>, String> {
        match name {
            "localhost" => Ok(vec![ip("127.0.0.1"), ip("::1")]),
            "web.internal" => Ok(vec![ip("192.0.2.10"), ip("127.0.0.3"), ip("::1")]),
            "v4.internal" => Ok(vec![ip("127.0.0.4"), ip("127.0.0.4")]),
            "v6.internal" => Ok(vec![ip("fd00::4")]),
            "mapped.internal" => Ok(vec![ip("::ffff:127.0.0.9")]),
            _ => Err(format!("no address for '{name}'")),
        }
    }

    fn pattern(proto: Option<Proto>, n: Option<Vec<IpNet>>, p: Option<PortRange>) -> Pattern {
        Pattern {
            proto,
            nets: n,
            ports: p,
        }
    }

    #[test]
    fn parses_every_match_form() {
        let cases: &[(&str, Pattern)] = &[
            (":80", pattern(None, None, ports(80, 80))),
            (":0", pattern(None, None, ports(0, 0))),
            (":8000-8099", pattern(None, None, ports(8000, 8099))),
            (":*", pattern(None, None, None)),
            ("*", pattern(None, None, None)),
            (
                "0.0.0.0:80/0",
                pattern(None, nets(&["0.0.0.0/0"]), ports(80, 80)),
            ),
            (
                "10.1.2.3:80",
                pattern(None, nets(&["10.1.2.3/32"]), ports(80, 80)),
            ),
            (
                "10.1.2.3:80/8",
                pattern(None, nets(&["10.1.2.3/8"]), ports(80, 80)),
            ),
            ("10.1.2.3/8", pattern(None, nets(&["10.1.2.3/8"]), None)),
            ("10.1.2.3", pattern(None, nets(&["10.1.2.3/32"]), None)),
            ("10.1.2.3:*/16", pattern(None, nets(&["10.1.2.3/16"]), None)),
            (
                "10.1.2.3:1-2/16",
                pattern(None, nets(&["10.1.2.3/16"]), ports(1, 2)),
            ),
            ("[::]:80/0", pattern(None, nets(&["::/0"]), ports(80, 80))),
            ("[::1]:80", pattern(None, nets(&["::1/128"]), ports(80, 80))),
            ("[fd00::1]/8", pattern(None, nets(&["fd00::1/8"]), None)),
            ("[fd00::1]", pattern(None, nets(&["fd00::1/128"]), None)),
            ("::/0", pattern(None, nets(&["::/0"]), None)),
            ("::1:80", pattern(None, nets(&["::1:80/128"]), None)),
            // v4-mapped MATCHes are the IPv4 networks they map.
            (
                "[::ffff:10.0.0.0]/104",
                pattern(None, nets(&["10.0.0.0/8"]), None),
            ),
            (
                "[::ffff:1.2.3.4]:5",
                pattern(None, nets(&["1.2.3.4/32"]), ports(5, 5)),
            ),
            (
                "[::ffff:0:0]/95",
                pattern(None, nets(&["::ffff:0:0/95"]), None),
            ),
            // Protocols.
            ("tcp::53", pattern(Some(Proto::Tcp), None, ports(53, 53))),
            ("udp:*", pattern(Some(Proto::Udp), None, None)),
            (
                "sctp:[::1]:9",
                pattern(Some(Proto::Sctp), nets(&["::1/128"]), ports(9, 9)),
            ),
            (
                "raw:10.0.0.0/8",
                pattern(Some(Proto::Raw), nets(&["10.0.0.0/8"]), None),
            ),
            // Host names: every address, with the prefix and ports given.
            (
                "web.internal:80",
                pattern(
                    None,
                    nets(&["192.0.2.10/32", "127.0.0.3/32", "::1/128"]),
                    ports(80, 80),
                ),
            ),
            (
                "[v6.internal]:1-9/64",
                pattern(None, nets(&["fd00::4/64"]), ports(1, 9)),
            ),
            ("v4.internal", pattern(None, nets(&["127.0.0.4/32"]), None)),
            (
                "mapped.internal",
                pattern(None, nets(&["127.0.0.9/32"]), None),
            ),
        ];
        for (text, want) in cases {
            let rule = parse_match_with(&format!("{text}=allow"), &mut hosts)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rule.pattern, *want, "{text}");
        }
    }

    #[test]
    fn parses_every_addr_form() {
        let cases: Vec<(&str, Action)> = vec![
            ("127.0.0.1:8080", rewrite(&["127.0.0.1"], Some(8080))),
            ("127.0.0.1:0", rewrite(&["127.0.0.1"], Some(0))),
            ("127.0.0.1", rewrite(&["127.0.0.1"], None)),
            ("127.0.0.1:*", rewrite(&["127.0.0.1"], None)),
            ("[::1]:8080", rewrite(&["::1"], Some(8080))),
            ("[::1]", rewrite(&["::1"], None)),
            ("[::1]:*", rewrite(&["::1"], None)),
            ("fd00::5", rewrite(&["fd00::5"], None)),
            ("[::ffff:127.0.0.2]:7", rewrite(&["127.0.0.2"], Some(7))),
            ("localhost", rewrite(&["127.0.0.1", "::1"], None)),
            ("localhost:8080", rewrite(&["127.0.0.1", "::1"], Some(8080))),
            (
                "[localhost]:8080",
                rewrite(&["127.0.0.1", "::1"], Some(8080)),
            ),
            ("v4.internal:*", rewrite(&["127.0.0.4"], None)),
            ("fd=4", Action::Replace(FdRef::Fd(4))),
            ("fd-4", Action::Replace(FdRef::Fd(4))),
            ("sd=0", Action::Replace(FdRef::Systemd(0))),
            ("sd-2", Action::Replace(FdRef::Systemd(2))),
            ("sd=web", Action::Replace(FdRef::SystemdName("web".into()))),
            (
                "sd=web-2.x",
                Action::Replace(FdRef::SystemdName("web-2.x".into())),
            ),
            ("allow", Action::Allow),
            ("deny", Action::Deny),
        ];
        for (text, want) in cases {
            let rule = parse_match_with(&format!(":1={text}"), &mut hosts)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rule.action, want, "{text}");
            assert_eq!(rule.text, format!("-m :1={text}"));
        }
    }

    #[test]
    fn bind_rule_is_family_wide() {
        let r = parse_bind("127.0.0.1:8080").unwrap();
        assert_eq!(r.pattern, pattern(None, nets(&["0.0.0.0/0"]), None));
        assert_eq!(r.text, "-b 127.0.0.1:8080");
        let r = parse_bind("[::1]").unwrap();
        assert_eq!(r.pattern.nets, nets(&["::/0"]));
        let r = parse_bind("sd=0").unwrap();
        assert_eq!(r.pattern.nets, None);
        assert_eq!(r.action, Action::Replace(FdRef::Systemd(0)));
        let r = parse_bind("tcp:127.0.0.1").unwrap();
        assert_eq!(
            r.pattern,
            pattern(Some(Proto::Tcp), nets(&["0.0.0.0/0"]), None)
        );
        assert_eq!(r.text, "-b tcp:127.0.0.1");
        // A host name with both families reaches both.
        let r = parse_bind_with("localhost", &mut hosts).unwrap();
        assert_eq!(r.pattern.nets, nets(&["0.0.0.0/0", "::/0"]));
        let r = parse_bind_with("v6.internal:80", &mut hosts).unwrap();
        assert_eq!(r.pattern.nets, nets(&["::/0"]));
        // The C tool's README example: -b with a MATCH=ADDR.
        let r = parse_bind("0.0.0.0:16379/0=sd=0").unwrap();
        assert_eq!(
            r.pattern,
            pattern(None, nets(&["0.0.0.0/0"]), ports(16379, 16379))
        );
        assert_eq!(r.text, "-b 0.0.0.0:16379/0=sd=0");
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        let bad_m = [
            "garbage",
            "=",
            ":80=",
            ":80",
            ":x=allow",
            ":70000=allow",
            ":-1=allow",
            ":9-8=allow",
            ":1-=allow",
            "300.1.1.1:5=allow",
            "1.2.3.4:5/33=allow",
            "1.2.3.4:5/x=allow",
            "[::1:80=allow",
            "[::1]80=allow",
            "[no pe]:80=allow",
            "[::1]:80/129=allow",
            "fe80::1:2:3:4:5:6:7:8=allow",
            "1.2.3.4:5:6=allow",
            ":80=maybe",
            ":80=1.2.3.4:99999",
            ":80=fd=",
            ":80=fd=-1",
            ":80=fd=x",
            ":80=sd=",
            ":80=sd-web",
            ":80=sd=-1",
            ":80=sd=a:b",
            ":80=sd=99999999999",
            ":80=1.2.3.4:",
            ":80=[::1]:x",
            "nosuch.internal:80=allow",
            ":80=nosuch.internal",
            "tcp:=allow",
            "udp:garbage=allow",
            // Rules that can never apply.
            "[::1]:80=127.0.0.1",
            "[fd00::]/8=v4.internal",
            "0.0.0.0:80/0=[::1]:8080",
            "v4.internal=v6.internal",
        ];
        for arg in bad_m {
            let err = parse_match_with(arg, &mut hosts).expect_err(arg);
            let msg = err.to_string();
            assert!(msg.contains(arg), "{arg}: {msg}");
            assert!(!msg.contains('\n'), "{arg}: {msg}");
        }
        for arg in [
            "300.1.1.1:5",
            "",
            "1.2.3.4:x",
            "::1:80:",
            "fd=x",
            "sd=-1",
            "nosuch.internal",
        ] {
            let err = parse_bind_with(arg, &mut hosts).expect_err(arg);
            assert!(
                err.to_string().contains(&format!("'{arg}'")),
                "{arg}: {err}"
            );
        }
        // Without a resolver, a name is refused as not an address.
        assert!(parse_bind("localhost:80").is_err());
    }

    #[test]
    fn can_apply_checks_keep_useful_rules() {
        for arg in [
            // [::] (and ::/0) binds on a dual-stack socket can take IPv4 addresses.
            "[::]:80=127.0.0.1:8080",
            "[::]:80/0=127.0.0.1",
            // Family-less MATCHes reach both.
            ":80=[::1]:8080",
            ":80=127.0.0.1",
            // A name with both families.
            "[::1]:80=localhost",
            "0.0.0.0/0=localhost",
        ] {
            parse_match_with(arg, &mut hosts).unwrap_or_else(|e| panic!("{arg}: {e}"));
        }
    }

    #[test]
    fn suggests_the_nearest_action() {
        for (arg, near) in [
            (":80=alow", "allow"),
            (":80=Allow", "allow"),
            (":80=dney", "deny"),
            (":80=deni", "deny"),
        ] {
            let err = parse_match_with(arg, &mut hosts).expect_err(arg);
            assert!(
                err.to_string().contains(&format!("did you mean '{near}'")),
                "{arg}: {err}"
            );
        }
        let err = parse_match_with(":80=zzzzzz", &mut hosts).unwrap_err();
        assert!(!err.to_string().contains("did you mean"), "{err}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "deny"), 4);
    }

    #[test]
    fn host_name_syntax() {
        for name in ["localhost", "web.internal", "a-b.c_d", "x.", "1a.example"] {
            assert!(is_host_name(name), "{name}");
        }
        for name in ["", "-a", "a..b", "1.2.3", "a b", "a/b", &"x".repeat(64)] {
            assert!(!is_host_name(name), "{name}");
        }
    }

    #[test]
    fn protocols_of_sockets() {
        for (ty, proto, want) in [
            (libc::SOCK_STREAM, libc::IPPROTO_TCP, Proto::Tcp),
            (libc::SOCK_STREAM, 262, Proto::Tcp),
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP, Proto::Udp),
            (libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, Proto::Udp),
            (libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP, Proto::Sctp),
            (libc::SOCK_RAW, libc::IPPROTO_UDP, Proto::Raw),
            (libc::SOCK_DGRAM, libc::IPPROTO_ICMP, Proto::Other),
        ] {
            assert_eq!(Proto::of_socket(ty, proto), want, "{ty} {proto}");
        }
    }
}
