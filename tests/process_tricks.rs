//! tests/process_tricks.rs: processes made in the ways a program could use to get out
//! of force-bind's hands (clone3, CLONE_VM, CLONE_UNTRACED, vfork, a setuid exec, a
//! double fork, a tracer or seccomp listener of its own) must still have every bind
//! carried out by the policy; a target killed mid-bind takes force-bind down with the
//! same death and leaves nothing behind.
//!
//! The target is `tests/c/process_tricks.c`. It asks for 127.0.0.1 and the rule sends
//! every IPv4 bind to 127.0.0.3, so a bind that escaped shows as 127.0.0.1 in what
//! getsockname() says; with `-d`, any `bound` line is an escape.

mod common;

use common::*;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

const ASKED: &str = "127.0.0.1";
const REWRITTEN: &str = "127.0.0.3";

fn process_tricks() -> &'static str {
    c_program("process_tricks", &["-pthread"])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `force-bind RULE... process_tricks MODE 127.0.0.1 PORT [ARG]`, PORT a free port
/// (a port-0 bind is no service bind: `-d` would let it through).
fn trick(engine: Engine, rule: &[&str], mode: &str, extra: &[&str]) -> Finished {
    let port = free_port().to_string();
    let mut args = rule.to_vec();
    args.extend([process_tricks(), mode, ASKED, &port]);
    args.extend(extra);
    run(force_bind(engine, &args))
}

/// Did the target find no clone3 (`skip clone3: errno 38`)? Under the ptrace engine
/// (and the old-kernel one, which runs it) that is the engine's answer: its filter
/// refuses clone3 with ENOSYS, whose flags are out of a filter's sight (README), so
/// the mode has nothing more to show. Under the notify engine it is a kernel before
/// 5.3: a missing prerequisite, a skip.
fn clone3_missing(engine: Engine, f: &Finished) -> bool {
    let Some(line) = f.stdout.lines().find(|l| l.starts_with("skip ")) else {
        return false;
    };
    if engine == Engine::Notify {
        skip(&format!("{line} (clone3 is Linux 5.3): {}", f.desc));
    }
    true
}

/// The one address bound, whatever other lines the target printed.
fn one_bound(f: &Finished) -> IpAddr {
    match f.bound().as_slice() {
        [a] => a.ip(),
        _ => panic!("expected exactly one `bound` line:\n{f}"),
    }
}

/// Under `-b 127.0.0.3` the one bind must land on 127.0.0.3.
fn assert_rewritten(engine: Engine, mode: &str) {
    let f = trick(engine, &["-b", REWRITTEN], mode, &[]);
    f.assert_success();
    if clone3_missing(engine, &f) {
        return;
    }
    assert_eq!(one_bound(&f), ip(REWRITTEN), "{mode}: {engine:?}\n{f}");
}

/// The bind never lands where the program asked: under `-b` it is rewritten or fails
/// (fail closed), under `-d` it fails. Returns the `-b` run.
fn assert_no_escape(engine: Engine, mode: &str) -> Option<Finished> {
    let f = trick(engine, &["-b", REWRITTEN], mode, &[]);
    f.assert_success();
    if clone3_missing(engine, &f) {
        return None;
    }
    let probe = f.probe();
    let binds: Vec<&Probe> = probe
        .iter()
        .filter(|p| matches!(p, Probe::Bound(_) | Probe::Error(_)))
        .collect();
    assert_eq!(binds.len(), 1, "{mode}: one bind expected\n{f}");
    if let Probe::Bound(a) = binds[0] {
        assert_eq!(
            a.ip(),
            ip(REWRITTEN),
            "{mode}: the bind escaped the rule\n{f}"
        );
    }
    let d = trick(engine, &["-d"], mode, &[]);
    d.assert_success();
    assert!(d.bound().is_empty(), "{mode}: a bind escaped -d\n{d}");
    assert_eq!(
        d.probe()
            .iter()
            .filter(|p| matches!(p, Probe::Error(_)))
            .count(),
        1,
        "{mode}\n{d}"
    );
    Some(f)
}

/// Waits (bounded) until no live process of process group `pgid` is left.
fn group_gone(pgid: i32) -> bool {
    wait_until(WAIT, || {
        !proc_table()
            .iter()
            .any(|e| e.pgrp == pgid && e.state != 'Z' && e.pid != std::process::id() as i32)
    })
}

engine_tests! {
    /// clone3 with a fork's flags, called directly (not through glibc). Not for the
    /// ptrace engines: they refuse clone3 (ENOSYS, README), so there is no such child.
    fn clone3_fork_child_is_rewritten(engine: Engine) not for Ptrace, OldKernel {
        assert_rewritten(engine, "clone3-fork");
    }

    /// clone3(CLONE_VM|CLONE_VFORK) with a stack of its own: a child that shares the
    /// parent's memory and is neither a thread nor a fork. Not for the ptrace engines:
    /// they refuse clone3 (ENOSYS, README), so there is no such child.
    fn clone3_vm_child_is_rewritten(engine: Engine) not for Ptrace, OldKernel {
        assert_rewritten(engine, "clone3-vm");
    }

    /// glibc's pthread_create, which is clone3(CLONE_THREAD|...) on glibc >= 2.34.
    fn clone3_thread_is_rewritten(engine: Engine) {
        assert_rewritten(engine, "clone3-thread");
    }

    /// A vfork child binds before _exit; another vfork child execs and binds.
    fn vfork_children_are_rewritten(engine: Engine) {
        assert_rewritten(engine, "vfork");
        assert_rewritten(engine, "vfork-exec");
    }

    /// CLONE_UNTRACED (clone3 and legacy clone) stops a tracer from attaching the
    /// child automatically. The seccomp filter is inherited all the same: under the
    /// ptrace engine the child's binds find no tracer and fail (ENOSYS, fail closed);
    /// under the notify engine they are handled like any other.
    fn untraced_children_do_not_escape(engine: Engine) {
        for mode in ["clone3-untraced", "clone-untraced"] {
            if let (Some(f), Engine::Notify) = (assert_no_escape(engine, mode), engine) {
                assert_eq!(one_bound(&f), ip(REWRITTEN), "{f}");
            }
        }
    }

    /// The program traces its own CLONE_UNTRACED child with PTRACE_O_TRACESECCOMP
    /// and lets each seccomp stop continue unchanged: SECCOMP_RET_TRACE reports to
    /// whichever tracer is attached, so force-bind must not let a child escape its
    /// own tracing.
    fn child_traced_by_the_program_does_not_escape(engine: Engine) {
        assert_no_escape(engine, "untraced-ptrace");
    }

    /// A thread installs a seccomp filter of its own that sends bind to its own
    /// listener, which answers CONTINUE: the kernel takes the action of the newest
    /// filter among equals and USER_NOTIF wins over TRACE, so force-bind's filter
    /// must not be outranked. (The notify engine's listener makes the kernel refuse
    /// a second one with EBUSY.)
    fn seccomp_listener_of_the_program_does_not_escape(engine: Engine) {
        assert_no_escape(engine, "own-listener");
    }

    /// A setuid-root copy of the target run as nobody: natively it gains euid 0;
    /// under force-bind no_new_privs keeps it nobody and its bind is still rewritten.
    fn setuid_exec_gains_nothing_and_stays_controlled(engine: Engine) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("needs root to make a setuid-root copy");
        }
        let copy = tmp_path("setuid-tricks");
        std::fs::copy(process_tricks(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert_eq!(std::fs::metadata(&copy).unwrap().uid(), 0);
        let copy_s = copy.to_str().unwrap();
        let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
        let whoami = [copy_s, "whoami", ASKED, "0"];

        let native = run(command(nobody[0], &[&nobody[1..], &whoami[..]].concat()));
        if !native.stdout.contains("uid 65534 0\n") {
            let _ = std::fs::remove_file(&copy);
            return skip(&format!("the setuid bit does not work here (nosuid?)\n{native}"));
        }
        let mut args = vec!["-b", REWRITTEN];
        args.extend(nobody);
        args.extend(whoami);
        let f = run(force_bind(engine, &args));
        let _ = std::fs::remove_file(&copy);
        f.assert_success();
        assert!(f.stdout.contains("uid 65534 65534\n"), "gained privileges\n{f}");
        assert_eq!(one_bound(&f), ip(REWRITTEN), "{f}");
    }

    /// The program's child forks a grandchild and exits; the program exits too. The
    /// grandchild, in a session of its own, binds after its parent is gone: it is
    /// still rewritten, and force-bind waits for it before leaving.
    fn double_forked_grandchild_is_rewritten_and_waited_for(engine: Engine) {
        let delay_ms = 400;
        let start = Instant::now();
        let p = Proc::spawn(force_bind(engine, &[
            "-b", REWRITTEN, process_tricks(), "double-fork", ASKED, "0", "400",
        ]));
        let pid = p.pid();
        let f = p.finish(Duration::from_secs(20));
        let took = start.elapsed();
        f.assert_success();
        assert!(f.stdout.contains("parent exits"), "{f}");
        assert!(f.stdout.contains("orphan ppid="), "{f}");
        assert_eq!(one_bound(&f), ip(REWRITTEN), "{f}");
        assert!(
            took >= Duration::from_millis(delay_ms),
            "force-bind left after {took:?}, before the grandchild's bind\n{f}"
        );
        assert!(group_gone(pid), "something of force-bind's is still running");
    }

    /// The program is killed (SIGKILL) while two threads bind in a loop: force-bind
    /// dies of the same signal, and nothing it started is left running.
    fn target_killed_mid_bind(engine: Engine) {
        let p = Proc::spawn(force_bind(engine, &[
            "-b", REWRITTEN, process_tricks(), "bind-loop", ASKED, "0",
        ]));
        assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "{}", p.context());
        let prog = wait_for_child(p.pid(), "process_tricks", WAIT).expect("the program");
        // Let both threads get well into their loops, so the kill finds a bind in flight.
        std::thread::sleep(Duration::from_millis(100));
        send_signal(prog, libc::SIGKILL);
        let pid = p.pid();
        let f = p.finish(WAIT);
        assert_eq!(f.signal(), Some(libc::SIGKILL), "force-bind must die of SIGKILL\n{f}");
        assert!(group_gone(pid), "something of force-bind's is still running\n{f}");
    }

    /// force-bind is stopped, the program's bind traps and waits for it, and then
    /// force-bind is killed: the pending bind must not go through unchecked (notify:
    /// the listener closes and the bind fails; ptrace: PTRACE_O_EXITKILL takes the
    /// program down). tests/engines.rs covers a bind made after the supervisor died.
    /// Under bpf the bind is rewritten by the kernel, force-bind stopped or not.
    fn pending_bind_fails_when_force_bind_dies(engine: Engine) {
        let flag = tmp_path("pending-bind");
        let flag_s = flag.to_str().unwrap();
        let p = Proc::spawn(force_bind(engine, &[
            "-b", REWRITTEN, process_tricks(), "wait-then-bind", ASKED, "0", flag_s,
        ]));
        assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "{}", p.context());
        let prog = wait_for_child(p.pid(), "process_tricks", WAIT).expect("the program");
        p.signal(libc::SIGSTOP);
        std::fs::write(&flag, "").unwrap();
        // The program is now in bind(), waiting for a supervisor that cannot answer.
        if engine == Engine::Bpf {
            // The kernel decides in the bind itself: nothing waits for force-bind,
            // and the programs stay attached after it is gone.
            let bound = p.wait_line(|l| l.starts_with("bound"), WAIT);
            assert!(bound.as_deref().is_some_and(|l| l.starts_with(&format!("bound 4 {REWRITTEN}:"))),
                "{bound:?}\n{}", p.context());
            p.signal(libc::SIGKILL);
            let _ = std::fs::remove_file(&flag);
            return;
        }
        let waiting = p.wait_line(|l| l.starts_with("bound") || l.starts_with("error"),
            Duration::from_millis(300));
        assert_eq!(waiting, None, "the bind was answered by a stopped force-bind\n{}", p.context());
        p.signal(libc::SIGKILL);
        let outcome = p.wait_line(|l| l.starts_with("bound") || l.starts_with("error"),
            Duration::from_secs(3));
        let _ = std::fs::remove_file(&flag);
        match outcome.as_deref() {
            // Only the notify engine leaves the program running.
            Some(l) => assert!(l.starts_with("error") && engine == Engine::Notify,
                "{l}\n{}", p.context()),
            None => assert!(wait_until(WAIT, || !matches!(proc_state(prog), Some(s) if s != 'Z')),
                "the program is still running without its supervisor\n{}", p.context()),
        }
    }
}
