//! tests/hostile.rs: bind() with hostile arguments (bad pointers, lengths, families,
//! descriptors) from `tests/c/hostile_bind.c`. force-bind must keep running, exit with
//! the target's status, give the target the errno the kernel would give, and keep
//! serving the target's other threads meanwhile.
//!
//! Every case is first run without force-bind and checked against the table below,
//! so the table documents what the kernel does; then under each engine with a rule
//! that rewrites every bind, with `-d -m :0=deny` (every case binds port 0, which
//! `-d` alone lets through), and with `-d` alone.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a case is, and so what it must get under each policy.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Succeeds natively. Rewrite: succeeds, on the rule's address of the socket's
    /// family. Deny: EPERM.
    Valid,
    /// Succeeds natively, and binds IPv4 on an AF_INET6 socket (a v4-mapped
    /// address). Rewrite: succeeds, on the IPv4 rule's address in mapped form (an
    /// IPv6 rule never takes it). Deny: EPERM.
    Mapped,
    /// The kernel rejects it by its arguments alone (bad pointer, bad length, bad or
    /// non-socket fd, a family the socket cannot take): nothing gets bound whatever
    /// the policy says, so the target must get the kernel's errno under both rules.
    /// Order matters: the kernel looks up the fd first (EBADF, ENOTSOCK), then checks
    /// the length against sockaddr_storage (EINVAL), then copies the sockaddr
    /// (EFAULT), then the protocol checks length and family (EINVAL, EAFNOSUPPORT).
    Args(i32),
    /// Fails natively for a reason a rewrite takes away (the address is not on this
    /// host). Rewrite: succeeds on the rule's address. Deny: EPERM.
    Address(i32),
    /// Fails natively because of the socket's state (already bound). Rewrite: the
    /// same errno (the first bind was rewritten, the socket is bound all the same).
    /// Deny: EPERM (the first bind was denied, so the second is a valid request).
    State(i32),
}

use Kind::*;

const EPERM: i32 = libc::EPERM;
const EBADF: i32 = libc::EBADF;
const EFAULT: i32 = libc::EFAULT;
const EINVAL: i32 = libc::EINVAL;
const ENOTSOCK: i32 = libc::ENOTSOCK;
const EAFNOSUPPORT: i32 = libc::EAFNOSUPPORT;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

/// (case, family of the socket when it is an IP socket, kind). Names as in
/// hostile_bind.c, which says what each case passes.
const CASES: &[(&str, u8, Kind)] = &[
    // Pointers.
    ("ptr_null", 4, Args(EFAULT)),
    ("ptr_unmapped", 4, Args(EFAULT)),
    ("ptr_protnone", 4, Args(EFAULT)),
    ("ptr_straddle", 4, Args(EFAULT)),
    ("ptr_kernel", 4, Args(EFAULT)),
    ("ptr_readonly", 4, Valid),
    ("ptr_null_v6", 6, Args(EFAULT)),
    ("ptr_straddle_v6", 6, Args(EFAULT)),
    // addrlen 0: nothing is copied, so any pointer is fine; inet_bind says EINVAL.
    ("ptr_null_len0", 4, Args(EINVAL)),
    ("ptr_unmapped_len0", 4, Args(EINVAL)),
    // addrlen > sizeof(sockaddr_storage) is refused before the copy.
    ("ptr_null_len4096", 4, Args(EINVAL)),
    // Lengths.
    ("len_0", 4, Args(EINVAL)),
    ("len_1", 4, Args(EINVAL)),
    ("len_2", 4, Args(EINVAL)),
    ("len_15", 4, Args(EINVAL)),
    ("len_16", 4, Valid),
    ("len_128", 4, Valid),
    ("len_129", 4, Args(EINVAL)),
    ("len_4096", 4, Args(EINVAL)),
    ("len_2p31", 4, Args(EINVAL)),
    ("len_minus1", 4, Args(EINVAL)),
    // The kernel takes addrlen as an int: the upper half of the register is ignored.
    ("len_2p32_plus16", 4, Valid),
    ("v6_len_23", 6, Args(EINVAL)),
    ("v6_len_24", 6, Valid),
    ("v6_len_28", 6, Valid),
    ("v6_len_4096", 6, Args(EINVAL)),
    // Families.
    ("family_unknown", 4, Args(EAFNOSUPPORT)),
    ("family_unknown_v6", 6, Args(EAFNOSUPPORT)),
    ("family_unix_on_v4", 4, Args(EAFNOSUPPORT)),
    // inet_bind() takes AF_UNSPEC as AF_INET when the address is 0.0.0.0, for
    // compatibility; with any other address it is EAFNOSUPPORT.
    ("unspec_any_on_v4", 4, Valid),
    ("unspec_lo_on_v4", 4, Args(EAFNOSUPPORT)),
    // inet6_bind(): shorter than 24 is EINVAL, then any family but AF_INET6 is
    // EAFNOSUPPORT: the same bytes get different errnos by length alone.
    ("unspec_any_on_v6_len16", 6, Args(EINVAL)),
    ("unspec_any_on_v6_len28", 6, Args(EAFNOSUPPORT)),
    ("v4_on_v6_len16", 6, Args(EINVAL)),
    ("v4_on_v6_len28", 6, Args(EAFNOSUPPORT)),
    ("v6_on_v4_len28", 4, Args(EAFNOSUPPORT)),
    ("v6_on_v4_len16", 4, Args(EAFNOSUPPORT)),
    ("v4mapped_on_v6", 6, Mapped),
    ("v4_on_unix", 0, Args(EINVAL)),
    ("v4_nonlocal", 4, Address(EADDRNOTAVAIL)),
    // Descriptors.
    ("fd_closed", 4, Args(EBADF)),
    ("fd_negative", 4, Args(EBADF)),
    ("fd_huge", 4, Args(EBADF)),
    ("fd_intmax", 4, Args(EBADF)),
    ("fd_pipe", 4, Args(ENOTSOCK)),
    ("fd_devnull", 4, Args(ENOTSOCK)),
    ("fd_pipe_v6", 6, Args(ENOTSOCK)),
    // Combinations: which error wins is the kernel's order.
    ("fd_closed_ptr_null", 4, Args(EBADF)),
    ("fd_pipe_ptr_unmapped", 4, Args(ENOTSOCK)),
    ("fd_closed_len_minus1", 4, Args(EBADF)),
    ("fd_pipe_len_4096", 4, Args(ENOTSOCK)),
    ("fd_closed_len_0", 4, Args(EBADF)),
    ("fd_devnull_family_unknown", 4, Args(ENOTSOCK)),
    ("fd_huge_ptr_kernel", 4, Args(EBADF)),
    ("len_4096_ptr_unmapped", 4, Args(EINVAL)),
    // The copy comes before the protocol's length check.
    ("len_15_ptr_null", 4, Args(EFAULT)),
    // State.
    ("bound_twice", 4, State(EINVAL)),
    ("bound_twice_v6", 6, State(EINVAL)),
];

/// The exit status hostile_bind gives, so force-bind's own cannot pass for it.
const TARGET_STATUS: i32 = 7;

/// Every case binds port 0. The IPv4 address is not the one the cases ask for
/// (127.0.0.1), so a case that is not rewritten shows.
const REWRITE: &[&str] = &["-b", "127.0.0.5:0", "-b", "[::1]:0"];
const REWRITE_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// A port-0 bind is no service bind to `-d` alone: the MATCH must name port 0.
const DENY: &[&str] = &["-d", "-m", ":0=deny"];
/// `-d` alone lets port-0 binds through (their listen() is judged instead): every
/// case gets what it gets natively.
const DENY_LISTEN: &[&str] = &["-d"];

fn hostile_bind() -> &'static str {
    c_program("hostile_bind", &["-pthread"])
}

/// What one case got: Ok(bound address text) or Err(errno).
type Outcome = Result<String, i32>;

fn outcomes(f: &Finished) -> BTreeMap<String, Outcome> {
    let mut map = BTreeMap::new();
    for line in f.stdout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let outcome = match w.as_slice() {
            ["case", _, "ok", addr] => Ok(addr.to_string()),
            ["case", _, "errno", n] => Err(n.parse().unwrap_or_else(|_| panic!("{line}"))),
            ["done"] => continue,
            _ => panic!("unexpected line {line:?}\n{f}"),
        };
        map.insert(w[1].to_string(), outcome);
    }
    map
}

fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// What `case` must get under `rule` (REWRITE or DENY): Ok(the address it is bound
/// on) or Err(errno).
fn expected(kind: Kind, family: u8, rule: &[&str]) -> Result<IpAddr, i32> {
    let rewritten: IpAddr = match family {
        6 => Ipv6Addr::LOCALHOST.into(),
        _ => REWRITE_V4.into(),
    };
    let deny = rule == DENY;
    match kind {
        Args(errno) => Err(errno),
        Valid | Mapped | Address(_) if deny => Err(EPERM),
        Valid | Address(_) => Ok(rewritten),
        Mapped => Ok(REWRITE_V4.to_ipv6_mapped().into()),
        State(_) if deny => Err(EPERM),
        State(errno) => Err(errno),
    }
}

fn show(o: Option<&Outcome>) -> String {
    match o {
        None => "nothing".into(),
        Some(Ok(a)) => format!("ok {a}"),
        Some(Err(e)) => format!("errno {e} ({})", nix::errno::Errno::from_raw(*e)),
    }
}

/// Runs every case natively and checks the table against this kernel.
#[test]
fn the_table_is_what_the_kernel_does() {
    let f = run(command(hostile_bind(), &["cases"]));
    assert_eq!(f.code(), Some(TARGET_STATUS), "{f}");
    let got = outcomes(&f);
    let mut wrong = Vec::new();
    for &(name, _, kind) in CASES {
        let ok = match (kind, got.get(name)) {
            (Valid | Mapped, Some(Ok(_))) => true,
            (Args(e) | Address(e) | State(e), Some(Err(g))) => e == *g,
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{name}: table says {kind:?}, kernel gave {}",
                show(got.get(name))
            ));
        }
    }
    assert_eq!(
        got.len(),
        CASES.len(),
        "cases in the target and in the table differ\n{f}"
    );
    assert!(wrong.is_empty(), "\n{}\n{f}", wrong.join("\n"));
}

/// What every case gets without force-bind: Ok(address) or Err(errno).
fn native() -> BTreeMap<String, Result<IpAddr, i32>> {
    let f = run(command(hostile_bind(), &["cases"]));
    assert_eq!(f.code(), Some(TARGET_STATUS), "{f}");
    outcomes(&f)
        .into_iter()
        .map(|(name, o)| {
            let o = o.map(|addr| ip_of(&addr).unwrap_or_else(|| panic!("{addr}\n{f}")));
            (name, o)
        })
        .collect()
}

fn check_cases(engine: Engine, rule: &[&str]) {
    let native = (rule == DENY_LISTEN).then(native);
    let mut args = rule.to_vec();
    args.extend([hostile_bind(), "cases"]);
    let f = run(force_bind(engine, &args));
    assert_eq!(
        f.code(),
        Some(TARGET_STATUS),
        "force-bind must exit with the target's status\n{f}"
    );
    assert!(f.stdout.ends_with("done\n"), "{f}");
    let got = outcomes(&f);
    let mut wrong = Vec::new();
    for &(name, family, kind) in CASES {
        let want = match &native {
            Some(native) => native[name],
            // The bind4 hook runs before inet_bind's family check and cannot change
            // the family (user_family is read-only to the program): the AF_UNSPEC
            // wildcard it rewrites is then no wildcard, so the kernel refuses it.
            // Failed closed, where the supervisor engines bind it as AF_INET.
            None if engine == Engine::Bpf && name == "unspec_any_on_v4" && rule == REWRITE => {
                Err(libc::EAFNOSUPPORT)
            }
            None => expected(kind, family, rule),
        };
        let ok = match (&want, got.get(name)) {
            (Ok(ip), Some(Ok(addr))) => ip_of(addr) == Some(*ip),
            (Err(e), Some(Err(g))) => e == g,
            _ => false,
        };
        if !ok {
            let want = match want {
                Ok(ip) => format!("bound on {ip}"),
                Err(e) => show(Some(&Err(e))),
            };
            wrong.push(format!(
                "{name} ({kind:?}): want {want}, got {}",
                show(got.get(name))
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{engine:?} {}: {} of {} cases differ:\n{}\n\n{f}",
        rule.join(" "),
        wrong.len(),
        CASES.len(),
        wrong.join("\n")
    );
}

/// `normal binds N ok K at ADDR errors E` and `hostile rounds R unstable U`.
fn threads_report(f: &Finished) -> (u32, u32, String, u32, u32) {
    let find = |prefix: &str| -> Vec<String> {
        let line = f
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line\n{f}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    let n = find("normal binds ");
    let h = find("hostile rounds ");
    let num = |s: &str| s.parse::<u32>().unwrap_or_else(|_| panic!("{s}\n{f}"));
    (num(&n[2]), num(&n[4]), n[6].clone(), num(&n[8]), num(&h[4]))
}

const ROUNDS: &str = "60";

engine_tests! {
    /// A rule that rewrites every IPv4 and IPv6 bind: whatever the kernel refuses by
    /// its arguments is refused with the same errno, the rest lands on loopback.
    fn hostile_arguments_under_a_rewrite(engine: Engine) {
        check_cases(engine, REWRITE);
    }

    /// `-d -m :0=deny`: every request the kernel would accept gets EPERM; the ones it
    /// rejects by their arguments still get the kernel's own errno.
    fn hostile_arguments_under_deny_all(engine: Engine) {
        check_cases(engine, DENY);
    }

    /// `-d` alone lets the cases' port-0 binds through: each gets exactly what the
    /// kernel gives it without force-bind.
    fn hostile_port_zero_binds_pass_deny_all_as_asked(engine: Engine) {
        check_cases(engine, DENY_LISTEN);
    }

    /// One thread keeps making hostile binds while another binds normally: every
    /// normal bind is served (rewritten), every hostile case gets the same answer in
    /// every round, and force-bind exits with the target's status.
    fn hostile_thread_does_not_stop_a_normal_one(engine: Engine) {
        let f = run(force_bind(engine, &[
            "-b", "127.0.0.1:0", hostile_bind(), "threads", ROUNDS, "127.0.0.2",
        ]));
        assert_eq!(f.code(), Some(TARGET_STATUS), "{f}");
        let (asked, ok, at, errors, unstable) = threads_report(&f);
        assert_eq!((asked, ok, errors), (60, 60, 0), "{f}");
        assert_eq!(at, "127.0.0.1", "normal binds must all be rewritten\n{f}");
        assert_eq!(unstable, 0, "a hostile case changed its answer between rounds\n{f}");

        // The normal binds are of port 0: the MATCH must name it to deny them.
        let f = run(force_bind(engine, &[
            "-d", "-m", ":0=deny", hostile_bind(), "threads", ROUNDS, "127.0.0.2",
        ]));
        assert_eq!(f.code(), Some(TARGET_STATUS), "{f}");
        let (asked, ok, at, errors, unstable) = threads_report(&f);
        assert_eq!((asked, ok, errors, at.as_str()), (60, 0, 60, "none"), "{f}");
        assert_eq!(unstable, 0, "{f}");
    }
}
