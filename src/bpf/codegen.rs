// bpf/codegen.rs: the policy compiled into the cgroup programs. Pure: the rules in,
// instructions out, so the golden and differential tests (bpf/tests.rs) see exactly
// what the kernel is given.
//
// bind4 and bind6 (BPF_PROG_TYPE_CGROUP_SOCK_ADDR at BPF_CGROUP_INET4_BIND and
// INET6_BIND) run inside bind(2) on the kernel's copy of the sockaddr. They walk the
// rules in `Policy::decide`'s order, comparing the context's address, port and socket
// kind with immediates, and end in one of three ways: allow (return 1), deny (return
// 0: bind fails with EPERM), or rewrite (store the new address and port into the
// context, then return 1). bind6 has one section per way `decide` sees an IPv6 bind:
// v4-mapped (the IPv4 rules, on the mapped address), `[::]` (a constant address:
// only the port and the kind are tested), and any other address. A policy that
// decides `[::]` differently for a dual-stack socket than for an IPv6-only one is
// refused: the hook cannot see IPV6_V6ONLY.
//
// sock_create (BPF_PROG_TYPE_CGROUP_SOCK at BPF_CGROUP_INET_SOCK_CREATE) refuses the
// IP sockets whose binds never reach the bind hooks: raw, ping and SCTP sockets (and
// anything else that is not TCP, MPTCP, UDP or UDP-Lite) bind through their protocol's
// own bind function, which runs no cgroup program.
//
// What the programs cannot carry out is refused here (`Unsupported`), never done
// differently: a rewrite to several addresses tried in order, a replacement by an
// inherited socket, a port-0 bind the kernel could give a denied port, and a `[::]`
// decision that depends on IPV6_V6ONLY.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::insn::{Asm, Cmp, Insn, R1, R2, R3, R6, R7, R8};
use crate::policy::Policy;
use crate::rule::{Action, PortRange, Proto, Rule};

// offsetof(struct bpf_sock_addr, ...) (<linux/bpf.h>).
pub const CTX_USER_FAMILY: i16 = 0;
pub const CTX_USER_IP4: i16 = 4;
pub const CTX_USER_IP6: i16 = 8;
pub const CTX_USER_PORT: i16 = 24;
pub const CTX_TYPE: i16 = 32;
pub const CTX_PROTOCOL: i16 = 36;
// offsetof(struct bpf_sock, ...): the sock_create program's context.
pub const SOCK_TYPE: i16 = 8;
pub const SOCK_PROTOCOL: i16 = 12;

pub const ALLOW: u32 = 1;
pub const DENY: u32 = 0;

const IPPROTO_MPTCP: u32 = 262;

/// The protocol class in R8, numbered so that "has ports" is `R8 <= SCTP`.
const CLASS_TCP: u32 = 0;
const CLASS_UDP: u32 = 1;
const CLASS_SCTP: u32 = 2;
const CLASS_RAW: u32 = 3;
const CLASS_OTHER: u32 = 4;

fn class(proto: Proto) -> u32 {
    match proto {
        Proto::Tcp => CLASS_TCP,
        Proto::Udp => CLASS_UDP,
        Proto::Sctp => CLASS_SCTP,
        Proto::Raw => CLASS_RAW,
        Proto::Other => CLASS_OTHER,
    }
}

/// Registers the rule code reads: the context, the port (host order), the class.
const CTX: u8 = R6;
const PORT: u8 = R7;
const CLASS: u8 = R8;

/// What the kernel lets the programs see, found at start (bpf/mod.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// net.ipv4.ip_local_port_range: the ports a port-0 bind can get.
    pub ephemeral_ports: PortRange,
}

/// Why a policy whose `[::]` decision depends on IPV6_V6ONLY is refused: the bind6
/// hook cannot read it (bpf_getsockopt takes only IPV6_TCLASS and
/// IPV6_AUTOFLOWLABEL at SOL_IPV6, Linux 6.18; struct bpf_sock has no such field).
pub const DUAL_STACK_UNSEEN: &str = "a dual-stack [::] bind would meet this policy's IPv4 rules, and the kernel's bind6 hook cannot tell a dual-stack socket from an IPv6-only one: add a rule for IPv6 binds (e.g. -b '[::1]') or use --engine notify";

/// Why the bpf engine cannot carry this policy out; one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The three programs for one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub bind4: Vec<Insn>,
    pub bind6: Vec<Insn>,
    pub sock_create: Vec<Insn>,
}

/// Compiles `policy`, or says why the bpf engine cannot carry it out.
pub fn compile(policy: &Policy, facts: &Facts) -> Result<Programs, Unsupported> {
    for rule in &policy.rules {
        if let Action::Replace(fd_ref) = &rule.action
            && !policy.inherited.passed(fd_ref).is_empty()
        {
            return Err(Unsupported(format!(
                "rule '{}': the bpf engine cannot put an inherited socket in place of the program's (use --engine notify)",
                rule.text
            )));
        }
        if rule.action == Action::Deny
            && let Some(ports) = rule.pattern.ports
            && ports.first > 0
            && ports.first <= facts.ephemeral_ports.last
            && ports.last >= facts.ephemeral_ports.first
        {
            return Err(Unsupported(format!(
                "rule '{}': a port-0 bind could get one of these ports from ip_local_port_range ({}-{}), and the bpf engine cannot pick another (use --engine notify)",
                rule.text, facts.ephemeral_ports.first, facts.ephemeral_ports.last
            )));
        }
    }
    let bind4 = bind_program(policy, Family::V4)?;
    let bind6 = bind_program(policy, Family::V6)?;
    Ok(Programs {
        bind4,
        bind6,
        sock_create: sock_create(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Where a section reads the address the rules see.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// An IPv4 address at this context offset (user_ip4, or user_ip6[3] of a
    /// v4-mapped bind).
    V4At(i16),
    /// The IPv6 address in user_ip6.
    V6,
    /// A known address (`[::]`, and the 0.0.0.0 a dual-stack `[::]` also binds).
    Const(IpAddr),
}

/// How `decide` sees one class of requests (policy.rs's Intent and `target`).
#[derive(Debug, Clone, Copy)]
struct View {
    socket: Family,
    seen: Seen,
    /// The request is IPv4 in intent (v4-mapped, or the 0.0.0.0 of a dual `[::]`).
    v4_intent: bool,
    /// A dual-stack `[::]` bind: IPv4 addresses can be bound in mapped form.
    wildcard_dual: bool,
    /// Only rules naming networks (the second pass over a dual-stack `[::]`).
    only_with_nets: bool,
}

fn bind_program(policy: &Policy, family: Family) -> Result<Vec<Insn>, Unsupported> {
    let mut a = Asm::new();
    prologue(&mut a);
    // A sockaddr of another family is the kernel's to refuse (EAFNOSUPPORT, after
    // the hook), except AF_UNSPEC with INADDR_ANY, which inet_bind() takes as 0.0.0.0.
    a.load(R2, CTX, CTX_USER_FAMILY);
    match family {
        Family::V4 => {
            a.jump_if(R2, Cmp::Eq, libc::AF_INET as u32, "own_family");
            a.jump_if(R2, Cmp::Ne, libc::AF_UNSPEC as u32, "foreign_family");
            a.load(R2, CTX, CTX_USER_IP4);
            a.jump_if(R2, Cmp::Ne, 0, "foreign_family");
            a.label("own_family");
        }
        Family::V6 => a.jump_if(R2, Cmp::Ne, libc::AF_INET6 as u32, "foreign_family"),
    }
    match family {
        Family::V4 => {
            let view = View {
                socket: Family::V4,
                seen: Seen::V4At(CTX_USER_IP4),
                v4_intent: false,
                wildcard_dual: false,
                only_with_nets: false,
            };
            a.extend(&section(policy, &[view])?);
        }
        Family::V6 => {
            let ip6 = |i: i16| CTX_USER_IP6 + 4 * i;
            a.load(R2, CTX, ip6(0));
            a.jump_if(R2, Cmp::Ne, 0, "native");
            a.load(R2, CTX, ip6(1));
            a.jump_if(R2, Cmp::Ne, 0, "native");
            a.load(R2, CTX, ip6(2));
            a.jump_if(R2, Cmp::Eq, ne(0x0000_ffff), "mapped");
            a.jump_if(R2, Cmp::Ne, 0, "native");
            a.load(R2, CTX, ip6(3));
            a.jump_if(R2, Cmp::Ne, 0, "native");
            // [::]: a constant address; the same decision whether dual-stack or not.
            let any = View {
                socket: Family::V6,
                seen: Seen::Const(Ipv6Addr::UNSPECIFIED.into()),
                v4_intent: false,
                wildcard_dual: false,
                only_with_nets: false,
            };
            let v6only = section(policy, &[any])?;
            let dual_views = [
                View {
                    wildcard_dual: true,
                    ..any
                },
                View {
                    seen: Seen::Const(Ipv4Addr::UNSPECIFIED.into()),
                    v4_intent: true,
                    wildcard_dual: true,
                    only_with_nets: true,
                    socket: Family::V6,
                },
            ];
            if section(policy, &dual_views)? != v6only {
                return Err(Unsupported(DUAL_STACK_UNSEEN.into()));
            }
            a.extend(&v6only);
            a.label("mapped");
            a.extend(&section(
                policy,
                &[View {
                    socket: Family::V6,
                    seen: Seen::V4At(ip6(3)),
                    v4_intent: true,
                    wildcard_dual: false,
                    only_with_nets: false,
                }],
            )?);
            a.label("native");
            a.extend(&section(
                policy,
                &[View {
                    socket: Family::V6,
                    seen: Seen::V6,
                    v4_intent: false,
                    wildcard_dual: false,
                    only_with_nets: false,
                }],
            )?);
        }
    }
    a.label("foreign_family");
    a.ret(ALLOW);
    Ok(a.finish())
}

/// R6 = ctx, R7 = the port in host order, R8 = the protocol class
/// (Proto::of_socket on the context's type and protocol).
fn prologue(a: &mut Asm) {
    a.mov64(CTX, R1);
    a.load(PORT, CTX, CTX_USER_PORT);
    a.be16(PORT);
    a.load(R2, CTX, CTX_TYPE);
    a.load(R3, CTX, CTX_PROTOCOL);
    a.mov32(CLASS, CLASS_RAW);
    a.jump_if(R2, Cmp::Eq, libc::SOCK_RAW as u32, "classified");
    a.mov32(CLASS, CLASS_TCP);
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_TCP as u32, "classified");
    a.jump_if(R3, Cmp::Eq, IPPROTO_MPTCP, "classified");
    a.mov32(CLASS, CLASS_UDP);
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_UDP as u32, "classified");
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_UDPLITE as u32, "classified");
    a.mov32(CLASS, CLASS_SCTP);
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_SCTP as u32, "classified");
    a.mov32(CLASS, CLASS_OTHER);
    a.label("classified");
}

/// A word of an address as the program loads it: network-order bytes read in the
/// machine's order.
fn ne(host_order: u32) -> u32 {
    u32::from_ne_bytes(host_order.to_be_bytes())
}

fn port_ne(port: u16) -> u32 {
    u16::from_ne_bytes(port.to_be_bytes()) as u32
}

/// What a rule does in one view, decided at compile time as far as it can be.
enum Effect {
    /// The rule never applies here (`decide`'s `apply` returns None, or it cannot
    /// match): no code.
    Nothing,
    Allow,
    /// Deny; `keep_port_zero`: a port-0 bind of a protocol with ports is let through
    /// instead (its listen() is judged).
    Deny {
        keep_port_zero: bool,
    },
    /// Store `to`; the port too when `port` is Some, except (`keep_port_zero`) on a
    /// port-0 bind of a protocol with ports.
    Rewrite {
        to: IpAddr,
        port: Option<u16>,
        keep_port_zero: bool,
    },
}

fn effect(policy: &Policy, rule: &Rule, view: &View) -> Result<Effect, Unsupported> {
    // A port-0 bind is a service bind only when the MATCH names port 0; a MATCH with
    // ports that do not include 0 never sees one.
    let keep_port_zero = rule.pattern.ports.is_none();
    Ok(match &rule.action {
        Action::Allow => Effect::Allow,
        Action::Deny => Effect::Deny { keep_port_zero },
        Action::Replace(fd_ref) if policy.inherited.passed(fd_ref).is_empty() => Effect::Nothing,
        // Refused by `compile`; never reached.
        Action::Replace(_) => Effect::Deny {
            keep_port_zero: false,
        },
        Action::Rewrite { ips, port } => {
            let to: Vec<IpAddr> = ips
                .iter()
                .copied()
                .filter(|ip| match (ip, view.socket) {
                    (IpAddr::V4(_), Family::V4) => true,
                    (IpAddr::V4(_), Family::V6) => view.v4_intent || view.wildcard_dual,
                    (IpAddr::V6(_), Family::V6) => !view.v4_intent,
                    (IpAddr::V6(_), Family::V4) => false,
                })
                .map(|ip| match (ip, view.socket) {
                    (IpAddr::V4(v4), Family::V6) => IpAddr::V6(v4.to_ipv6_mapped()),
                    _ => ip,
                })
                .collect();
            match to.as_slice() {
                [] => Effect::Nothing,
                [one] => Effect::Rewrite {
                    to: *one,
                    port: *port,
                    keep_port_zero,
                },
                _ => {
                    return Err(Unsupported(format!(
                        "rule '{}': the bpf engine binds one address in the kernel and cannot try several in order (use --engine notify)",
                        rule.text
                    )));
                }
            }
        }
    })
}

/// One self-contained section: the rules, last-given first, through each view in
/// turn, then allow. Every path ends in exit, so sections are placed by offset.
fn section(policy: &Policy, views: &[View]) -> Result<Vec<Insn>, Unsupported> {
    let mut a = Asm::new();
    let mut n = 0usize;
    let mut fresh = |what: &str| {
        n += 1;
        format!("{what}{n}")
    };
    for view in views {
        for rule in policy.rules.iter().rev() {
            if view.only_with_nets && rule.pattern.nets.is_none() {
                continue;
            }
            let effect = effect(policy, rule, view)?;
            if matches!(effect, Effect::Nothing) {
                continue;
            }
            let next = fresh("next");
            let Some(conditional) = emit_match(&mut a, rule, view, &next, &mut fresh) else {
                continue;
            };
            emit_effect(&mut a, &effect, &mut fresh);
            if !conditional {
                // Every later instruction would be unreachable, which the verifier
                // refuses.
                return Ok(a.finish());
            }
            a.label(&next);
        }
    }
    a.ret(ALLOW);
    Ok(a.finish())
}

/// The tests of a rule's MATCH, jumping to `next` when it does not match. None: it
/// can never match in this view (no code). Some(false): it always matches (no jump
/// to `next` was emitted).
fn emit_match(
    a: &mut Asm,
    rule: &Rule,
    view: &View,
    next: &str,
    fresh: &mut impl FnMut(&str) -> String,
) -> Option<bool> {
    let p = &rule.pattern;
    // Nets first, for the compile-time answer.
    let nets: Option<Vec<IpNet>> = match (&p.nets, view.seen) {
        (None, _) => None,
        (Some(nets), Seen::Const(ip)) => {
            if !nets.iter().any(|n| n.contains(&ip)) {
                return None;
            }
            None
        }
        (Some(nets), Seen::V4At(_)) => {
            let v4: Vec<IpNet> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)))
                .copied()
                .collect();
            if v4.is_empty() {
                return None;
            }
            (!v4.iter().any(|n| n.prefix_len() == 0)).then_some(v4)
        }
        (Some(nets), Seen::V6) => {
            let v6: Vec<IpNet> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)))
                .copied()
                .collect();
            if v6.is_empty() {
                return None;
            }
            (!v6.iter().any(|n| n.prefix_len() == 0)).then_some(v6)
        }
    };
    let mut conditional = false;
    if let Some(proto) = p.proto {
        a.jump_if(CLASS, Cmp::Ne, class(proto), next);
        conditional = true;
    }
    if let Some(PortRange { first, last }) = p.ports {
        if first == last {
            a.jump_if(PORT, Cmp::Ne, first as u32, next);
            conditional = true;
        } else {
            if first > 0 {
                a.jump_if(PORT, Cmp::Lt, first as u32, next);
                conditional = true;
            }
            if last < u16::MAX {
                a.jump_if(PORT, Cmp::Gt, last as u32, next);
                conditional = true;
            }
        }
    }
    if let Some(nets) = nets {
        let matched = fresh("matched");
        for net in &nets {
            let miss = fresh("miss");
            match net {
                IpNet::V4(n) => {
                    let Seen::V4At(off) = view.seen else {
                        unreachable!("IPv4 nets are kept for IPv4 views only")
                    };
                    a.load(R2, CTX, off);
                    let mask = ne(u32::from(n.netmask()));
                    if mask != u32::MAX {
                        a.and32(R2, mask);
                    }
                    a.jump_if(R2, Cmp::Eq, ne(u32::from(n.network())), &matched);
                }
                IpNet::V6(n) => {
                    let net = n.network().octets();
                    let mask = n.netmask().octets();
                    for w in 0..4 {
                        let word = |b: [u8; 16]| {
                            u32::from_ne_bytes(b[4 * w..4 * w + 4].try_into().expect("4 bytes"))
                        };
                        let m = word(mask);
                        if m == 0 {
                            break;
                        }
                        a.load(R2, CTX, CTX_USER_IP6 + 4 * w as i16);
                        if m != u32::MAX {
                            a.and32(R2, m);
                        }
                        a.jump_if(R2, Cmp::Ne, word(net), &miss);
                    }
                    a.goto(&matched);
                }
            }
            a.label(&miss);
        }
        a.goto(next);
        a.label(&matched);
        conditional = true;
    }
    Some(conditional)
}

/// The action, ending in exit on every path.
fn emit_effect(a: &mut Asm, effect: &Effect, fresh: &mut impl FnMut(&str) -> String) {
    // Jumps to `to` when the bind is a port-0 bind of a protocol with ports.
    let if_port_zero = |a: &mut Asm, to: &str, not: &str| {
        a.jump_if(PORT, Cmp::Ne, 0, not);
        a.jump_if(CLASS, Cmp::Le, CLASS_SCTP, to);
        a.label(not);
    };
    match *effect {
        Effect::Nothing => unreachable!("no code for a rule that never applies"),
        Effect::Allow => a.ret(ALLOW),
        Effect::Deny { keep_port_zero } => {
            if keep_port_zero {
                let allow = fresh("ephemeral");
                if_port_zero(a, &allow, &fresh("service"));
                a.ret(DENY);
                a.label(&allow);
                a.ret(ALLOW);
            } else {
                a.ret(DENY);
            }
        }
        Effect::Rewrite {
            to,
            port,
            keep_port_zero,
        } => {
            match to {
                IpAddr::V4(ip) => {
                    a.mov32(R2, ne(u32::from(ip)));
                    a.store(CTX, CTX_USER_IP4, R2);
                }
                IpAddr::V6(ip) => {
                    let o = ip.octets();
                    for w in 0..4 {
                        a.mov32(
                            R2,
                            u32::from_ne_bytes(o[4 * w..4 * w + 4].try_into().expect("4 bytes")),
                        );
                        a.store(CTX, CTX_USER_IP6 + 4 * w as i16, R2);
                    }
                }
            }
            if let Some(port) = port {
                let done = fresh("done");
                if keep_port_zero {
                    if_port_zero(a, &done, &fresh("service"));
                }
                a.mov32(R2, port_ne(port));
                a.store(CTX, CTX_USER_PORT, R2);
                if keep_port_zero {
                    a.label(&done);
                }
            }
            a.ret(ALLOW);
        }
    }
}

/// The sock_create program: only TCP, MPTCP, UDP and UDP-Lite IP sockets may be
/// created, since only their binds reach the bind hooks. Others fail with EPERM.
fn sock_create() -> Vec<Insn> {
    let mut a = Asm::new();
    a.load(R2, R1, SOCK_TYPE);
    a.load(R3, R1, SOCK_PROTOCOL);
    a.jump_if(R2, Cmp::Eq, libc::SOCK_STREAM as u32, "stream");
    a.jump_if(R2, Cmp::Eq, libc::SOCK_DGRAM as u32, "dgram");
    a.ret(DENY);
    a.label("stream");
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_TCP as u32, "allow");
    a.jump_if(R3, Cmp::Eq, IPPROTO_MPTCP, "allow");
    a.ret(DENY);
    a.label("dgram");
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_UDP as u32, "allow");
    a.jump_if(R3, Cmp::Eq, libc::IPPROTO_UDPLITE as u32, "allow");
    a.ret(DENY);
    a.label("allow");
    a.ret(ALLOW);
    a.finish()
}
