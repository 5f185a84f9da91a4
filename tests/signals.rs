//! tests/signals.rs: signals sent to force-bind reach the program; stopping and
//! continuing the program leaves nothing stopped or zombie.

mod common;

use common::*;
use std::time::Duration;

/// Installs handlers for the forwarded signals; the handler reports the signal and
/// exits with 100 + its number, so the test sees the program got exactly that signal.
const CATCHER: &str = r#"
import os, signal, time
def caught(n, frame):
    print("got", n, flush=True)
    os._exit(100 + n)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
          signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, caught)
print("ready", flush=True)
time.sleep(30)
os._exit(3)
"#;

/// Echoes each stdin line back as "pong LINE" until stdin closes.
const ECHO: &str = r#"
import sys
print("ready", flush=True)
for line in sys.stdin:
    print("pong", line.strip(), flush=True)
"#;

const FORWARDED: [(&str, i32); 6] = [
    ("TERM", libc::SIGTERM),
    ("INT", libc::SIGINT),
    ("HUP", libc::SIGHUP),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
];

fn stopped(state: Option<char>) -> bool {
    matches!(state, Some('T' | 't'))
}

engine_tests! {
    fn signals_reach_the_program(engine: Engine) {
        // Start them all first, so the six python start-ups overlap.
        let procs: Vec<_> = FORWARDED
            .iter()
            .map(|_| Proc::spawn(force_bind(engine, &python_args(CATCHER, &[]))))
            .collect();
        for ((name, sig), p) in FORWARDED.iter().zip(procs) {
            assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "SIG{name}\n{}", p.context());
            p.signal(*sig);
            let f = p.finish(WAIT);
            assert_eq!(f.code(), Some(100 + sig), "SIG{name}\n{f}");
            assert!(f.stdout.contains(&format!("got {sig}")), "SIG{name}\n{f}");
        }
    }

    fn sigterm_kills_program_and_force_bind_dies_alike(engine: Engine) {
        let mut p = Proc::spawn(force_bind(engine, &["sleep", "30"]));
        let child = wait_for_child(p.pid(), "sleep", WAIT).expect("program started");
        p.signal(libc::SIGTERM);
        assert!(p.wait_timeout(WAIT).is_some(), "{}", p.context());
        let f = p.finish(WAIT);
        assert_eq!(f.signal(), Some(libc::SIGTERM), "{f}");
        assert!(wait_until(WAIT, || proc_state(child).is_none()), "program left behind");
    }

    fn stop_and_continue_the_program(engine: Engine) {
        let mut p = Proc::spawn_with_stdin(force_bind(engine, &python_args(ECHO, &[])));
        assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "{}", p.context());
        let fb = p.pid();
        let prog = wait_for_child(fb, "python3", WAIT).expect("program is force-bind's child");
        p.write_stdin("a\n");
        assert!(p.wait_line(|l| l == "pong a", WAIT).is_some(), "{}", p.context());

        send_signal(prog, libc::SIGSTOP);
        assert!(
            wait_until(WAIT, || stopped(proc_state(prog))),
            "program not stopped: {:?}",
            proc_state(prog)
        );
        p.write_stdin("b\n");
        let answer = p.wait_line(|l| l == "pong b", Duration::from_millis(300));
        assert_eq!(answer, None, "a stopped program answered");
        assert!(p.is_running(), "force-bind exited on the program's stop\n{}", p.context());

        send_signal(prog, libc::SIGCONT);
        assert!(p.wait_line(|l| l == "pong b", WAIT).is_some(), "not resumed\n{}", p.context());
        p.write_stdin("c\n");
        assert!(p.wait_line(|l| l == "pong c", WAIT).is_some(), "{}", p.context());
        for pid in [fb, prog] {
            assert!(
                wait_until(WAIT, || matches!(proc_state(pid), Some(s) if !"TtZ".contains(s))),
                "pid {pid} is in state {:?}", proc_state(pid)
            );
        }

        let f = p.finish(WAIT);
        f.assert_success();
        assert!(
            wait_until(WAIT, || proc_state(prog).is_none()),
            "program not reaped: {:?}",
            proc_state(prog)
        );
    }

    fn sigcont_to_force_bind_is_harmless(engine: Engine) {
        let mut p = Proc::spawn_with_stdin(force_bind(engine, &python_args(ECHO, &[])));
        assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "{}", p.context());
        let prog = wait_for_child(p.pid(), "python3", WAIT).expect("program is force-bind's child");
        p.signal(libc::SIGCONT);
        p.write_stdin("x\n");
        assert!(p.wait_line(|l| l == "pong x", WAIT).is_some(), "{}", p.context());
        assert!(!stopped(proc_state(prog)));
        let f = p.finish(WAIT);
        f.assert_success();
    }
}
