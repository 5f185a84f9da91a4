//! tests/cli.rs: the command line: help, version, bad arguments, option parsing that
//! stops at the program, and the accepted-but-ignored `-t`.

mod common;

use common::*;

/// A usage error: exit 2, exactly one line on stderr naming `bad`, no panic.
fn assert_usage_error(args: &[&str], bad: &str) {
    let f = run(force_bind_plain(args));
    assert_eq!(f.code(), Some(2), "{f}");
    assert_eq!(f.stderr_lines().len(), 1, "want one stderr line\n{f}");
    assert!(f.stderr.contains(bad), "stderr should name {bad:?}\n{f}");
    assert!(!f.stderr.contains("panicked"), "{f}");
    assert_eq!(f.stdout, "", "{f}");
}

#[test]
fn version() {
    let f = run(force_bind_plain(&["-V"]));
    f.assert_success();
    assert!(f.stdout.contains(env!("CARGO_PKG_VERSION")), "{f}");
}

#[test]
fn help_mentions_examples() {
    let f = run(force_bind_plain(&["-h"]));
    f.assert_success();
    assert!(f.stdout.to_lowercase().contains("example"), "{f}");
    for opt in ["-b", "-m", "-d", "-p", "--generate-man", "--completions"] {
        assert!(f.stdout.contains(opt), "help lacks {opt}\n{f}");
    }
}

#[test]
fn bad_match_rule() {
    assert_usage_error(&["-m", "garbage", "true"], "garbage");
}

#[test]
fn bad_address() {
    assert_usage_error(&["-b", "300.1.1.1:5", "true"], "300.1.1.1");
}

#[test]
fn more_bad_rules() {
    for (args, bad) in [
        (&["-m", ":99999=allow", "true"][..], ":99999"),
        (&["-m", ":80=nowhere", "true"], "nowhere"),
        (&["-m", ":9000-8000=allow", "true"], "9000-8000"),
        (&["-m", "127.0.0.1:80/33=allow", "true"], "/33"),
        (&["-b", "[::1", "true"], "[::1"),
        (&["-m", ":80=fd=x", "true"], "fd=x"),
        (&["-m", ":80=sd=-1", "true"], "sd=-1"),
    ] {
        assert_usage_error(args, bad);
    }
}

#[test]
fn rules_that_can_never_apply_are_bad_rules() {
    // An IPv6-only MATCH rewritten to IPv4, and an IPv4-only one rewritten to IPv6:
    // no bind could ever take the address, so the rule is refused up front.
    assert_usage_error(&["-m", "[::1]:80=127.0.0.1", "true"], "[::1]:80=127.0.0.1");
    assert_usage_error(
        &["-m", "0.0.0.0:80/0=[::1]:8080", "true"],
        "0.0.0.0:80/0=[::1]:8080",
    );
    // Their working counterparts are accepted.
    for rule in [
        "[::]:80/0=127.0.0.1",
        "0.0.0.0:80/0=127.0.0.1:8080",
        "[::1]:80=[::1]:8080",
    ] {
        run(force_bind_plain(&["-m", rule, "true"])).assert_success();
    }
}

#[test]
fn unknown_action_suggests_the_nearest() {
    assert_usage_error(
        &["-m", ":80=alow", "true"],
        "':80=alow': unknown action 'alow' (did you mean 'allow'?)",
    );
}

#[test]
fn unknown_option_and_missing_program() {
    let f = run(force_bind_plain(&["--no-such-option", "true"]));
    assert_eq!(f.code(), Some(2), "{f}");
    assert!(!f.stderr.contains("panicked"), "{f}");
    let f = run(force_bind_plain(&["-d"]));
    assert_eq!(f.code(), Some(2), "no program given\n{f}");
    let f = run(force_bind_plain(&["--engine", "bogus", "true"]));
    assert_eq!(f.code(), Some(2), "{f}");
}

engine_tests! {
    fn t_is_accepted_with_a_warning(engine: Engine) {
        let f = run(force_bind(engine, &["-t", "5", "true"]));
        f.assert_success();
        let err = f.stderr.to_lowercase();
        assert!(!err.trim().is_empty() && (err.contains("-t") || err.contains("ignor")), "{f}");
    }

    fn options_stop_at_the_program(engine: Engine) {
        // `-d` after the program is the program's own argument ($0 of sh -c).
        let f = run(force_bind(engine, &["sh", "-c", "echo $0 $1; exit 3", "-d", "-b"]));
        assert_eq!(f.code(), Some(3), "{f}");
        assert_eq!(f.stdout, "-d -b\n", "{f}");
        // And an option-looking argument of the probe reaches the probe (a real
        // port: -d lets a port-0 bind through).
        let p = free_port().to_string();
        let f = run(force_bind(engine, &["-d", bindprobe(), "--port", &p]));
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
    }

    fn double_dash_ends_options(engine: Engine) {
        let f = run(force_bind(engine, &["-b", "127.0.0.3", "--", "sh", "-c", "exit 4"]));
        assert_eq!(f.code(), Some(4), "{f}");
    }

    fn quiet_verbose_debug_accepted(engine: Engine) {
        let f = run(force_bind(engine, &["-q", "-b", "127.0.0.3", bindprobe()]));
        f.assert_success();
        assert_eq!(f.stderr, "", "-q prints nothing\n{f}");
        assert_eq!(f.bound().len(), 1, "{f}");
        for flag in ["-v", "-D"] {
            let f = run(force_bind(engine, &[flag, "-b", "127.0.0.3", bindprobe()]));
            f.assert_success();
            assert_eq!(f.bound().len(), 1, "{flag}\n{f}");
            assert!(!f.stderr.trim().is_empty(), "{flag} says something\n{f}");
        }
    }
}

/// `force-bind -V | head -1` and the like: a reader that has gone away is no error
/// (exit 0, nothing on stderr, no panic), for -V, --help and the agent's output.
#[test]
fn output_to_a_closed_pipe_is_no_error() {
    for args in [&["-V"][..], &["--help"], &["agent", "--profile"]] {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        drop(read_end);
        let mut cmd = force_bind_plain(args);
        cmd.stdout(std::process::Stdio::from(write_end));
        let out = cmd.output().expect("run force-bind");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
