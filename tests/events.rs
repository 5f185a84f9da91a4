//! tests/events.rs: what force-bind says about each trapped call: the exact -v line
//! and --json object for every kind of event (rewritten, allowed, denied, replaced,
//! watched, skipped, refused), who holds an address in use (a real held port), the
//! hint for an address that is not local, and where events go (-q, --log).

mod common;

use common::*;
use std::net::TcpListener;

/// The program's PID, as bindprobe reports it (`... pid=N`).
fn probe_pid(f: &Finished) -> i32 {
    f.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the probe's output\n{f}"))
}

/// The event lines force-bind wrote (stderr), without the engine choice line.
fn event_lines(f: &Finished) -> Vec<String> {
    f.stderr
        .lines()
        .filter(|l| !l.contains("engine:") && !l.contains("warning"))
        .map(str::to_string)
        .collect()
}

fn probe<'a>(addr: &'a str, port: &'a str) -> Vec<&'a str> {
    vec![bindprobe(), "--addr", addr, "--port", port]
}

fn with<'a>(options: &[&'a str], program: Vec<&'a str>) -> Vec<&'a str> {
    options.iter().copied().chain(program).collect()
}

engine_tests! {
    fn rewritten_bind_line_and_json(engine: Engine) {
        let q = free_port().to_string();
        let rule = format!("127.0.0.2:{q}");
        let f = run(force_bind(engine, &with(&["-v", "-b", &rule], probe("0.0.0.0", "0"))));
        f.assert_success();
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![format!(
                "force-bind: pid {pid} (bindprobe): bind fd 4 0.0.0.0:0: rewritten to 127.0.0.2:{q} by '-b {rule}': ok, bound 127.0.0.2:{q}"
            )],
            "{f}"
        );
        let f = run(force_bind(engine, &with(&["--json", "-b", &rule], probe("0.0.0.0", "0"))));
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![format!(
                r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"family":"ipv4","address":"0.0.0.0:0","rule":"-b {rule}","action":"rewritten","to":"127.0.0.2:{q}","result":"ok","bound":"127.0.0.2:{q}"}}"#
            )],
            "{f}"
        );
    }

    fn denied_bind_line_and_json(engine: Engine) {
        let f = run(force_bind(engine, &with(&["-v", "-d"], probe("127.0.0.1", "0"))));
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![format!("force-bind: pid {pid} (bindprobe): bind fd 4 127.0.0.1:0: denied by '-d': failed: EPERM (Operation not permitted)")],
            "{f}"
        );
        let f = run(force_bind(engine, &with(&["--json", "-d"], probe("127.0.0.1", "0"))));
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![format!(
                r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"family":"ipv4","address":"127.0.0.1:0","rule":"-d","action":"denied","result":"error","errno":"EPERM","error":"Operation not permitted"}}"#
            )],
            "{f}"
        );
    }

    /// With no rule at all force-bind only watches: every bind and listen is shown
    /// without -v, and nothing is changed.
    fn no_rule_only_watches(engine: Engine) {
        let q = free_port().to_string();
        let f = run(force_bind(engine, &with(&[], {
            let mut p = probe("127.0.0.1", &q);
            p.push("--listen");
            p
        })));
        f.assert_success();
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![
                format!("force-bind: pid {pid} (bindprobe): bind fd 4 127.0.0.1:{q}: allowed (no rule matched): ok, bound 127.0.0.1:{q}"),
                format!("force-bind: pid {pid} (bindprobe): listen fd 4: allowed (no rule matched): ok"),
            ],
            "{f}"
        );
        assert_eq!(f.bound(), vec![v4("127.0.0.1", q.parse().unwrap())]);
    }

    /// EADDRINUSE names the process that holds the address.
    fn address_in_use_names_its_holder(engine: Engine) {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port().to_string();
        let me = std::process::id();
        let me_comm = std::fs::read_to_string("/proc/self/comm").unwrap().trim().to_string();
        let allow = format!(":{port}=allow");
        let f = run(force_bind(engine, &with(&["-v", "-m", &allow], probe("127.0.0.1", &port))));
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![format!(
                "force-bind: pid {pid} (bindprobe): bind fd 4 127.0.0.1:{port}: allowed by '-m {allow}': failed: EADDRINUSE (Address already in use), held by pid {me} ({me_comm})"
            )],
            "{f}"
        );
        let f = run(force_bind(engine, &with(&["--json", "-m", &allow], probe("127.0.0.1", &port))));
        let line = event_lines(&f).join("\n");
        assert!(line.ends_with(&format!(r#""errno":"EADDRINUSE","error":"Address already in use","holder":{{"pid":{me},"comm":"{me_comm}"}}}}"#)), "{f}");
        drop(held);
    }

    /// EADDRNOTAVAIL explains that the address is not local (192.0.2.1 is
    /// TEST-NET-1: never assigned, and the failed bind sends nothing anywhere).
    fn address_not_available_gets_a_hint(engine: Engine) {
        let f = run(force_bind(engine, &with(&["-v", "-m", "192.0.2.1=allow"], probe("192.0.2.1", "0"))));
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            vec![format!(
                "force-bind: pid {pid} (bindprobe): bind fd 4 192.0.2.1:0: allowed by '-m 192.0.2.1=allow': failed: EADDRNOTAVAIL (Cannot assign requested address); hint: 192.0.2.1 is not an address of any local interface (see `ip address`); IP_FREEBIND would allow it"
            )],
            "{f}"
        );
    }

    /// -q says nothing but fatal errors; --log sends events to a file instead.
    fn quiet_and_log_file(engine: Engine) {
        let f = run(force_bind(engine, &with(&["-q", "-d"], probe("127.0.0.1", "0"))));
        assert_eq!(f.stderr, "", "{f}");
        let log = tmp_path("events.log");
        let log_s = log.to_str().unwrap();
        let f = run(force_bind(engine, &with(&["--json", "--log", log_s, "-d"], probe("127.0.0.1", "0"))));
        assert!(event_lines(&f).is_empty(), "{f}");
        let written = std::fs::read_to_string(&log).unwrap();
        assert_eq!(written.lines().count(), 1, "{written}");
        assert!(written.contains(r#""action":"denied""#), "{written}");
        let _ = std::fs::remove_file(&log);
    }
}
