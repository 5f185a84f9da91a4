//! tests/escapes.rs: ways around the policy found in code review, each now closed in
//! every engine: swapping the descriptor after the check (for bind and for the
//! implicit bind of listen), a program filter that forges the RET_TRACE data, flipping
//! IPV6_V6ONLY during the bind (also under the bpf engine, whose bind6 program reads
//! the flag and whose post_bind6 program closes the window), and capabilities from a
//! user namespace of the program's own. The attack programs are tests/c/escape_*.c.

mod common;

use common::*;

fn attack(name: &str) -> &'static str {
    c_build(
        &format!("escape_{name}"),
        &format!("escape_{name}"),
        &["-pthread"],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The `KEY N` pairs of the attack's summary line.
fn counts(f: &Finished, first: &str) -> Vec<(String, u64)> {
    let line = f
        .stdout
        .lines()
        .find(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("no summary\n{f}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    w.chunks(2)
        .map(|p| (p[0].to_string(), p[1].parse().unwrap()))
        .collect()
}

fn count(c: &[(String, u64)], key: &str) -> u64 {
    c.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} in {c:?}"))
}

engine_tests! {
    /// bind(T) while another thread dup2()s an AF_UNIX and an AF_INET socket onto T
    /// in turn: under a deny no inet socket may ever get bound. The attack binds
    /// port 0 (an escape shows as a port), which a deny covers only when its MATCH
    /// names port 0.
    fn swapping_the_descriptor_never_binds(engine: Engine) {
        let f = run(force_bind(engine, &["-d", "-m", ":0=deny", attack("swap"), "1"]));
        let c = counts(&f, "tries");
        assert!(count(&c, "tries") > 100, "the race did not run\n{f}");
        assert_eq!(count(&c, "escapes"), 0, "{f}");
    }

    /// The same race on listen(), whose implicit bind is judged (Linux 5.6+). Not for
    /// the old-kernel engine: listen's implicit bind is not judged before pidfd_getfd
    /// (README).
    fn swapping_the_descriptor_never_listens_unbound(engine: Engine) not for OldKernel {
        let f = run(force_bind(engine, &["-d", attack("swap"), "1", "1"]));
        assert_eq!(count(&counts(&f, "tries"), "escapes"), 0, "{f}");
    }

    /// A filter of the program's own that returns SECCOMP_RET_TRACE with data 0 for
    /// bind must not make the ptrace engine let the bind through (a bind of
    /// 127.0.0.1:0, so the deny names port 0).
    fn a_forged_trace_code_changes_nothing(engine: Engine) {
        let f = run(force_bind(engine, &["-d", "-m", ":0=deny", attack("forge")]));
        let bind = f.stdout.lines().find(|l| l.starts_with("bind:")).unwrap_or_else(|| panic!("{f}"));
        assert!(bind.starts_with("bind: -1 "), "the bind escaped -d\n{f}");
    }

    /// IPV6_V6ONLY flipped by another thread while [::] is bound under an IPv4 rule:
    /// never a dual-stack [::] (the hostile program is killed instead). Not for the
    /// old-kernel engine: before pidfd_getfd the setting cannot be pinned (README).
    /// Not for Bpf here: `flipping_v6only_under_bpf_never_binds_dual_stack_wildcard`
    /// runs it longer, with the descriptor limit the attack needs there.
    fn flipping_v6only_never_binds_dual_stack_wildcard(engine: Engine) not for OldKernel, Bpf {
        let f = run(force_bind(engine, &["-b", "127.0.0.1", attack("v6flip"), "1"]));
        if f.signal() == Some(libc::SIGKILL) {
            assert!(f.stderr.contains("IPV6_V6ONLY changed during the bind"), "{f}");
        } else {
            assert_eq!(count(&counts(&f, "tries"), "escapes"), 0, "{f}");
        }
    }

    /// A program that drops to nobody and unshares a user namespace has every
    /// capability there, and none for a privileged port of the host's network.
    fn capabilities_of_a_private_user_namespace_do_not_count(engine: Engine) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("needs root to drop to nobody");
        }
        let f = run(force_bind(engine, &["-m", ":81=allow", attack("userns"), "ns"]));
        assert!(f.stdout.contains("bind 127.0.0.1:81: -1 Permission denied"), "{f}");
    }
}

/// The v6flip race under the bpf engine, three times as long as the others': bind6
/// reads IPV6_V6ONLY under one lock_sock and __inet6_bind binds under another, and
/// post_bind6 (inside the second) refuses a dual-stack [::] that `-b 127.0.0.1`
/// would have rewritten. Three rounds of 3 s each (the attack stops itself); the
/// attack keeps every bound socket open, so the descriptor limit is raised for it.
#[test]
fn flipping_v6only_under_bpf_never_binds_dual_stack_wildcard() {
    if let Some(why) = Engine::Bpf.unavailable() {
        return skip(&why);
    }
    let (mut tries, mut bound) = (0, 0);
    for _round in 0..3 {
        let f = run(common::servers::rewrap(
            "sh",
            &[
                "-c",
                "ulimit -n 200000 2>/dev/null || ulimit -n 65536; exec \"$@\"",
                "sh",
            ],
            force_bind(Engine::Bpf, &["-b", "127.0.0.1", attack("v6flip"), "3"]),
        ));
        f.assert_success();
        let c = counts(&f, "tries");
        assert_eq!(count(&c, "escapes"), 0, "{f}");
        tries += count(&c, "tries");
        bound += count(&c, "bound");
    }
    // The race ran: many binds, most of them (v6only ones, and dual ones rewritten)
    // let through.
    assert!(tries > 1000 && bound > 1000, "tries {tries} bound {bound}");
    eprintln!("v6flip under bpf: {tries} tries, {bound} bound, no escape");
}
