//! tests/exit_status.rs: force-bind exits as its program did, and with 127/126 when the
//! program cannot be run at all.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

fn sh(engine: Engine, script: &str) -> Finished {
    run(force_bind(engine, &["sh", "-c", script]))
}

engine_tests! {
    fn exit_code_is_passed_on(engine: Engine) {
        for (script, code) in [("exit 0", 0), ("exit 7", 7), ("exit 1", 1), ("exit 200", 200)] {
            let f = sh(engine, script);
            assert_eq!(f.code(), Some(code), "{f}");
        }
        assert_eq!(run(force_bind(engine, &["true"])).code(), Some(0));
        assert_eq!(run(force_bind(engine, &["false"])).code(), Some(1));
    }

    fn death_by_signal_is_passed_on(engine: Engine) {
        let deaths = [("TERM", libc::SIGTERM), ("KILL", libc::SIGKILL), ("USR1", libc::SIGUSR1)];
        for (name, sig) in deaths {
            let f = sh(engine, &format!("kill -{name} $$"));
            assert_eq!(f.signal(), Some(sig), "kill -{name}\n{f}");
            assert!(!f.status.core_dumped(), "{f}");
        }
    }

    fn stdio_is_the_programs(engine: Engine) {
        let script = "read x; echo got $x; echo err >&2";
        let mut p = Proc::spawn_with_stdin(force_bind(engine, &["sh", "-c", script]));
        p.write_stdin("hello\n");
        let f = p.finish(WAIT);
        f.assert_success();
        assert_eq!(f.stdout, "got hello\n", "{f}");
        assert!(f.stderr.contains("err"), "{f}");
    }

    fn missing_program_is_127(engine: Engine) {
        for program in ["force-bind-test-no-such-program", "/nonexistent/force-bind-test"] {
            let f = run(force_bind(engine, &[program]));
            assert_eq!(f.code(), Some(127), "{f}");
            assert!(!f.stderr.contains("panicked"), "{f}");
        }
    }

    fn non_executable_file_is_126(engine: Engine) {
        let path = tmp_path("not-executable");
        fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let f = run(force_bind(engine, &[path.to_str().unwrap()]));
        let _ = fs::remove_file(&path);
        assert_eq!(f.code(), Some(126), "{f}");
        assert!(!f.stderr.contains("panicked"), "{f}");
    }
}
