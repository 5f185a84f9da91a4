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
// only the port and the kind are tested), and any other address.
//
// A `[::]` bind is decided differently on a dual-stack socket than on an IPv6-only
// one whenever an IPv4 rule applies (`-b 127.0.0.2` rewrites a dual [::]:P to
// ::ffff:127.0.0.2:P and leaves a v6only one alone). struct bpf_sock_addr has no
// IPV6_V6ONLY and bpf_getsockopt does not take it (Linux 6.18), so for such a policy
// bind6 reads the socket's own sk_ipv6only bit: ctx->sk (5.3) is the kernel's struct
// sock, and bpf_probe_read_kernel (5.5) copies its first bytes to the stack
// (`read_ipv6only`). Two sections then follow, one per mode. The read alone does not
// close the race with another thread's setsockopt(IPV6_V6ONLY), see `post_bind6`.
//
// sock_create (BPF_PROG_TYPE_CGROUP_SOCK at BPF_CGROUP_INET_SOCK_CREATE) refuses the
// IP sockets whose binds never reach the bind hooks: raw, ping and SCTP sockets (and
// anything else that is not TCP, MPTCP, UDP or UDP-Lite) bind through their protocol's
// own bind function, which runs no cgroup program.
//
// What the programs cannot carry out is refused here (`Unsupported`), never done
// differently: a rewrite to several addresses tried in order, a replacement by an
// inherited socket, a port-0 bind the kernel could give a denied port, and a rewrite
// to `[::]` in a policy whose `[::]` decision depends on IPV6_V6ONLY (post_bind6
// could not tell its result from a raced bind). A kernel whose verifier refuses the
// read (bpf/mod.rs) refuses the policy with DUAL_STACK_UNSEEN, one that does not
// undo a bind post_bind6 refuses (5.10) with DUAL_STACK_UNDONE_MISSING.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::btf::BitPlace;
use super::insn::{Asm, Cmp, Insn, R0, R1, R2, R3, R6, R7, R8, R10};
use crate::policy::{BindRequest, Decision, Policy, Purpose, SocketKind};
use crate::rule::{Action, PortRange, Proto, Rule};

// offsetof(struct bpf_sock_addr, ...) (<linux/bpf.h>).
pub const CTX_USER_FAMILY: i16 = 0;
pub const CTX_USER_IP4: i16 = 4;
pub const CTX_USER_IP6: i16 = 8;
pub const CTX_USER_PORT: i16 = 24;
pub const CTX_TYPE: i16 = 32;
pub const CTX_PROTOCOL: i16 = 36;
/// `__bpf_md_ptr(struct bpf_sock *, sk)`, 64 bits (5.3); the verifier lets it be
/// read with a u64 load only.
pub const CTX_SK: i16 = 64;
// offsetof(struct bpf_sock, ...): the sock_create and post_bind6 programs' context.
pub const SOCK_FAMILY: i16 = 4;
pub const SOCK_TYPE: i16 = 8;
pub const SOCK_PROTOCOL: i16 = 12;
pub const SOCK_SRC_IP6: i16 = 28;
/// In host order, unlike user_port.
pub const SOCK_SRC_PORT: i16 = 44;

/// BPF_FUNC_probe_read_kernel (5.5): long (void *dst, u32 size, const void *src).
pub const PROBE_READ_KERNEL: i32 = 113;

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
    /// Where struct sock keeps sk_ipv6only (bpf/btf.rs).
    pub ipv6only: BitPlace,
    /// Whether a bind that post_bind6 refuses is undone, its port given back
    /// (btf::undoes_refused_binds); without it post_bind6 cannot close the race.
    pub refused_binds_undone: bool,
}

/// Why a policy whose `[::]` decision depends on IPV6_V6ONLY is refused on a kernel
/// that keeps the port of a bind post_bind6 refuses (before 2022's put_port, e.g.
/// 5.10): the raced socket would keep [::]:P and could still listen() or receive.
pub const DUAL_STACK_UNDONE_MISSING: &str = "a dual-stack [::] bind would meet this policy's IPv4 rules, and this kernel does not undo a bind that the bpf engine refuses after the fact (struct proto has no put_port: Linux 5.10 and the like), so a race with IPV6_V6ONLY could not be closed: add a rule for IPv6 binds (e.g. -b '[::1]') or use --engine notify";

/// Why a policy whose `[::]` decision depends on IPV6_V6ONLY is refused on a kernel
/// whose verifier does not let the programs read it (bpf/mod.rs finds that out by
/// loading them): struct bpf_sock_addr has no such field and bpf_getsockopt takes
/// only IPV6_TCLASS and IPV6_AUTOFLOWLABEL at SOL_IPV6 (Linux 6.18).
pub const DUAL_STACK_UNSEEN: &str = "a dual-stack [::] bind would meet this policy's IPv4 rules, and this kernel's bind6 hook cannot tell a dual-stack socket from an IPv6-only one: add a rule for IPv6 binds (e.g. -b '[::1]') or use --engine notify";

/// Why the bpf engine cannot carry this policy out; one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The programs for one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub bind4: Vec<Insn>,
    pub bind6: Vec<Insn>,
    pub sock_create: Vec<Insn>,
    /// For a policy whose `[::]` decision depends on IPV6_V6ONLY only (then bind6
    /// reads sk_ipv6only too): the check after the bind that closes the race.
    pub post_bind6: Option<Vec<Insn>>,
    /// Where bind6 reads sk_ipv6only, when it does: the event programs read it too.
    pub ipv6only_read: Option<BitPlace>,
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
    let bind4 = bind_program(policy, facts, Family::V4)?;
    let bind6 = bind_program(policy, facts, Family::V6)?;
    let post_bind6 = match depends_on_ipv6only(policy)? {
        true if !facts.refused_binds_undone => {
            return Err(Unsupported(DUAL_STACK_UNDONE_MISSING.into()));
        }
        true => Some(post_bind6(policy, facts)?),
        false => None,
    };
    Ok(Programs {
        bind4,
        bind6,
        sock_create: sock_create(),
        ipv6only_read: post_bind6.is_some().then_some(facts.ipv6only),
        post_bind6,
    })
}

/// The `[::]` views of the two modes: `decide`'s first pass alone on an IPv6-only
/// socket; on a dual-stack one that pass and then the IPv4 rules on 0.0.0.0.
fn wildcard_views() -> (View, [View; 2]) {
    let any = View {
        socket: Family::V6,
        seen: Seen::Const(Ipv6Addr::UNSPECIFIED.into()),
        v4_intent: false,
        wildcard_dual: false,
        only_with_nets: false,
    };
    let dual = [
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
    (any, dual)
}

/// Whether the policy decides some `[::]` bind differently on a dual-stack socket
/// than on an IPv6-only one: then the programs must read sk_ipv6only. Refused when
/// a rule rewrites to `[::]`, since post_bind6 could no longer tell a bind the
/// policy gave `[::]` from one that raced (see `post_bind6`).
pub fn depends_on_ipv6only(policy: &Policy) -> Result<bool, Unsupported> {
    let (v6only, dual) = wildcard_views();
    if section(policy, &dual)? == section(policy, &[v6only])? {
        return Ok(false);
    }
    for rule in &policy.rules {
        if let Action::Rewrite { ips, .. } = &rule.action
            && ips.contains(&IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        {
            return Err(Unsupported(format!(
                "rule '{}': a rewrite to [::] in a policy that decides [::] by IPV6_V6ONLY cannot be checked after the bind by the bpf engine (use --engine notify)",
                rule.text
            )));
        }
    }
    Ok(true)
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

fn bind_program(policy: &Policy, facts: &Facts, family: Family) -> Result<Vec<Insn>, Unsupported> {
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
            // [::]: a constant address; one section, or one per mode.
            let (any, dual_views) = wildcard_views();
            let v6only = section(policy, &[any])?;
            let dual = section(policy, &dual_views)?;
            if dual != v6only {
                a.mov64(R3, CTX);
                a.load64(R3, R3, CTX_SK);
                read_ipv6only(&mut a, facts, "wildcard_v6only")?;
                a.extend(&dual);
                a.label("wildcard_v6only");
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
    classify(a);
}

/// R8 = the protocol class of type R2 and protocol R3.
fn classify(a: &mut Asm) {
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

/// Reads sk_ipv6only of the struct sock that R3 points at and jumps to `v6only`
/// when it is set; falls through for a dual-stack socket. Clobbers R0-R5. The copy
/// covers the bytes up to the one holding the bit (8-byte multiples, on the stack):
/// the verifier forbids arithmetic on ctx->sk (PTR_TO_SOCKET), so the read starts at
/// the socket itself. A failed read denies: fail closed.
fn read_ipv6only(a: &mut Asm, facts: &Facts, v6only: &str) -> Result<(), Unsupported> {
    let BitPlace { byte, bit } = facts.ipv6only;
    // The stack is 512 bytes; sk_ipv6only has been at byte 19 since 3.x.
    if byte >= 256 || bit >= 8 {
        return Err(Unsupported(format!(
            "this kernel keeps sk_ipv6only at byte {byte} of struct sock, which the bpf engine does not read (use --engine notify)"
        )));
    }
    let len = (byte as i32 + 1 + 7) / 8 * 8;
    a.mov64(R1, R10);
    a.add64(R1, -len);
    a.mov32(R2, len as u32);
    a.call(PROBE_READ_KERNEL);
    let read = format!("{v6only}_read");
    a.jump_if(R0, Cmp::Eq, 0, &read);
    a.ret(DENY);
    a.label(&read);
    a.load8(R2, R10, (byte as i32 - len) as i16);
    a.and32(R2, 1 << bit);
    a.jump_if(R2, Cmp::Ne, 0, v6only);
    Ok(())
}

/// The ports a bind can end up with on `[::]` of a socket of `kind` in mode `dual`
/// when nothing raced: the `[::]:P` requests `decide` allows unchanged, and the
/// ephemeral ports when it lets `[::]:0` through. (With no rewrite to `[::]`, which
/// `depends_on_ipv6only` refuses, no other request ends on `[::]`: a v4-mapped one
/// stays v4-mapped, an IPv4 target on `[::]` is bound mapped, and any other IPv6
/// address is not `[::]`.) `decide` is the one judge; it is asked once per span of
/// ports over which no rule's port range starts or ends. The ephemeral ports are
/// ip_local_port_range as read at start: widened while the program runs, a port-0
/// bind given a port outside it may fail with EPERM (closed, not open), since
/// post_bind6 sees only the port the kernel picked.
pub fn wildcard_ports(
    policy: &Policy,
    facts: &Facts,
    dual: bool,
    kind: SocketKind,
) -> Vec<PortRange> {
    let allowed = |port: u16| {
        let req = BindRequest {
            addr: std::net::SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            dual_stack: dual,
            kind,
            purpose: Purpose::Bind,
        };
        policy.decide(&req).decision == Decision::Allow
    };
    let mut starts: Vec<u32> = vec![0, 1];
    for rule in &policy.rules {
        if let Some(p) = rule.pattern.ports {
            starts.extend([p.first as u32, p.last as u32 + 1]);
        }
    }
    starts.retain(|&p| p <= u16::MAX as u32);
    starts.sort_unstable();
    starts.dedup();
    let mut spans: Vec<PortRange> = Vec::new();
    let mut add = |r: PortRange| spans.push(r);
    for (i, &first) in starts.iter().enumerate() {
        let last = starts.get(i + 1).map_or(u16::MAX as u32, |&next| next - 1);
        if allowed(first as u16) {
            add(PortRange {
                first: first as u16,
                last: last as u16,
            });
        }
    }
    if allowed(0) {
        add(facts.ephemeral_ports);
    }
    merge(spans)
}

/// Sorted, overlapping and adjacent ranges joined.
fn merge(mut spans: Vec<PortRange>) -> Vec<PortRange> {
    spans.sort_by_key(|r| r.first);
    let mut out: Vec<PortRange> = Vec::new();
    for r in spans {
        match out.last_mut() {
            Some(prev) if r.first as u32 <= prev.last as u32 + 1 => {
                prev.last = prev.last.max(r.last)
            }
            _ => out.push(r),
        }
    }
    out
}

/// The post_bind6 program (BPF_PROG_TYPE_CGROUP_SOCK at BPF_CGROUP_INET6_POST_BIND,
/// 4.17), for a policy whose `[::]` decision depends on IPV6_V6ONLY.
///
/// Why it is needed: bind6 runs under its own lock_sock/release_sock
/// (BPF_CGROUP_RUN_PROG_INET6_BIND_LOCK) and __inet6_bind takes the lock again
/// later, so another thread's setsockopt(IPV6_V6ONLY) can change the mode between
/// bind6's decision and the bind (tests/c/escape_v6flip.c wins that race). The
/// post_bind6 hook runs inside __inet6_bind, under that second lock, after
/// get_port() took the port; a 0 return makes the bind fail with EPERM and undoes it
/// (the address reset, the port put back, sk_ipv6only restored: net/ipv6/af_inet6.c,
/// 5.10 to 6.18). From then on IPV6_V6ONLY is frozen (do_ipv6_setsockopt refuses it
/// with EINVAL once inet_num is set), so what this program reads is final.
///
/// What it refuses: a bind that ended on `[::]` at a port no request could reach
/// there in the socket's final mode (`wildcard_ports`). Every other outcome of the
/// race is one that some request reaches legitimately or that fails natively:
/// - a bind that did not end on `[::]`: bind6's decision for it (v4-mapped, or any
///   other IPv6 address) does not depend on the mode, so the same request on a
///   socket of the final mode gets the same address; a v4-mapped address on a socket
///   that turned IPv6-only fails with EINVAL in __inet6_bind.
/// - `[::]` at a port the final mode's own `[::]` decision allows: reachable.
///
/// So the escape of the race, a dual-stack `[::]` serving IPv4 on every address
/// under a policy that rewrites or denies that, always fails with EPERM; a bind that
/// did not race is never refused, since it ends where `decide` sends it. That needs
/// a kernel that gives the port back when the program refuses (put_port, 2022: 6.1
/// has it, 5.10 not, where the socket kept [::]:P and could listen() on it or
/// receive datagrams there): `compile` refuses the policy on the others.
///
/// Only TCP and UDP sockets get here (sock_create refuses the rest; MPTCP binds its
/// TCP subflow, UDP-Lite is UDP to `decide`); any other class is denied.
fn post_bind6(policy: &Policy, facts: &Facts) -> Result<Vec<Insn>, Unsupported> {
    let mut a = Asm::new();
    a.mov64(CTX, R1);
    a.load(R2, CTX, SOCK_FAMILY);
    a.jump_if(R2, Cmp::Ne, libc::AF_INET6 as u32, "allow");
    for w in 0..4 {
        a.load(R2, CTX, SOCK_SRC_IP6 + 4 * w);
        a.jump_if(R2, Cmp::Ne, 0, "allow");
    }
    a.load(PORT, CTX, SOCK_SRC_PORT);
    a.load(R2, CTX, SOCK_TYPE);
    a.load(R3, CTX, SOCK_PROTOCOL);
    classify(&mut a);
    // The context of a CGROUP_SOCK program is the struct sock itself.
    a.mov64(R3, CTX);
    read_ipv6only(&mut a, facts, "final_v6only")?;
    for (dual, mode) in [(true, "dual"), (false, "v6only")] {
        if !dual {
            a.label("final_v6only");
        }
        for (kind, class) in [(SocketKind::TCP, CLASS_TCP), (SocketKind::UDP, CLASS_UDP)] {
            let other = format!("{mode}_not{class}");
            a.jump_if(CLASS, Cmp::Ne, class, &other);
            // Every port (bound ports are never 0): nothing after the jump, which
            // the verifier would refuse as unreachable.
            let mut every_port = false;
            for (i, r) in wildcard_ports(policy, facts, dual, kind).iter().enumerate() {
                if r.first <= 1 && r.last == u16::MAX {
                    a.goto("allow");
                    every_port = true;
                    break;
                }
                let miss = format!("{mode}_{class}_miss{i}");
                if r.first > 1 {
                    a.jump_if(PORT, Cmp::Lt, r.first as u32, &miss);
                }
                if r.last < u16::MAX {
                    a.jump_if(PORT, Cmp::Gt, r.last as u32, &miss);
                }
                a.goto("allow");
                a.label(&miss);
            }
            if !every_port {
                a.ret(DENY);
            }
            a.label(&other);
        }
        a.ret(DENY);
    }
    a.label("allow");
    a.ret(ALLOW);
    Ok(a.finish())
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
