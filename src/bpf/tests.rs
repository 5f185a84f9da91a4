// bpf/tests.rs: the generated programs, checked two ways: whole golden vectors for
// small policies, and a differential run of every program in the interpreter
// (interp.rs) against `Policy::decide` over many requests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::btf::{BitPlace, KNOWN_LAYOUT};
use super::codegen::{self, Facts, Programs};
use super::insn::Insn;
use super::interp::{CTX_BASE, CTX_SIZE, Machine, SK_BASE};
use crate::policy::{BindRequest, Decision, Policy, Purpose, SocketKind};
use crate::rule::{self, PortRange, Rule};

const FACTS: Facts = Facts {
    ephemeral_ports: PortRange {
        first: 32768,
        last: 60999,
    },
    ipv6only: KNOWN_LAYOUT,
    refused_binds_undone: true,
};

fn rules(args: &[&str]) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        out.push(match *flag {
            "-d" => rule::deny_all(),
            "-b" => rule::parse_bind(it.next().unwrap()).unwrap(),
            "-m" => rule::parse_match(it.next().unwrap()).unwrap(),
            other => panic!("unknown flag {other}"),
        });
    }
    out
}

fn policy(args: &[&str]) -> Policy {
    Policy {
        rules: rules(args),
        ..Policy::default()
    }
}

/// struct bpf_sock_addr for `req`, as the bind hook sees it.
fn context(req: &BindRequest) -> [u8; CTX_SIZE] {
    let mut ctx = [0u8; CTX_SIZE];
    let put = |ctx: &mut [u8; CTX_SIZE], off: i16, bytes: &[u8]| {
        ctx[off as usize..off as usize + bytes.len()].copy_from_slice(bytes)
    };
    let family = match req.addr {
        SocketAddr::V4(a) => {
            put(&mut ctx, codegen::CTX_USER_IP4, &a.ip().octets());
            libc::AF_INET
        }
        SocketAddr::V6(a) => {
            put(&mut ctx, codegen::CTX_USER_IP6, &a.ip().octets());
            libc::AF_INET6
        }
    };
    put(&mut ctx, 0, &(family as u32).to_ne_bytes());
    put(
        &mut ctx,
        codegen::CTX_USER_PORT,
        &req.addr.port().to_be_bytes(),
    );
    put(&mut ctx, 28, &(family as u32).to_ne_bytes());
    put(
        &mut ctx,
        codegen::CTX_TYPE,
        &(req.kind.sock_type as u32).to_ne_bytes(),
    );
    put(
        &mut ctx,
        codegen::CTX_PROTOCOL,
        &(req.kind.protocol as u32).to_ne_bytes(),
    );
    put(&mut ctx, codegen::CTX_SK, &SK_BASE.to_ne_bytes());
    ctx
}

/// A struct sock whose sk_ipv6only (at `place`) is `v6only`.
fn struct_sock(m: &mut Machine, place: BitPlace, v6only: bool) {
    // Every other bit set, so that a read of the wrong bit shows.
    m.sk = [0xff; 64];
    m.sk[place.byte as usize] &= !(1 << place.bit);
    m.sk[place.byte as usize] |= (v6only as u8) << place.bit;
}

/// What the kernel binds after the program ran: None for a denial.
fn run_program(programs: &Programs, req: &BindRequest) -> Option<SocketAddr> {
    run_program_at(programs, req, FACTS.ipv6only, !req.dual_stack)
}

/// The same, the socket's sk_ipv6only at `place` and set to `v6only` (which a
/// racing thread may have changed from what `req` says).
fn run_program_at(
    programs: &Programs,
    req: &BindRequest,
    place: BitPlace,
    v6only: bool,
) -> Option<SocketAddr> {
    let mut m = Machine::new(context(req), SK_BASE);
    struct_sock(&mut m, place, v6only);
    let prog = match req.addr {
        SocketAddr::V4(_) => &programs.bind4,
        SocketAddr::V6(_) => &programs.bind6,
    };
    let ret = m.run(prog);
    assert!(ret <= 1, "return value {ret}");
    if ret == 0 {
        return None;
    }
    let port = u16::from_be_bytes([m.ctx[24], m.ctx[25]]);
    let ip = |off: usize, n: usize| m.ctx[off..off + n].to_vec();
    Some(match req.addr {
        SocketAddr::V4(_) => SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(<[u8; 4]>::try_from(ip(4, 4)).unwrap()),
            port,
        )),
        SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(<[u8; 16]>::try_from(ip(8, 16)).unwrap()),
            port,
            0,
            0,
        )),
    })
}

/// What `decide` binds: None for a denial.
fn decided(policy: &Policy, req: &BindRequest) -> Option<SocketAddr> {
    match policy.decide(req).decision {
        Decision::Allow => Some(req.addr),
        Decision::Rewrite(to) => {
            assert_eq!(to.len(), 1, "compile refuses several addresses");
            Some(to[0])
        }
        Decision::Deny(_) => None,
        Decision::ReplaceWithFd(_) => panic!("compile refuses replacements"),
    }
}

const MPTCP: SocketKind = SocketKind {
    sock_type: libc::SOCK_STREAM,
    protocol: 262,
};
const UDPLITE: SocketKind = SocketKind {
    sock_type: libc::SOCK_DGRAM,
    protocol: libc::IPPROTO_UDPLITE,
};

fn requests() -> Vec<BindRequest> {
    let v4: Vec<Ipv4Addr> = [
        "0.0.0.0",
        "127.0.0.1",
        "127.0.0.2",
        "127.255.255.254",
        "10.1.2.3",
        "11.0.0.1",
        "192.168.1.1",
        "255.255.255.255",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut v6: Vec<Ipv6Addr> = [
        "::",
        "::1",
        "::2",
        "fe80::1",
        "2001:db8::5",
        "2001:db8:ffff::1",
        "2001:db9::1",
        "::7f00:1",
        "ffff::",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    v6.extend(v4.iter().map(Ipv4Addr::to_ipv6_mapped));
    // A few more, from a fixed linear congruential sequence.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 32) as u32
    };
    let mut v4_all = v4.clone();
    for _ in 0..12 {
        v4_all.push(Ipv4Addr::from(
            (next() & 0x0fff_ffff) | (0x0a00_0000 * (next() % 2)),
        ));
        let hi = [0x2001_0db8u32, 0, 0xfe80_0000][next() as usize % 3];
        let w = [hi, next() % 3, next() % 2, next()];
        let mut o = [0u8; 16];
        for (i, x) in w.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
        }
        v6.push(Ipv6Addr::from(o));
    }
    let mut ports = vec![
        0u16, 1, 53, 79, 80, 81, 443, 1023, 1024, 7999, 8000, 8005, 8010, 8011, 8080, 9000, 40000,
        65535,
    ];
    for _ in 0..6 {
        ports.push(next() as u16);
    }
    let kinds = [SocketKind::TCP, SocketKind::UDP, MPTCP, UDPLITE];
    let mut out = Vec::new();
    for &kind in &kinds {
        for &port in &ports {
            for ip in &v4_all {
                out.push(BindRequest {
                    addr: SocketAddr::new(IpAddr::V4(*ip), port),
                    dual_stack: false,
                    kind,
                    purpose: Purpose::Bind,
                });
            }
            for ip in &v6 {
                for dual_stack in [false, true] {
                    out.push(BindRequest {
                        addr: SocketAddr::new(IpAddr::V6(*ip), port),
                        dual_stack,
                        kind,
                        purpose: Purpose::Bind,
                    });
                }
            }
        }
    }
    out
}

/// Policies of every shape the programs carry out.
const POLICIES: &[&[&str]] = &[
    &[],
    &["-b", "127.0.0.1"],
    &["-b", "127.0.0.2:8080"],
    &["-b", "[::1]"],
    &["-b", "[::1]:9000", "-b", "127.0.0.1:9001"],
    &["-d"],
    &["-d", "-m", ":8000=allow"],
    &[
        "-d",
        "-m",
        "127.0.0.1:8000-8010=allow",
        "-m",
        "[::1]:80=allow",
    ],
    &["-m", "0.0.0.0:80/0=127.0.0.1:8080"],
    &["-m", "tcp::53=127.0.0.1", "-m", "udp::53=deny"],
    &["-m", "10.0.0.0/8=deny", "-m", "[2001:db8::]:*/32=[::1]"],
    &["-m", ":0=127.0.0.3"],
    &["-m", "[::ffff:10.0.0.0]/104=127.0.0.1:7"],
    &["-m", "[::]:443=[::1]:8443", "-b", "127.0.0.1:*"],
    &["-m", ":1-1023=deny"],
    &["-d", "-m", "127.0.0.0:*/8=allow"],
    &["-m", ":80=127.0.0.1", "-m", ":81=[::1]:82"],
    &["-b", "fd=3"],
    &[
        "-m",
        "[2001:db8:0:1::]/63=deny",
        "-m",
        "[fe80::]:80-90/10=[::1]:80",
    ],
    &[
        "-m",
        "udp:0.0.0.0/0=127.0.0.9",
        "-m",
        "tcp:[::]:0-100/0=[::2]:*",
    ],
    &[
        "-b",
        "127.0.0.1",
        "-m",
        "127.0.0.5:80=allow",
        "-m",
        "11.0.0.0:80/8=deny",
    ],
    &["-m", "0.0.0.0=127.0.0.1:5", "-m", "[::]=[::1]:6"],
    &["-b", "[::1]", "-b", "127.0.0.1", "-m", ":65535=deny"],
    // [::] decided by IPV6_V6ONLY.
    &["-b", "127.0.0.1"],
    &["-b", "127.0.0.2"],
    &["-m", "0.0.0.0:80/0=127.0.0.1:8080"],
    &["-m", "0.0.0.0:443/0=deny"],
    &["-m", "[::1]=allow", "-m", "0.0.0.0=127.0.0.1"],
    &["-d", "-m", "0.0.0.0:8000/0=allow"],
    &[
        "-m",
        ":1-1023=deny",
        "-m",
        "0.0.0.0:1-1023/0=allow",
        "-b",
        "127.0.0.3:*",
    ],
    &[
        "-m",
        "udp:0.0.0.0/0=127.0.0.9",
        "-m",
        "tcp:0.0.0.0:8000-8010/0=deny",
    ],
    &["-m", "[::]=[::1]", "-m", "0.0.0.0:0/0=127.0.0.4"],
];

#[test]
fn programs_do_what_decide_says() {
    let requests = requests();
    assert!(requests.len() > 5000, "{}", requests.len());
    let (mut denied, mut rewritten) = (0, 0);
    for args in POLICIES {
        let policy = policy(args);
        let programs =
            codegen::compile(&policy, &FACTS).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        for req in &requests {
            let want = decided(&policy, req);
            assert_eq!(
                run_program(&programs, req),
                want,
                "policy {args:?}, request {req:?}"
            );
            match want {
                None => denied += 1,
                Some(to) if to != req.addr => rewritten += 1,
                Some(_) => {}
            }
        }
    }
    // The comparison covered every outcome, not only "allowed".
    assert!(denied > 1000 && rewritten > 1000, "{denied} {rewritten}");
}

/// A sockaddr of another family is left to the kernel (EAFNOSUPPORT), except
/// AF_UNSPEC with INADDR_ANY on an IPv4 socket, which the kernel binds as 0.0.0.0.
#[test]
fn other_families_are_the_kernels_to_refuse() {
    let p = codegen::compile(&policy(&["-d"]), &FACTS).unwrap();
    let run = |prog: &[Insn], family: i32, ip4: [u8; 4]| {
        let req = BindRequest::tcp("0.0.0.0:80".parse().unwrap());
        let mut ctx = context(&req);
        ctx[0..4].copy_from_slice(&(family as u32).to_ne_bytes());
        ctx[4..8].copy_from_slice(&ip4);
        Machine::new(ctx, SK_BASE).run(prog)
    };
    assert_eq!(run(&p.bind4, libc::AF_INET, [0; 4]), 0);
    assert_eq!(run(&p.bind4, libc::AF_UNSPEC, [0; 4]), 0);
    assert_eq!(run(&p.bind4, libc::AF_UNSPEC, [127, 0, 0, 1]), 1);
    assert_eq!(run(&p.bind4, libc::AF_INET6, [0; 4]), 1);
    assert_eq!(run(&p.bind4, libc::AF_UNIX, [0; 4]), 1);
    assert_eq!(run(&p.bind6, libc::AF_INET, [0; 4]), 1);
    let mut ctx = context(&BindRequest::tcp("[::1]:80".parse().unwrap()));
    ctx[0..4].copy_from_slice(&(libc::AF_INET6 as u32).to_ne_bytes());
    assert_eq!(
        Machine::new(ctx, SK_BASE).run(&p.bind6),
        0,
        "-d denies [::1]:80"
    );
}

#[test]
fn refuses_what_the_programs_cannot_do() {
    let refused = |p: &Policy, facts: &Facts, needle: &str| {
        let e = codegen::compile(p, facts).expect_err(needle);
        assert!(e.0.contains(needle), "{e}");
        assert!(!e.0.contains('\n'));
    };
    // Several addresses to try in order (a host name's).
    let mut two = policy(&[]);
    two.rules.push(Rule {
        text: "-b localhost".into(),
        ..rule::parse_bind("127.0.0.1").unwrap()
    });
    if let rule::Action::Rewrite { ips, .. } = &mut two.rules[0].action {
        ips.push("127.0.0.2".parse().unwrap());
    }
    refused(&two, &FACTS, "cannot try several");
    // Ports a port-0 bind could get.
    refused(
        &policy(&["-m", ":40000-40010=deny"]),
        &FACTS,
        "ip_local_port_range",
    );
    assert!(codegen::compile(&policy(&["-m", ":1-1023=deny"]), &FACTS).is_ok());
    // A rewrite to [::] when [::] is decided by IPV6_V6ONLY: post_bind6 could not
    // tell it from a raced bind. Without the dependence it is carried out.
    refused(
        &policy(&["-b", "127.0.0.1", "-m", "[::1]:80=[::]"]),
        &FACTS,
        "rewrite to [::]",
    );
    assert!(codegen::compile(&policy(&["-m", "[::1]:80=[::]"]), &FACTS).is_ok());
    // A place of the bit the programs do not read.
    let far = Facts {
        ipv6only: BitPlace { byte: 300, bit: 1 },
        ..FACTS
    };
    refused(&policy(&["-b", "127.0.0.1"]), &far, "byte 300");
    assert!(codegen::compile(&policy(&["-b", "[::1]"]), &far).is_ok());
    // A kernel that keeps the port of a bind post_bind6 refuses (5.10).
    let keeps = Facts {
        refused_binds_undone: false,
        ..FACTS
    };
    refused(&policy(&["-b", "127.0.0.1"]), &keeps, "does not undo");
    assert!(codegen::compile(&policy(&["-b", "127.0.0.1", "-b", "[::1]"]), &keeps).is_ok());
}

#[test]
fn sock_create_allows_only_sockets_whose_binds_reach_the_hooks() {
    let p = codegen::compile(&policy(&["-d"]), &FACTS).unwrap();
    for (ty, proto, allowed) in [
        (libc::SOCK_STREAM, libc::IPPROTO_TCP, true),
        (libc::SOCK_STREAM, 262, true),
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP, true),
        (libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, true),
        (libc::SOCK_RAW, libc::IPPROTO_TCP, false),
        (libc::SOCK_RAW, libc::IPPROTO_ICMP, false),
        (libc::SOCK_DGRAM, libc::IPPROTO_ICMP, false),
        (libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6, false),
        (libc::SOCK_STREAM, libc::IPPROTO_SCTP, false),
        (libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP, false),
        (libc::SOCK_DGRAM, 115, false), // L2TP/IP
    ] {
        let mut ctx = [0u8; CTX_SIZE];
        ctx[4..8].copy_from_slice(&(libc::AF_INET as u32).to_ne_bytes());
        ctx[8..12].copy_from_slice(&(ty as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&(proto as u32).to_ne_bytes());
        let mut m = Machine::new(ctx, CTX_BASE);
        assert_eq!(
            m.run(&p.sock_create),
            allowed as u64,
            "type {ty} protocol {proto}"
        );
    }
}

/// (code, dst, src, off, imm) for readable golden vectors.
fn tuples(p: &[Insn]) -> Vec<(u8, u8, u8, i16, i32)> {
    p.iter()
        .map(|i| (i.code, i.dst(), i.src(), i.off, i.imm))
        .collect()
}

const PROLOGUE: [(u8, u8, u8, i16, i32); 14] = [
    (0xbf, 6, 1, 0, 0),   // r6 = ctx
    (0x61, 7, 6, 24, 0),  // r7 = user_port
    (0xdc, 7, 0, 0, 16),  // r7 = be16(r7)
    (0x61, 2, 6, 32, 0),  // r2 = type
    (0x61, 3, 6, 36, 0),  // r3 = protocol
    (0xb4, 8, 0, 0, 3),   // class = raw
    (0x16, 2, 0, 9, 3),   //   if type == SOCK_RAW
    (0xb4, 8, 0, 0, 0),   // class = tcp
    (0x16, 3, 0, 7, 6),   //   if protocol == TCP
    (0x16, 3, 0, 6, 262), //   or MPTCP
    (0xb4, 8, 0, 0, 1),   // class = udp
    (0x16, 3, 0, 4, 17),  //   if UDP
    (0x16, 3, 0, 3, 136), //   or UDP-Lite
    (0xb4, 8, 0, 0, 2),   // class = sctp ...
];

#[test]
fn golden_bind4_for_a_rewrite_and_an_allow() {
    // -b 127.0.0.1:8080 -m 127.0.0.5=allow: the allow first (last given), then the
    // rewrite, which matches every IPv4 bind and so ends the program.
    let p = codegen::compile(
        &policy(&[
            "-b",
            "[::1]:8080",
            "-b",
            "127.0.0.1:8080",
            "-m",
            "127.0.0.5=allow",
        ]),
        &FACTS,
    )
    .unwrap();
    let mut want = PROLOGUE.to_vec();
    want.extend([
        (0x16, 3, 0, 1, 132),                                //   if SCTP
        (0xb4, 8, 0, 0, 4),                                  // class = other
        (0x61, 2, 6, 0, 0),                                  // user_family
        (0x16, 2, 0, 3, 2),                                  //   AF_INET: judged
        (0x56, 2, 0, 15, 0),                                 //   not AF_UNSPEC: kernel's
        (0x61, 2, 6, 4, 0),                                  //   AF_UNSPEC with
        (0x56, 2, 0, 13, 0),                                 //   INADDR_ANY: judged
        (0x61, 2, 6, 4, 0),                                  // r2 = user_ip4
        (0x16, 2, 0, 1, i32::from_ne_bytes([127, 0, 0, 5])), // == 127.0.0.5?
        (0x05, 0, 0, 2, 0),                                  // goto next
        (0xb4, 0, 0, 0, 1),                                  // matched: allow
        (0x95, 0, 0, 0, 0),
        (0xb4, 2, 0, 0, i32::from_ne_bytes([127, 0, 0, 1])), // next: user_ip4 =
        (0x63, 6, 2, 4, 0),                                  //   127.0.0.1
        (0x56, 7, 0, 1, 0),                                  // port 0 of a
        (0xb6, 8, 0, 2, 2),                                  //   protocol with ports?
        (
            0xb4,
            2,
            0,
            0,
            u16::from_ne_bytes(8080u16.to_be_bytes()) as i32,
        ), // no: port
        (0x63, 6, 2, 24, 0),                                 //   8080
        (0xb4, 0, 0, 0, 1),                                  // allow
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // another family: the kernel refuses it
        (0x95, 0, 0, 0, 0),
    ]);
    assert_eq!(tuples(&p.bind4), want);
}

#[test]
fn golden_bind6_for_deny_with_one_allowed_port() {
    // -d -m :8000=allow: the same for every way an IPv6 bind is seen, so [::] is
    // decided without getsockopt.
    let p = codegen::compile(&policy(&["-d", "-m", ":8000=allow"]), &FACTS).unwrap();
    let rules = [
        (0x56, 7, 0, 2, 8000), // port != 8000: next
        (0xb4, 0, 0, 0, 1),    // allow
        (0x95, 0, 0, 0, 0),
        (0x56, 7, 0, 1, 0), // next (-d): port 0 of a protocol with ports?
        (0xb6, 8, 0, 2, 2),
        (0xb4, 0, 0, 0, 0), // no: deny
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // yes: allowed, listen() judged
        (0x95, 0, 0, 0, 0),
    ];
    let mut want = PROLOGUE.to_vec();
    want.extend([
        (0x16, 3, 0, 1, 132),
        (0xb4, 8, 0, 0, 4),
        (0x61, 2, 6, 0, 0),   // user_family
        (0x56, 2, 0, 36, 10), //   not AF_INET6: the kernel's
        (0x61, 2, 6, 8, 0),   // user_ip6[0] != 0: native
        (0x56, 2, 0, 25, 0),
        (0x61, 2, 6, 12, 0),
        (0x56, 2, 0, 23, 0),
        (0x61, 2, 6, 16, 0),
        (0x16, 2, 0, 12, i32::from_ne_bytes([0, 0, 0xff, 0xff])), // mapped
        (0x56, 2, 0, 20, 0),
        (0x61, 2, 6, 20, 0),
        (0x56, 2, 0, 18, 0),
    ]);
    for _section in ["[::]", "mapped", "native"] {
        want.extend(rules);
    }
    want.extend([(0xb4, 0, 0, 0, 1), (0x95, 0, 0, 0, 0)]);
    assert_eq!(tuples(&p.bind6), want);
}

/// struct bpf_sock after a bind of `to` on an AF_INET6 socket of `kind`, as
/// post_bind6 sees it (src_port in host order).
fn bound_context(to: SocketAddrV6, kind: SocketKind) -> [u8; CTX_SIZE] {
    let mut ctx = [0u8; CTX_SIZE];
    let mut put = |off: i16, bytes: &[u8]| {
        ctx[off as usize..off as usize + bytes.len()].copy_from_slice(bytes)
    };
    put(codegen::SOCK_FAMILY, &(libc::AF_INET6 as u32).to_ne_bytes());
    put(codegen::SOCK_TYPE, &(kind.sock_type as u32).to_ne_bytes());
    put(
        codegen::SOCK_PROTOCOL,
        &(kind.protocol as u32).to_ne_bytes(),
    );
    put(codegen::SOCK_SRC_IP6, &to.ip().octets());
    put(codegen::SOCK_SRC_PORT, &(to.port() as u32).to_ne_bytes());
    ctx
}

/// post_bind6's verdict on a socket bound to `to` whose final mode is `v6only`.
fn post_bind(prog: &[Insn], to: SocketAddrV6, kind: SocketKind, v6only: bool) -> bool {
    // The context of a CGROUP_SOCK program is the struct sock itself.
    let mut m = Machine::new(bound_context(to, kind), CTX_BASE);
    struct_sock(&mut m, FACTS.ipv6only, v6only);
    match m.run(prog) {
        0 => false,
        1 => true,
        r => panic!("return value {r}"),
    }
}

/// Whether a bind that did not race could end bound to `to` on a socket of mode
/// `dual` and `kind`: some request `decide` sends there (a port-0 one to any
/// ephemeral port). A socket bound to an address other than `[::]` serves that
/// address alone whatever its mode, so there either mode will do.
fn legitimate(
    policy: &Policy,
    requests: &[BindRequest],
    to: SocketAddrV6,
    kind: SocketKind,
    dual: bool,
) -> bool {
    let wildcard = to.ip().is_unspecified();
    let mut candidates: Vec<BindRequest> = requests
        .iter()
        .filter(|r| r.kind == kind && r.addr.is_ipv6() && (!wildcard || r.dual_stack == dual))
        .copied()
        .collect();
    for port in [0, to.port()] {
        candidates.push(BindRequest {
            addr: SocketAddr::V6(SocketAddrV6::new(*to.ip(), port, 0, 0)),
            dual_stack: dual,
            kind,
            purpose: Purpose::Bind,
        });
    }
    candidates.iter().any(|r| match decided(policy, r) {
        Some(SocketAddr::V6(got)) if got.ip() == to.ip() => {
            got.port() == to.port()
                || (got.port() == 0
                    && (FACTS.ephemeral_ports.first..=FACTS.ephemeral_ports.last)
                        .contains(&to.port()))
        }
        _ => false,
    })
}

/// The race of tests/c/escape_v6flip.c, every way: bind6 decides `[::]` in the mode
/// it read, the bind happens in the mode another thread left, and post_bind6 judges
/// the result. A bind that did not race is never refused; one that raced ends
/// refused (EPERM), failed natively (a v4-mapped address on an IPv6-only socket is
/// EINVAL) or where some request could legitimately have ended.
#[test]
fn post_bind6_leaves_the_race_nothing() {
    let requests = requests();
    let (mut checked, mut refused) = (0, 0);
    for args in POLICIES {
        let policy = policy(args);
        let programs = codegen::compile(&policy, &FACTS).unwrap();
        let Some(post_bind6) = &programs.post_bind6 else {
            // Nothing depends on the mode: bind6 decides [::] alike in both (the
            // differential test checks it against decide for both).
            continue;
        };
        for req in requests.iter().filter(|r| {
            matches!(r.addr, SocketAddr::V6(a) if a.ip().is_unspecified()) && r.dual_stack
        }) {
            for (read_v6only, final_v6only) in
                [(false, false), (true, true), (false, true), (true, false)]
            {
                let raced = read_v6only != final_v6only;
                let Some(SocketAddr::V6(to)) =
                    run_program_at(&programs, req, FACTS.ipv6only, read_v6only)
                else {
                    continue; // denied by bind6
                };
                if to.ip().to_ipv4_mapped().is_some() && final_v6only {
                    assert!(
                        raced,
                        "{args:?} {req:?}: decide gave a v6only socket a mapped address"
                    );
                    continue; // EINVAL in __inet6_bind
                }
                // A port-0 bind gets an ephemeral port: the first and the last.
                let ports = match to.port() {
                    0 => vec![FACTS.ephemeral_ports.first, FACTS.ephemeral_ports.last],
                    p => vec![p],
                };
                for port in ports {
                    let bound = SocketAddrV6::new(*to.ip(), port, 0, 0);
                    let allowed = post_bind(post_bind6, bound, req.kind, final_v6only);
                    checked += 1;
                    if !raced {
                        assert!(
                            allowed,
                            "{args:?} {req:?}: a bind that did not race refused at {bound}"
                        );
                    } else if allowed {
                        assert!(
                            legitimate(&policy, &requests, bound, req.kind, !final_v6only),
                            "{args:?} {req:?}: the race left {bound} (v6only {final_v6only}), which no request reaches"
                        );
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        // Binds that did not race, every final [::] port post_bind6 allows is one
        // some request reaches, and back.
        for kind in [SocketKind::TCP, SocketKind::UDP, MPTCP, UDPLITE] {
            for dual in [false, true] {
                for port in [
                    1u16, 53, 80, 443, 1023, 1024, 8000, 8010, 8080, 32767, 32768, 60999, 61000,
                    65535,
                ] {
                    let bound = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
                    assert_eq!(
                        post_bind(post_bind6, bound, kind, !dual),
                        legitimate(&policy, &[], bound, kind, dual),
                        "{args:?}: [::]:{port} on a {kind:?} socket, dual {dual}"
                    );
                }
            }
        }
    }
    // The escape itself was met and refused, not only legitimate binds let through.
    assert!(checked > 500 && refused > 50, "{checked} {refused}");
}

/// A failed read of sk_ipv6only denies, in bind6 and in post_bind6 alike; a read of
/// the bit where BTF says it is.
#[test]
fn the_ipv6only_read_fails_closed_and_follows_btf() {
    let p = codegen::compile(&policy(&["-b", "127.0.0.2"]), &FACTS).unwrap();
    let wildcard = BindRequest {
        dual_stack: true,
        ..BindRequest::tcp("[::]:80".parse().unwrap())
    };
    let mut m = Machine::new(context(&wildcard), SK_BASE);
    m.probe_fails = true;
    assert_eq!(m.run(&p.bind6), 0);
    let mut m = Machine::new(
        bound_context("[::]:80".parse().unwrap(), SocketKind::TCP),
        CTX_BASE,
    );
    m.probe_fails = true;
    assert_eq!(m.run(p.post_bind6.as_ref().unwrap()), 0);
    // Elsewhere: the programs read the place given, in both modes.
    let moved = Facts {
        ipv6only: BitPlace { byte: 41, bit: 2 },
        ..FACTS
    };
    let p = codegen::compile(&policy(&["-b", "127.0.0.2"]), &moved).unwrap();
    for (dual, want) in [(true, "[::ffff:127.0.0.2]:80"), (false, "[::]:80")] {
        let req = BindRequest {
            dual_stack: dual,
            ..wildcard
        };
        assert_eq!(
            run_program_at(&p, &req, moved.ipv6only, !dual),
            Some(want.parse().unwrap())
        );
    }
}
/// The read of sk_ipv6only, `sk` the register holding the struct sock: 24 bytes
/// to fp-24, a failed read denies, then bit 5 of byte 19 (fp-5).
const READ_IPV6ONLY: [(u8, u8, u8, i16, i32); 10] = [
    (0xbf, 1, 10, 0, 0),  // r1 = fp
    (0x07, 1, 0, 0, -24), // r1 -= 24
    (0xb4, 2, 0, 0, 24),  // r2 = 24
    (0x85, 0, 0, 0, 113), // bpf_probe_read_kernel(r1, r2, r3)
    (0x16, 0, 0, 2, 0),   // read: on
    (0xb4, 0, 0, 0, 0),   // failed: deny
    (0x95, 0, 0, 0, 0),
    (0x71, 2, 10, -5, 0), // r2 = byte 19
    (0x54, 2, 0, 0, 32),  // & 1 << 5
    (0x56, 2, 0, 0, 0),   // set: IPv6-only (offset patched by the caller)
];

fn read_ipv6only_then(v6only_at: i16) -> Vec<(u8, u8, u8, i16, i32)> {
    let mut r = READ_IPV6ONLY.to_vec();
    r[9].3 = v6only_at;
    r
}

#[test]
fn golden_bind6_reads_ipv6only_for_a_dual_stack_decision() {
    // -m 0.0.0.0:443/0=deny: a dual [::]:443 meets the IPv4 rule and is denied, a
    // v6only one is not; so [::] has a section per mode.
    let p = codegen::compile(&policy(&["-m", "0.0.0.0:443/0=deny"]), &FACTS).unwrap();
    let mut want = PROLOGUE.to_vec();
    want.extend([
        (0x16, 3, 0, 1, 132),
        (0xb4, 8, 0, 0, 4),
        (0x61, 2, 6, 0, 0),   // user_family
        (0x56, 2, 0, 35, 10), //   not AF_INET6: the kernel's
        (0x61, 2, 6, 8, 0),   // user_ip6: native, mapped or [::]
        (0x56, 2, 0, 31, 0),
        (0x61, 2, 6, 12, 0),
        (0x56, 2, 0, 29, 0),
        (0x61, 2, 6, 16, 0),
        (0x16, 2, 0, 22, i32::from_ne_bytes([0, 0, 0xff, 0xff])),
        (0x56, 2, 0, 26, 0),
        (0x61, 2, 6, 20, 0),
        (0x56, 2, 0, 24, 0),
        (0xbf, 3, 6, 0, 0),  // [::]: r3 = ctx
        (0x79, 3, 3, 64, 0), //   r3 = ctx->sk
    ]);
    want.extend(read_ipv6only_then(5));
    want.extend([
        (0x56, 7, 0, 2, 443), // dual: port 443 (of 0.0.0.0): deny
        (0xb4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // else allow
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // IPv6-only: allow
        (0x95, 0, 0, 0, 0),
        (0x56, 7, 0, 2, 443), // mapped: port 443 denied
        (0xb4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // native: allow
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // another family
        (0x95, 0, 0, 0, 0),
    ]);
    assert_eq!(tuples(&p.bind6), want);
}

#[test]
fn golden_post_bind6_for_a_dual_stack_decision() {
    // The same policy: a bind that ended on [::] may stay there on any port but 443
    // when the socket is dual-stack, on any port when it is IPv6-only.
    let p = codegen::compile(&policy(&["-m", "0.0.0.0:443/0=deny"]), &FACTS).unwrap();
    let mut want = vec![
        (0xbf, 6, 1, 0, 0),   // r6 = ctx (the struct sock)
        (0x61, 2, 6, 4, 0),   // family
        (0x56, 2, 0, 55, 10), //   not AF_INET6: allow
        (0x61, 2, 6, 28, 0),  // src_ip6 not [::]: allow
        (0x56, 2, 0, 53, 0),
        (0x61, 2, 6, 32, 0),
        (0x56, 2, 0, 51, 0),
        (0x61, 2, 6, 36, 0),
        (0x56, 2, 0, 49, 0),
        (0x61, 2, 6, 40, 0),
        (0x56, 2, 0, 47, 0),
        (0x61, 7, 6, 44, 0), // r7 = src_port (host order)
        (0x61, 2, 6, 8, 0),  // type
        (0x61, 3, 6, 12, 0), // protocol
    ];
    want.extend_from_slice(&PROLOGUE[5..]);
    want.extend([
        (0x16, 3, 0, 1, 132),
        (0xb4, 8, 0, 0, 4),
        (0xbf, 3, 6, 0, 0), // r3 = the struct sock
    ]);
    want.extend(read_ipv6only_then(16));
    want.extend([
        (0x56, 8, 0, 6, 0),   // dual, TCP:
        (0x26, 7, 0, 1, 442), //   1-442
        (0x05, 0, 0, 19, 0),
        (0xa6, 7, 0, 1, 444), //   444-65535
        (0x05, 0, 0, 17, 0),
        (0xb4, 0, 0, 0, 0), //   else deny
        (0x95, 0, 0, 0, 0),
        (0x56, 8, 0, 6, 1), // dual, UDP: the same
        (0x26, 7, 0, 1, 442),
        (0x05, 0, 0, 12, 0),
        (0xa6, 7, 0, 1, 444),
        (0x05, 0, 0, 10, 0),
        (0xb4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 0), // dual, any other class: deny
        (0x95, 0, 0, 0, 0),
        (0x56, 8, 0, 1, 0), // IPv6-only, TCP: every port
        (0x05, 0, 0, 4, 0),
        (0x56, 8, 0, 1, 1), // UDP: every port
        (0x05, 0, 0, 2, 0),
        (0xb4, 0, 0, 0, 0), // any other class: deny
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1), // allow
        (0x95, 0, 0, 0, 0),
    ]);
    assert_eq!(tuples(p.post_bind6.as_ref().unwrap()), want);
    // A policy that does not depend on the mode has none.
    let p = codegen::compile(&policy(&["-b", "127.0.0.1", "-b", "[::1]"]), &FACTS).unwrap();
    assert_eq!(p.post_bind6, None);
}
