// policy.rs: what to do with one bind(). The rules (rule.rs) in the order given, the
// inherited sockets they may hand out, and the decision for one request. Pure: the
// engines gather the facts (the address, the socket's kind, whether it is
// dual-stack), this decides, and they carry the decision out.
//
// Semantics that follow what the program means, not only the bytes it passes:
// - A v4-mapped bind (`[::ffff:a.b.c.d]`) binds IPv4: it is matched as a.b.c.d by
//   IPv4 and family-less rules only, and rewritten in mapped form. An IPv6 rule
//   (`-b [::1]`) never turns it into an IPv6 bind.
// - A dual-stack `[::]` bind binds both families: rules of its own family (and
//   family-less ones) are tried first, then the IPv4 rules as the 0.0.0.0 it also
//   binds.
// - A bind of port 0 (TCP, UDP, SCTP) asks for no service address: it is what connect() or sendto()
//   would do on their own (Go's start-up probes of `[::1]:0` and
//   `[::ffff:127.0.0.1]:0`, clients choosing a source address). Unless a rule's
//   MATCH names port 0, it keeps port 0 when its address is rewritten (so probes do
//   not collide on a rule's fixed port), is not replaced by an inherited socket, and
//   is not denied: the socket's listen() is judged instead, on the port the kernel
//   gave it. The implicit bind of listen() itself is a service bind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use ipnet::IpNet;
use nix::errno::Errno;

use crate::rule::{Action, FdRef, Proto, Rule};
use crate::sockaddr::v4_mapped;

/// What kind of socket a bind is on: SO_TYPE and SO_PROTOCOL (0 when unknown). The
/// family is the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketKind {
    pub sock_type: i32,
    pub protocol: i32,
}

impl SocketKind {
    pub const TCP: SocketKind = SocketKind {
        sock_type: libc::SOCK_STREAM,
        protocol: libc::IPPROTO_TCP,
    };
    pub const UDP: SocketKind = SocketKind {
        sock_type: libc::SOCK_DGRAM,
        protocol: libc::IPPROTO_UDP,
    };

    pub fn proto(&self) -> Proto {
        Proto::of_socket(self.sock_type, self.protocol)
    }

    /// Whether binds on sockets of this kind refuse an address of another family
    /// (inet_bind() and inet6_bind(), which TCP, MPTCP, UDP and UDP-Lite use, fail
    /// with EAFNOSUPPORT): then the kernel's errno is the answer, with nothing to
    /// judge. Raw and SCTP sockets bind such bytes (sockaddr::judged_address).
    pub fn refuses_other_families(&self) -> bool {
        matches!(self.proto(), Proto::Tcp | Proto::Udp)
    }

    /// "IPv6 stream", for messages.
    pub fn describe(&self, domain: i32) -> String {
        let family = match domain {
            libc::AF_INET => "IPv4",
            libc::AF_INET6 => "IPv6",
            _ => "non-IP",
        };
        let ty = match self.sock_type {
            libc::SOCK_STREAM => "stream",
            libc::SOCK_DGRAM => "datagram",
            libc::SOCK_SEQPACKET => "seqpacket",
            libc::SOCK_RAW => "raw",
            _ => "unknown-type",
        };
        format!("{family} {ty}")
    }
}

/// One socket force-bind inherited, usable for `fd=N` or `sd=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InheritedSocket {
    pub fd: RawFd,
    /// SO_DOMAIN.
    pub domain: i32,
    pub kind: SocketKind,
}

/// Inherited sockets the rules may name, found at start-up (activation.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    /// Open socket descriptors force-bind itself inherited.
    pub sockets: Vec<InheritedSocket>,
    /// LISTEN_FDS, when LISTEN_PID was force-bind's own PID; else 0.
    pub systemd_count: u32,
    /// LISTEN_FDNAMES, one per systemd socket (may be shorter than the count).
    pub systemd_names: Vec<String>,
}

/// SD_LISTEN_FDS_START.
const FIRST_SYSTEMD_FD: RawFd = 3;

impl Inherited {
    /// Every passed socket's descriptor.
    pub fn fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(|s| s.fd).collect()
    }

    /// The descriptors `fd_ref` names, passed or not, lowest first.
    fn named(&self, fd_ref: &FdRef) -> Vec<RawFd> {
        match fd_ref {
            FdRef::Fd(fd) => vec![*fd],
            FdRef::Systemd(i) if *i < self.systemd_count => vec![FIRST_SYSTEMD_FD + *i as RawFd],
            FdRef::Systemd(_) => Vec::new(),
            FdRef::SystemdName(name) => self
                .systemd_names
                .iter()
                .take(self.systemd_count as usize)
                .enumerate()
                .filter(|(_, n)| *n == name)
                .map(|(i, _)| FIRST_SYSTEMD_FD + i as RawFd)
                .collect(),
        }
    }

    /// The sockets `fd_ref` names that were really passed to force-bind.
    pub fn passed(&self, fd_ref: &FdRef) -> Vec<InheritedSocket> {
        self.named(fd_ref)
            .into_iter()
            .filter_map(|fd| self.sockets.iter().find(|s| s.fd == fd).copied())
            .collect()
    }

    /// Why `fd_ref` names no passed socket, if it names none: said once at start-up.
    pub fn not_passed(&self, fd_ref: &FdRef) -> Option<String> {
        if !self.passed(fd_ref).is_empty() {
            return None;
        }
        let names = || self.systemd_names.join(":");
        Some(match fd_ref {
            FdRef::Fd(fd) => format!("fd {fd} was not passed to force-bind (no open socket there)"),
            FdRef::Systemd(_) | FdRef::SystemdName(_) if self.systemd_count == 0 => {
                "no socket activation: LISTEN_FDS and LISTEN_PID are not set for force-bind".into()
            }
            FdRef::Systemd(i) if *i >= self.systemd_count => format!(
                "sd={i} was not passed (LISTEN_FDS={}: sd=0 to sd={})",
                self.systemd_count,
                self.systemd_count - 1
            ),
            FdRef::Systemd(i) => format!(
                "sd={i} (fd {}) is not an open socket",
                FIRST_SYSTEMD_FD + *i as RawFd
            ),
            FdRef::SystemdName(name) if self.named(fd_ref).is_empty() => {
                let known: Vec<&str> = self.systemd_names.iter().map(String::as_str).collect();
                let hint = crate::rule::nearest_word(name, &known)
                    .map(|n| format!("; did you mean sd={n}?"))
                    .unwrap_or_default();
                format!(
                    "no socket named '{name}' was passed (LISTEN_FDNAMES={}){hint}",
                    names()
                )
            }
            FdRef::SystemdName(name) => format!("the sockets named '{name}' are not open sockets"),
        })
    }
}

/// Whether a bind is the program's own, or the one listen() makes on a socket nobody
/// bound (always a service bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Bind,
    Listen,
}

/// One bind() as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRequest {
    /// The address, of the socket's own family.
    pub addr: SocketAddr,
    /// An AF_INET6 socket without IPV6_V6ONLY: it also binds IPv4 when given `::`,
    /// so IPv4 rules reach it through the mapped form.
    pub dual_stack: bool,
    pub kind: SocketKind,
    pub purpose: Purpose,
}

impl BindRequest {
    /// A bind of `addr` by the program on a TCP socket that is not dual-stack.
    pub fn tcp(addr: SocketAddr) -> Self {
        BindRequest {
            addr,
            dual_stack: false,
            kind: SocketKind::TCP,
            purpose: Purpose::Bind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Bind to the first of these the kernel takes (EADDRNOTAVAIL and the like move to
    /// the next): one address, or a host name's in the resolver's order. Never empty.
    Rewrite(Vec<SocketAddr>),
    ReplaceWithFd(RawFd),
    Deny(Errno),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub decision: Decision,
    /// The rule that decided, None when no rule matched.
    pub rule: Option<&'a Rule>,
    /// The first rule that matched but could not be carried out on this socket, and
    /// why (a socket not passed, or of another kind; an address of a family the socket
    /// cannot take): a later rule decided instead, or none did.
    pub skipped: Option<(&'a Rule, String)>,
    /// A port-0 bind that a deny rule matched: let through, and the socket's listen()
    /// is judged on the port the kernel gave it.
    pub judge_listen: bool,
}

/// Which address family a rule sees a request as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// As the address it is.
    Native,
    /// As the IPv4 address a v4-mapped or dual-stack `[::]` bind binds.
    V4,
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
    /// deciding on `addr`: only a `[::]` bind, when an IPv4 rule or an IPv4 address to
    /// go to could reach it.
    pub fn needs_dual_stack(&self, addr: &SocketAddr) -> bool {
        matches!(addr, SocketAddr::V6(a) if a.ip().is_unspecified())
            && self.rules.iter().any(|r| {
                r.pattern
                    .nets
                    .as_ref()
                    .is_some_and(|nets| nets.iter().any(|n| matches!(n, IpNet::V4(_))))
                    || matches!(&r.action, Action::Rewrite { ips, .. } if ips.iter().any(IpAddr::is_ipv4))
            })
    }

    /// Whether a decision can depend on the socket's type and protocol (a protocol in a
    /// MATCH, an inherited socket that must fit, a deny, which leaves a port-0 bind of a
    /// protocol with ports alone and picks ports out of a denied range): the engines
    /// then ask the kernel.
    pub fn needs_kind(&self) -> bool {
        self.rules.iter().any(|r| {
            r.pattern.proto.is_some() || matches!(r.action, Action::Replace(_) | Action::Deny)
        })
    }

    /// Whether the policy does anything to a wildcard bind on port 0, the address
    /// listen() gives a socket nobody bound.
    pub fn restricts_wildcard(&self) -> bool {
        ["0.0.0.0:0", "[::]:0"].iter().any(|a| {
            let addr: SocketAddr = a.parse().expect("constant address");
            [false, true].iter().any(|&dual_stack| {
                [SocketKind::TCP, SOCKET_SCTP].iter().any(|&kind| {
                    let req = BindRequest {
                        addr,
                        dual_stack,
                        kind,
                        purpose: Purpose::Listen,
                    };
                    self.decide(&req).decision != Decision::Allow
                })
            })
        })
    }

    /// Whether listen() must be trapped: for -L, for the implicit bind of a socket
    /// nobody bound (also to pick its port when a deny rule names some ports), or for
    /// a socket whose port-0 bind a deny rule let through.
    pub fn judges_listen(&self) -> bool {
        self.skip_listen_on_replaced
            || self.restricts_wildcard()
            || self.rules.iter().any(|r| r.action == Action::Deny)
    }

    /// Whether a port-0 bind of `req` could get a port a rule denies: a deny rule
    /// with a port range matches its address (`-m :32768-60999=deny`). The kernel
    /// picks the port from all of ip_local_port_range, so the engine must pick one
    /// the rules allow instead.
    pub fn denies_some_ports(&self, req: &BindRequest) -> bool {
        let proto = req.kind.proto();
        let seen = match req.addr {
            SocketAddr::V6(a) => a
                .ip()
                .to_ipv4_mapped()
                .map_or(req.addr, |ip| SocketAddr::V4(SocketAddrV4::new(ip, 0))),
            v4 => v4,
        };
        let dual_wildcard =
            matches!(req.addr, SocketAddr::V6(a) if a.ip().is_unspecified()) && req.dual_stack;
        let v4_any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        self.rules.iter().any(|r| {
            let mut any_port = r.pattern.clone();
            any_port.ports = None;
            r.action == Action::Deny
                && r.pattern.ports.is_some_and(|p| p.first > 0)
                && (any_port.matches(&seen, proto)
                    || (dual_wildcard && any_port.matches(&v4_any, proto)))
        })
    }

    /// Whether some rewrite rule can send a bind to `addr`: a rule with `addr`'s
    /// address among its targets (an IPv4 one in mapped form for an IPv6 `addr`) and
    /// `addr`'s port as its port, or keeping the port with `addr`'s port in its MATCH.
    /// The bpf engine asks it at listen(), where it cannot tell a socket a deny rule
    /// let through on port 0 from one a rule rewrote (sidebind::judge_listen). A rule
    /// that later rules always shadow still counts.
    pub fn rewrites_to(&self, addr: &SocketAddr) -> bool {
        let ip = match addr {
            SocketAddr::V6(a) => a
                .ip()
                .to_ipv4_mapped()
                .map_or(IpAddr::V6(*a.ip()), IpAddr::V4),
            SocketAddr::V4(a) => IpAddr::V4(*a.ip()),
        };
        self.rules.iter().any(|r| match &r.action {
            Action::Rewrite { ips, port } => {
                ips.contains(&ip)
                    && match port {
                        Some(p) => *p == addr.port(),
                        None => r.pattern.ports.is_none_or(|p| p.contains(addr.port())),
                    }
            }
            _ => false,
        })
    }

    /// The start-up warnings: every rule that names an inherited socket that was not
    /// passed, one line each.
    pub fn unpassed_sockets(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|r| match &r.action {
                Action::Replace(fd_ref) => self
                    .inherited
                    .not_passed(fd_ref)
                    .map(|why| format!("rule '{}': {why}", r.text)),
                _ => None,
            })
            .collect()
    }

    /// Decides one bind. Rules are tried last-given first; a rule that matches but
    /// cannot be carried out on this socket is skipped, and the next one is tried. No
    /// rule decides: the bind goes through as asked.
    pub fn decide(&self, req: &BindRequest) -> Verdict<'_> {
        let mut skipped = None;
        let proto = req.kind.proto();
        let mapped = match req.addr {
            SocketAddr::V6(a) => a
                .ip()
                .to_ipv4_mapped()
                .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, a.port()))),
            SocketAddr::V4(_) => None,
        };
        let (seen, intent) = match mapped {
            Some(v4) => (v4, Intent::V4),
            None => (req.addr, Intent::Native),
        };
        for rule in self.rules.iter().rev() {
            if rule.pattern.matches(&seen, proto)
                && let Some(v) = self.apply(rule, req, intent, &mut skipped)
            {
                return v;
            }
        }
        if let (true, SocketAddr::V6(v6)) = (req.dual_stack, req.addr)
            && v6.ip().is_unspecified()
        {
            let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, v6.port()));
            for rule in self.rules.iter().rev() {
                // Family-less rules were tried above.
                if rule.pattern.nets.is_some()
                    && rule.pattern.matches(&v4, proto)
                    && let Some(v) = self.apply(rule, req, Intent::V4, &mut skipped)
                {
                    return v;
                }
            }
        }
        Verdict {
            decision: Decision::Allow,
            rule: None,
            skipped,
            judge_listen: false,
        }
    }

    /// What `rule` does to `req`; None when it cannot be carried out on this socket
    /// (the first such rule is kept in `skipped`) or does not concern a port-0 bind.
    fn apply<'a>(
        &'a self,
        rule: &'a Rule,
        req: &BindRequest,
        intent: Intent,
        skipped: &mut Option<(&'a Rule, String)>,
    ) -> Option<Verdict<'a>> {
        // Only protocols with ports have an ephemeral one: a raw socket's bind to an
        // address is all it binds. An unknown kind (not asked: no rule depends on it,
        // see needs_kind) is taken to have ports.
        let has_ports = req.kind.sock_type == 0
            || matches!(req.kind.proto(), Proto::Tcp | Proto::Udp | Proto::Sctp);
        let ephemeral = req.purpose == Purpose::Bind
            && req.addr.port() == 0
            && has_ports
            && !rule.pattern.names_port_zero();
        let verdict = |decision| {
            Some(Verdict {
                decision,
                rule: Some(rule),
                skipped: None,
                judge_listen: false,
            })
        };
        let mut skip = |why: String| {
            skipped.get_or_insert((rule, why));
            None
        };
        let domain = match req.addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        match &rule.action {
            Action::Allow => verdict(Decision::Allow),
            Action::Deny if ephemeral => Some(Verdict {
                decision: Decision::Allow,
                rule: Some(rule),
                skipped: None,
                judge_listen: true,
            }),
            Action::Deny => verdict(Decision::Deny(Errno::EPERM)),
            Action::Replace(_) if ephemeral => None,
            Action::Replace(fd_ref) => {
                let passed = self.inherited.passed(fd_ref);
                if passed.is_empty() {
                    return skip(format!("{fd_ref} was not passed"));
                }
                match passed
                    .iter()
                    .find(|s| s.domain == domain && s.kind.sock_type == req.kind.sock_type)
                {
                    Some(s) => verdict(Decision::ReplaceWithFd(s.fd)),
                    None => skip(format!(
                        "no {fd_ref} socket is an {} socket ({})",
                        req.kind.describe(domain),
                        passed
                            .iter()
                            .map(|s| format!("fd {}: {}", s.fd, s.kind.describe(s.domain)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            Action::Rewrite { ips, port } => {
                let port = match ephemeral {
                    true => 0,
                    false => port.unwrap_or(req.addr.port()),
                };
                let targets: Vec<SocketAddr> = ips
                    .iter()
                    .filter_map(|ip| target(*ip, port, req, intent))
                    .collect();
                if targets.is_empty() {
                    let what = match (intent, req.addr) {
                        (Intent::V4, _) | (_, SocketAddr::V4(_)) => "an IPv4 bind",
                        (_, SocketAddr::V6(a)) if a.ip().is_unspecified() => "an IPv6-only socket",
                        _ => "an IPv6 bind",
                    };
                    return skip(format!("{what} cannot take its address"));
                }
                verdict(Decision::Rewrite(targets))
            }
        }
    }
}

/// SOCK_STREAM SCTP, the other protocol that listens.
const SOCKET_SCTP: SocketKind = SocketKind {
    sock_type: libc::SOCK_STREAM,
    protocol: libc::IPPROTO_SCTP,
};

/// `ip`:`port` in the form `req`'s socket can bind, if it can: an IPv4 address in
/// mapped form on an AF_INET6 socket for an IPv4 bind (mapped, or the 0.0.0.0 of a
/// dual-stack `[::]`), an IPv6 address only for an IPv6 bind.
fn target(ip: IpAddr, port: u16, req: &BindRequest, intent: Intent) -> Option<SocketAddr> {
    let wildcard_dual =
        matches!(req.addr, SocketAddr::V6(a) if a.ip().is_unspecified()) && req.dual_stack;
    match (ip, req.addr) {
        (IpAddr::V4(ip), SocketAddr::V4(_)) => Some(SocketAddr::V4(SocketAddrV4::new(ip, port))),
        (IpAddr::V4(ip), SocketAddr::V6(_)) if intent == Intent::V4 || wildcard_dual => {
            Some(SocketAddr::V6(v4_mapped(SocketAddrV4::new(ip, port))))
        }
        (IpAddr::V6(ip), SocketAddr::V6(_)) if intent == Intent::Native => {
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
        }
        _ => None,
    }
}

impl crate::rule::Pattern {
    /// Whether the MATCH names port 0 (`:0`, `IP:0-99`): only then is a port-0 bind a
    /// service bind to the rule.
    pub fn names_port_zero(&self) -> bool {
        self.ports.is_some_and(|p| p.first == 0)
    }

    pub fn matches(&self, addr: &SocketAddr, proto: Proto) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && self.ports.is_none_or(|p| p.contains(addr.port()))
            && self
                .nets
                .as_ref()
                .is_none_or(|nets| nets.iter().any(|n| n.contains(&addr.ip())))
    }
}

#[cfg(test)]
mod tests;
