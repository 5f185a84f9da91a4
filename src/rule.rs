// rule.rs: the policy. Parses `-b`, `-m` and `-d` into rules and decides what to do
// with one bind() request. Pure: no syscalls, so every case is a table-driven unit
// test; the engines only carry the decision out.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use ipnet::IpNet;
use nix::errno::Errno;

use crate::sockaddr::v4_mapped;

/// One `-b`, `-m` or `-d`, with the text the user gave (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub text: String,
    pub pattern: Pattern,
    pub action: Action,
}

/// Which bind requests a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// None: any address of any family (`:PORT`, `-d`).
    pub net: Option<IpNet>,
    pub ports: PortRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// What a rule does to a bind it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bind to `ip`, on `port` or (None) on the port the program asked for.
    Rewrite {
        ip: IpAddr,
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
    /// `sd=NAME`: the socket that LISTEN_FDNAMES names NAME.
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

/// `-d`: every bind of every family is denied.
pub fn deny_all() -> Rule {
    Rule {
        text: "-d".into(),
        pattern: Pattern {
            net: None,
            ports: PortRange::ANY,
        },
        action: Action::Deny,
    }
}

/// `-b ADDR`: every bind of ADDR's family goes to ADDR. An ADDR without a family
/// (`fd=3`, `allow`, `deny`) applies to every bind. `-b MATCH=ADDR` is read as `-m`,
/// as the C force-bind's own examples use it.
pub fn parse_bind(arg: &str) -> Result<Rule, RuleError> {
    let text = format!("-b {arg}");
    let action = match parse_action(arg) {
        Ok(action) => action,
        Err(err) if arg.contains('=') && !is_fd_action(arg) => {
            return parse_match(arg)
                .map(|rule| Rule { text, ..rule })
                .map_err(|_| err);
        }
        Err(err) => return Err(err),
    };
    let net = match &action {
        Action::Rewrite {
            ip: IpAddr::V4(_), ..
        } => Some(IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).unwrap()),
        Action::Rewrite {
            ip: IpAddr::V6(_), ..
        } => Some(IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).unwrap()),
        _ => None,
    };
    Ok(Rule {
        text,
        pattern: Pattern {
            net,
            ports: PortRange::ANY,
        },
        action,
    })
}

fn is_fd_action(arg: &str) -> bool {
    ["fd=", "fd-", "sd=", "sd-"]
        .iter()
        .any(|p| arg.starts_with(p))
}

/// `-m MATCH=ADDR`.
pub fn parse_match(arg: &str) -> Result<Rule, RuleError> {
    // MATCH never contains '='; ADDR may (`fd=3`), so split at the first one.
    let Some((pattern, action)) = arg.split_once('=') else {
        return Err(bad(arg, "expected MATCH=ADDR, e.g. ':80=127.0.0.1:8080'"));
    };
    Ok(Rule {
        text: format!("-m {arg}"),
        pattern: parse_pattern(arg, pattern)?,
        action: parse_action(action).map_err(|e| bad(arg, e.reason))?,
    })
}

/// MATCH: `:PORTS`, `IP[:PORTS][/PREFIX]`, `[IPv6][:PORTS][/PREFIX]`, a bare IPv6
/// address with an optional `/PREFIX`, or `*`. PORTS: `N`, `N-M` or `*`; no PORTS
/// means any port, no PREFIX means the whole address.
fn parse_pattern(arg: &str, s: &str) -> Result<Pattern, RuleError> {
    if s == "*" {
        return Ok(Pattern {
            net: None,
            ports: PortRange::ANY,
        });
    }
    if let Some(ports) = s.strip_prefix(':').filter(|rest| !rest.starts_with(':')) {
        return Ok(Pattern {
            net: None,
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
    let (ip, ports) = split_host_port(arg, host_port)?;
    let ports = match ports {
        Some(p) => parse_ports(arg, p)?,
        None => PortRange::ANY,
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    let net = IpNet::new(ip, prefix)
        .map_err(|_| bad(arg, format!("prefix /{prefix} is longer than {max}")))?;
    Ok(Pattern {
        net: Some(net),
        ports,
    })
}

/// Splits `1.2.3.4`, `1.2.3.4:P`, `[v6]`, `[v6]:P` or a bare `v6` into the address and
/// the port text (unparsed, so callers can accept ranges or `*`).
fn split_host_port<'a>(arg: &str, s: &'a str) -> Result<(IpAddr, Option<&'a str>), RuleError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(arg, format!("'{s}' has '[' without ']'")))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| bad(arg, format!("'{host}' is not an IPv6 address")))?;
        let port =
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    bad(arg, format!("expected ':PORT' after ']', found '{after}'"))
                })?),
            };
        return Ok((IpAddr::V6(ip), port));
    }
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Ok((IpAddr::V6(ip), None));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let ip: Ipv4Addr = host.parse().map_err(|_| {
        let hint = if s.matches(':').count() > 1 {
            " (put an IPv6 address with a port in brackets: [::1]:80)"
        } else {
            ""
        };
        bad(arg, format!("'{host}' is not an IP address{hint}"))
    })?;
    Ok((IpAddr::V4(ip), port))
}

fn parse_port(arg: &str, s: &str) -> Result<u16, RuleError> {
    s.parse::<u16>()
        .map_err(|_| bad(arg, format!("port '{s}' is not a number from 0 to 65535")))
}

fn parse_ports(arg: &str, s: &str) -> Result<PortRange, RuleError> {
    if s == "*" {
        return Ok(PortRange::ANY);
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
    Ok(PortRange { first, last })
}

/// ADDR: `IP:PORT`, `IP`, `IP:*`, `[v6]:PORT`, `[v6]`, a bare v6 address, `fd=N`,
/// `fd-N`, `sd=N`, `sd-N`, `sd=NAME`, `allow` or `deny`.
fn parse_action(s: &str) -> Result<Action, RuleError> {
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
        if s.starts_with("sd-") {
            return Err(bad(s, "names go with sd=NAME, not sd-NAME"));
        }
        return Ok(Action::Replace(FdRef::SystemdName(n.to_string())));
    }
    let (ip, port) = split_host_port(s, s)?;
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(parse_port(s, p)?),
    };
    Ok(Action::Rewrite { ip, port })
}

/// Inherited sockets the rules may name, found at start-up (activation.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    /// Open socket descriptors force-bind itself inherited, usable for `fd=N`.
    pub sockets: Vec<RawFd>,
    /// LISTEN_FDS, when LISTEN_PID was force-bind's own PID; else 0.
    pub systemd_count: u32,
    /// LISTEN_FDNAMES, one per systemd socket (may be shorter than the count).
    pub systemd_names: Vec<String>,
}

impl Inherited {
    /// The descriptor `fd_ref` names, if that socket was really passed to us.
    pub fn resolve(&self, fd_ref: &FdRef) -> Option<RawFd> {
        let fd = match fd_ref {
            FdRef::Fd(fd) => *fd,
            FdRef::Systemd(i) if *i < self.systemd_count => 3 + *i as RawFd,
            FdRef::Systemd(_) => return None,
            FdRef::SystemdName(name) => {
                let i = self.systemd_names.iter().position(|n| n == name)?;
                if i as u32 >= self.systemd_count {
                    return None;
                }
                3 + i as RawFd
            }
        };
        self.sockets.contains(&fd).then_some(fd)
    }
}

/// One bind() as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRequest {
    pub addr: SocketAddr,
    /// An AF_INET6 socket without IPV6_V6ONLY: it also binds IPv4 when given `::`
    /// or a v4-mapped address, so IPv4 rules reach it through the mapped form.
    pub dual_stack: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Rewrite(SocketAddr),
    ReplaceWithFd(RawFd),
    Deny(Errno),
}

/// Something worth telling a user with `-v` about how a decision was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The rule named an inherited socket that was not passed: bound normally.
    NotPassed(FdRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub decision: Decision,
    /// The rule that decided, None when no rule matched.
    pub rule: Option<&'a Rule>,
    pub note: Option<Note>,
}

/// The whole policy: rules in the order given, and the sockets they may hand out.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub inherited: Inherited,
    /// `-L`: listen() on a socket replaced by an inherited one is skipped.
    pub skip_listen_on_replaced: bool,
    /// `--allow-io-uring`: io_uring may be used, and its binds escape the policy.
    pub allow_io_uring: bool,
}

impl Policy {
    /// Whether the engine must find out if an AF_INET6 socket is dual-stack before
    /// deciding on `addr`: only when an IPv4 rule could reach it through the mapped form.
    pub fn needs_dual_stack(&self, addr: &SocketAddr) -> bool {
        matches!(addr, SocketAddr::V6(a) if v4_view(a).is_some())
            && self
                .rules
                .iter()
                .any(|r| matches!(r.pattern.net, Some(IpNet::V4(_))))
    }

    /// Whether the policy does anything to a wildcard bind on port 0, the address
    /// listen() gives a socket nobody bound: if so, listen() must be trapped too.
    pub fn restricts_wildcard(&self) -> bool {
        ["0.0.0.0:0", "[::]:0"].iter().any(|a| {
            let addr: SocketAddr = a.parse().expect("constant address");
            [false, true].iter().any(|&dual_stack| {
                self.decide(&BindRequest { addr, dual_stack }).decision != Decision::Allow
            })
        })
    }

    /// Decides one bind. Rules are tried last-given first. A request is first matched
    /// in its own family (and against family-less rules); only if nothing matched does
    /// a dual-stack `[::]` or `[::ffff:a.b.c.d]` bind meet the IPv4 rules, as the IPv4
    /// address it also binds. No match: the bind goes through as asked.
    pub fn decide(&self, req: &BindRequest) -> Verdict<'_> {
        let native = req.addr;
        for rule in self.rules.iter().rev() {
            if rule.pattern.matches(&native)
                && let Some(v) = self.apply(rule, req)
            {
                return v;
            }
        }
        if let (true, SocketAddr::V6(v6)) = (req.dual_stack, native)
            && let Some(v4) = v4_view(&v6)
        {
            let v4 = SocketAddr::V4(v4);
            for rule in self.rules.iter().rev() {
                if matches!(rule.pattern.net, Some(IpNet::V4(_)))
                    && rule.pattern.matches(&v4)
                    && let Some(v) = self.apply(rule, req)
                {
                    return v;
                }
            }
        }
        Verdict {
            decision: Decision::Allow,
            rule: None,
            note: None,
        }
    }

    /// What `rule` does to `req`; None when its action cannot apply to this socket
    /// (an IPv6 target for an IPv4 socket, an IPv4 target for a V6ONLY one), in which
    /// case the next rule is tried.
    fn apply<'a>(&'a self, rule: &'a Rule, req: &BindRequest) -> Option<Verdict<'a>> {
        let verdict = |decision, note| {
            Some(Verdict {
                decision,
                rule: Some(rule),
                note,
            })
        };
        match &rule.action {
            Action::Allow => verdict(Decision::Allow, None),
            Action::Deny => verdict(Decision::Deny(Errno::EPERM), None),
            Action::Replace(fd_ref) => match self.inherited.resolve(fd_ref) {
                Some(fd) => verdict(Decision::ReplaceWithFd(fd), None),
                None => verdict(Decision::Allow, Some(Note::NotPassed(fd_ref.clone()))),
            },
            Action::Rewrite { ip, port } => {
                let port = port.unwrap_or(req.addr.port());
                let to = match (ip, req.addr) {
                    (IpAddr::V4(ip), SocketAddr::V4(_)) => {
                        SocketAddr::V4(SocketAddrV4::new(*ip, port))
                    }
                    (IpAddr::V4(ip), SocketAddr::V6(_)) if req.dual_stack => {
                        SocketAddr::V6(v4_mapped(SocketAddrV4::new(*ip, port)))
                    }
                    (IpAddr::V6(ip), SocketAddr::V6(_)) => {
                        SocketAddr::V6(SocketAddrV6::new(*ip, port, 0, 0))
                    }
                    _ => return None,
                };
                verdict(Decision::Rewrite(to), None)
            }
        }
    }
}

impl Pattern {
    pub fn matches(&self, addr: &SocketAddr) -> bool {
        self.ports.contains(addr.port())
            && match &self.net {
                None => true,
                Some(net) => net.contains(&addr.ip()),
            }
    }
}

/// The IPv4 address a dual-stack AF_INET6 bind also covers: `::` binds 0.0.0.0 as
/// well, and `::ffff:a.b.c.d` is a.b.c.d.
fn v4_view(addr: &SocketAddrV6) -> Option<SocketAddrV4> {
    let ip = if addr.ip().is_unspecified() {
        Ipv4Addr::UNSPECIFIED
    } else {
        addr.ip().to_ipv4_mapped()?
    };
    Some(SocketAddrV4::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> Option<IpNet> {
        Some(s.parse().unwrap())
    }
    fn ports(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn parses_every_match_form() {
        let any = PortRange::ANY;
        let cases: &[(&str, Pattern)] = &[
            (
                ":80",
                Pattern {
                    net: None,
                    ports: ports(80, 80),
                },
            ),
            (
                ":0",
                Pattern {
                    net: None,
                    ports: ports(0, 0),
                },
            ),
            (
                ":8000-8099",
                Pattern {
                    net: None,
                    ports: ports(8000, 8099),
                },
            ),
            (
                ":*",
                Pattern {
                    net: None,
                    ports: any,
                },
            ),
            (
                "*",
                Pattern {
                    net: None,
                    ports: any,
                },
            ),
            (
                "0.0.0.0:80/0",
                Pattern {
                    net: net("0.0.0.0/0"),
                    ports: ports(80, 80),
                },
            ),
            (
                "10.1.2.3:80",
                Pattern {
                    net: net("10.1.2.3/32"),
                    ports: ports(80, 80),
                },
            ),
            (
                "10.1.2.3:80/8",
                Pattern {
                    net: net("10.1.2.3/8"),
                    ports: ports(80, 80),
                },
            ),
            (
                "10.1.2.3/8",
                Pattern {
                    net: net("10.1.2.3/8"),
                    ports: any,
                },
            ),
            (
                "10.1.2.3",
                Pattern {
                    net: net("10.1.2.3/32"),
                    ports: any,
                },
            ),
            (
                "10.1.2.3:*/16",
                Pattern {
                    net: net("10.1.2.3/16"),
                    ports: any,
                },
            ),
            (
                "10.1.2.3:1-2/16",
                Pattern {
                    net: net("10.1.2.3/16"),
                    ports: ports(1, 2),
                },
            ),
            (
                "[::]:80/0",
                Pattern {
                    net: net("::/0"),
                    ports: ports(80, 80),
                },
            ),
            (
                "[::1]:80",
                Pattern {
                    net: net("::1/128"),
                    ports: ports(80, 80),
                },
            ),
            (
                "[fd00::1]/8",
                Pattern {
                    net: net("fd00::1/8"),
                    ports: any,
                },
            ),
            (
                "[fd00::1]",
                Pattern {
                    net: net("fd00::1/128"),
                    ports: any,
                },
            ),
            (
                "::/0",
                Pattern {
                    net: net("::/0"),
                    ports: any,
                },
            ),
            (
                "::1:80",
                Pattern {
                    net: net("::1:80/128"),
                    ports: any,
                },
            ),
        ];
        for (text, want) in cases {
            let rule =
                parse_match(&format!("{text}=allow")).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rule.pattern, *want, "{text}");
        }
    }

    #[test]
    fn parses_every_addr_form() {
        let cases: Vec<(&str, Action)> = vec![
            (
                "127.0.0.1:8080",
                Action::Rewrite {
                    ip: ip("127.0.0.1"),
                    port: Some(8080),
                },
            ),
            (
                "127.0.0.1:0",
                Action::Rewrite {
                    ip: ip("127.0.0.1"),
                    port: Some(0),
                },
            ),
            (
                "127.0.0.1",
                Action::Rewrite {
                    ip: ip("127.0.0.1"),
                    port: None,
                },
            ),
            (
                "127.0.0.1:*",
                Action::Rewrite {
                    ip: ip("127.0.0.1"),
                    port: None,
                },
            ),
            (
                "[::1]:8080",
                Action::Rewrite {
                    ip: ip("::1"),
                    port: Some(8080),
                },
            ),
            (
                "[::1]",
                Action::Rewrite {
                    ip: ip("::1"),
                    port: None,
                },
            ),
            (
                "[::1]:*",
                Action::Rewrite {
                    ip: ip("::1"),
                    port: None,
                },
            ),
            (
                "fd00::5",
                Action::Rewrite {
                    ip: ip("fd00::5"),
                    port: None,
                },
            ),
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
            let rule = parse_match(&format!(":1={text}")).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rule.action, want, "{text}");
            assert_eq!(rule.text, format!("-m :1={text}"));
        }
    }

    #[test]
    fn bind_rule_is_family_wide() {
        let r = parse_bind("127.0.0.1:8080").unwrap();
        assert_eq!(
            r.pattern,
            Pattern {
                net: net("0.0.0.0/0"),
                ports: PortRange::ANY
            }
        );
        assert_eq!(r.text, "-b 127.0.0.1:8080");
        let r = parse_bind("[::1]").unwrap();
        assert_eq!(r.pattern.net, net("::/0"));
        let r = parse_bind("sd=0").unwrap();
        assert_eq!(r.pattern.net, None);
        assert_eq!(r.action, Action::Replace(FdRef::Systemd(0)));
        // The C tool's README example: -b with a MATCH=ADDR.
        let r = parse_bind("0.0.0.0:16379/0=sd=0").unwrap();
        assert_eq!(
            r.pattern,
            Pattern {
                net: net("0.0.0.0/0"),
                ports: ports(16379, 16379)
            }
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
            "[nope]:80=allow",
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
            ":80=sd=99999999999",
            ":80=1.2.3.4:",
            ":80=[::1]:x",
        ];
        for arg in bad_m {
            let err = parse_match(arg).expect_err(arg);
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
            "localhost:80",
        ] {
            let err = parse_bind(arg).expect_err(arg);
            assert!(
                err.to_string().contains(&format!("'{arg}'")),
                "{arg}: {err}"
            );
        }
    }

    fn policy(rules: &[&str]) -> Policy {
        let rules = rules
            .iter()
            .map(|r| match r.split_once(' ') {
                Some(("-b", a)) => parse_bind(a).unwrap(),
                Some(("-m", a)) => parse_match(a).unwrap(),
                None if *r == "-d" => deny_all(),
                _ => panic!("bad test rule {r}"),
            })
            .collect();
        Policy {
            rules,
            inherited: Inherited {
                sockets: vec![3, 4, 7],
                systemd_count: 2,
                systemd_names: vec!["web".into(), "admin".into()],
            },
            skip_listen_on_replaced: false,
            allow_io_uring: false,
        }
    }

    fn decide(p: &Policy, addr: &str, dual_stack: bool) -> (Decision, Option<String>) {
        let v = p.decide(&BindRequest {
            addr: addr.parse().unwrap(),
            dual_stack,
        });
        (v.decision, v.rule.map(|r| r.text.clone()))
    }

    fn rw(s: &str) -> Decision {
        Decision::Rewrite(s.parse().unwrap())
    }
    const DENY: Decision = Decision::Deny(Errno::EPERM);

    #[test]
    fn decides_table() {
        use Decision::*;
        #[rustfmt::skip]
        type Case<'a> = (&'a [&'a str], &'a str, bool, Decision, Option<&'a str>);
        let cases: &[Case] = &[
            // No rule: everything goes through.
            (&[], "0.0.0.0:80", false, Allow, None),
            // -b rewrites its own family only, keeping or replacing the port.
            (
                &["-b 127.0.0.1:8080"],
                "0.0.0.0:80",
                false,
                rw("127.0.0.1:8080"),
                Some("-b 127.0.0.1:8080"),
            ),
            (
                &["-b 127.0.0.1"],
                "0.0.0.0:80",
                false,
                rw("127.0.0.1:80"),
                Some("-b 127.0.0.1"),
            ),
            (
                &["-b 127.0.0.1:*"],
                "10.0.0.1:0",
                false,
                rw("127.0.0.1:0"),
                Some("-b 127.0.0.1:*"),
            ),
            (&["-b 127.0.0.1:8080"], "[::1]:80", false, Allow, None),
            (&["-b [::1]:8081"], "0.0.0.0:80", false, Allow, None),
            (
                &["-b [::1]:8081"],
                "[::]:80",
                true,
                rw("[::1]:8081"),
                Some("-b [::1]:8081"),
            ),
            // v4-mapped: an IPv4 rule reaches a dual-stack [::] socket, not a V6ONLY one.
            (
                &["-b 127.0.0.1:8080"],
                "[::]:80",
                true,
                rw("[::ffff:127.0.0.1]:8080"),
                Some("-b 127.0.0.1:8080"),
            ),
            (&["-b 127.0.0.1:8080"], "[::]:80", false, Allow, None),
            (
                &["-b 127.0.0.1"],
                "[::ffff:10.0.0.1]:81",
                true,
                rw("[::ffff:127.0.0.1]:81"),
                Some("-b 127.0.0.1"),
            ),
            (
                &["-m 10.0.0.0:81/8=127.0.0.9"],
                "[::ffff:10.0.0.1]:81",
                true,
                rw("[::ffff:127.0.0.9]:81"),
                Some("-m 10.0.0.0:81/8=127.0.0.9"),
            ),
            (&["-b 127.0.0.1"], "[::2]:80", true, Allow, None),
            // ... but only when no rule of its own family (or none) matched first.
            (
                &["-b 127.0.0.1:8080", "-b [::1]:8081"],
                "[::]:80",
                true,
                rw("[::1]:8081"),
                Some("-b [::1]:8081"),
            ),
            (
                &["-b [::1]:8081", "-b 127.0.0.1:8080"],
                "[::]:80",
                true,
                rw("[::1]:8081"),
                Some("-b [::1]:8081"),
            ),
            (
                &["-d", "-b 127.0.0.1:8080"],
                "[::]:80",
                true,
                DENY,
                Some("-d"),
            ),
            // Last-given first: the general policy goes first.
            (
                &["-d", "-m :80=allow"],
                "0.0.0.0:80",
                false,
                Allow,
                Some("-m :80=allow"),
            ),
            (
                &["-d", "-m :80=allow"],
                "[::]:80",
                false,
                Allow,
                Some("-m :80=allow"),
            ),
            (
                &["-d", "-m :80=allow"],
                "0.0.0.0:81",
                false,
                DENY,
                Some("-d"),
            ),
            (
                &["-m :80=allow", "-d"],
                "0.0.0.0:80",
                false,
                DENY,
                Some("-d"),
            ),
            (
                &["-d", "-b 127.0.0.1:8080"],
                "0.0.0.0:80",
                false,
                rw("127.0.0.1:8080"),
                Some("-b 127.0.0.1:8080"),
            ),
            (
                &["-d", "-b 127.0.0.1:8080"],
                "[::1]:80",
                false,
                DENY,
                Some("-d"),
            ),
            // The C README's examples.
            (
                &["-m 0.0.0.0:80/0=127.0.0.1:8080"],
                "192.0.2.1:80",
                false,
                rw("127.0.0.1:8080"),
                Some("-m 0.0.0.0:80/0=127.0.0.1:8080"),
            ),
            (
                &["-m 0.0.0.0:80/0=127.0.0.1:8080"],
                "192.0.2.1:81",
                false,
                Allow,
                None,
            ),
            (
                &["-m 0.0.0.0:80/0=127.0.0.1:8080"],
                "[::]:80",
                false,
                Allow,
                None,
            ),
            (
                &["-d", "-m [::]:80/0=[::1]:8080"],
                "[2001:db8::1]:80",
                false,
                rw("[::1]:8080"),
                Some("-m [::]:80/0=[::1]:8080"),
            ),
            (
                &["-d", "-m [::]:80/0=[::1]:8080"],
                "0.0.0.0:80",
                false,
                DENY,
                Some("-d"),
            ),
            // Prefixes: the mask applies to both addresses.
            (
                &["-m 10.0.0.0:80/8=deny"],
                "10.255.0.1:80",
                false,
                DENY,
                Some("-m 10.0.0.0:80/8=deny"),
            ),
            (
                &["-m 10.0.0.0:80/8=deny"],
                "11.0.0.1:80",
                false,
                Allow,
                None,
            ),
            (&["-m 10.1.2.3:80=deny"], "10.1.2.4:80", false, Allow, None),
            (
                &["-m [fd00::]/8=deny"],
                "[fdff::1]:1",
                false,
                DENY,
                Some("-m [fd00::]/8=deny"),
            ),
            (&["-m [fd00::]/8=deny"], "[fe00::1]:1", false, Allow, None),
            // Port ranges, inclusive.
            (
                &["-m :8000-8099=deny"],
                "0.0.0.0:8000",
                false,
                DENY,
                Some("-m :8000-8099=deny"),
            ),
            (
                &["-m :8000-8099=deny"],
                "[::]:8099",
                false,
                DENY,
                Some("-m :8000-8099=deny"),
            ),
            (&["-m :8000-8099=deny"], "0.0.0.0:8100", false, Allow, None),
            (&["-m :8000-8099=deny"], "0.0.0.0:7999", false, Allow, None),
            // A rule whose target cannot apply to the socket is skipped, not forced.
            (
                &["-m :80=127.0.0.1:8080", "-m :80=[::1]:8080"],
                "0.0.0.0:80",
                false,
                rw("127.0.0.1:8080"),
                Some("-m :80=127.0.0.1:8080"),
            ),
            (
                &["-m :80=127.0.0.1:8080", "-m :80=[::1]:8080"],
                "[::]:80",
                false,
                rw("[::1]:8080"),
                Some("-m :80=[::1]:8080"),
            ),
            (&["-m :80=[::1]:8080"], "0.0.0.0:80", false, Allow, None),
            // Inherited sockets, by number, systemd index and name.
            (
                &["-m :80=fd=4"],
                "0.0.0.0:80",
                false,
                ReplaceWithFd(4),
                Some("-m :80=fd=4"),
            ),
            (
                &["-m :80=sd=0"],
                "[::]:80",
                true,
                ReplaceWithFd(3),
                Some("-m :80=sd=0"),
            ),
            (
                &["-m :80=sd-1"],
                "0.0.0.0:80",
                false,
                ReplaceWithFd(4),
                Some("-m :80=sd-1"),
            ),
            (
                &["-m :80=sd=admin"],
                "0.0.0.0:80",
                false,
                ReplaceWithFd(4),
                Some("-m :80=sd=admin"),
            ),
            (
                &["-b fd=7"],
                "0.0.0.0:80",
                false,
                ReplaceWithFd(7),
                Some("-b fd=7"),
            ),
        ];
        for (rules, addr, dual, want, want_rule) in cases {
            let p = policy(rules);
            let (got, rule) = decide(&p, addr, *dual);
            assert_eq!(
                (got, rule.as_deref()),
                (*want, *want_rule),
                "{rules:?} {addr} dual={dual}"
            );
        }
    }

    #[test]
    fn missing_inherited_socket_binds_normally() {
        for (rule, missing) in [
            ("-m :80=fd=5", FdRef::Fd(5)),
            ("-m :80=sd=2", FdRef::Systemd(2)),
            ("-m :80=sd=nope", FdRef::SystemdName("nope".into())),
        ] {
            let p = policy(&["-d", rule]);
            let v = p.decide(&BindRequest {
                addr: "0.0.0.0:80".parse().unwrap(),
                dual_stack: false,
            });
            assert_eq!(v.decision, Decision::Allow, "{rule}");
            assert_eq!(v.note, Some(Note::NotPassed(missing)), "{rule}");
        }
        // LISTEN_FDS says 1 socket: sd=1 and a name past the count are not passed even
        // if an fd of that number happens to be open.
        let mut p = policy(&["-m :80=sd=1"]);
        p.inherited.systemd_count = 1;
        assert_eq!(decide(&p, "0.0.0.0:80", false).0, Decision::Allow);
        p.rules = vec![parse_match(":80=sd=admin").unwrap()];
        assert_eq!(decide(&p, "0.0.0.0:80", false).0, Decision::Allow);
    }

    #[test]
    fn knows_when_listen_must_be_trapped() {
        for (rules, traps) in [
            (&[][..], false),
            (&["-m :80=deny"][..], false),
            (&["-m 127.0.0.1=allow"][..], false),
            (&["-d"][..], true),
            (&["-b 127.0.0.1"][..], true),
            (&["-b [::1]"][..], true),
            (&["-m :0=deny"][..], true),
            (&["-m :0-100=127.0.0.2"][..], true),
            (&["-d", "-m *=allow"][..], false),
        ] {
            assert_eq!(policy(rules).restricts_wildcard(), traps, "{rules:?}");
        }
    }

    #[test]
    fn dual_stack_lookup_only_when_a_v4_rule_could_apply() {
        let p = policy(&["-b [::1]", "-m :80=deny"]);
        assert!(!p.needs_dual_stack(&"[::]:80".parse().unwrap()));
        let p = policy(&["-b 127.0.0.1"]);
        assert!(p.needs_dual_stack(&"[::]:80".parse().unwrap()));
        assert!(p.needs_dual_stack(&"[::ffff:1.2.3.4]:80".parse().unwrap()));
        assert!(!p.needs_dual_stack(&"[::1]:80".parse().unwrap()));
        assert!(!p.needs_dual_stack(&"0.0.0.0:80".parse().unwrap()));
    }
}
