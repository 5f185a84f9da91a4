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
    event_lines_of(&f.stderr)
}

fn event_lines_of(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.contains("engine:") && !l.contains("warning"))
        .map(str::to_string)
        .collect()
}

/// What `engine` reports of the events the other engines report as `lines`. The bpf
/// engine's bind events come from the kernel's hooks, which see the socket but not
/// the descriptor (no ` fd N`, no `"fd"`), and its listen events from the listen
/// filter, there only when the policy judges listen() (README, bpf engine).
fn reported(engine: Engine, lines: Vec<String>, listen_judged: bool) -> Vec<String> {
    if engine != Engine::Bpf {
        return lines;
    }
    lines
        .into_iter()
        .filter(|l| {
            listen_judged || !(l.contains("): listen ") || l.starts_with(r#"{"event":"listen""#))
        })
        .map(|l| {
            if l.starts_with(r#"{"event":"bind""#) {
                l.replacen(r#""fd":4,"#, "", 1)
            } else {
                l.replacen("): bind tcp fd 4 ", "): bind tcp ", 1)
            }
        })
        .collect()
}

/// The bpf engine's line for a bind that failed: no hook runs when bind(2) fails, so
/// the kernel tells it no errno (README, bpf engine).
fn failed_errno_unknown(pid: i32, addr: &str, rule: &str) -> String {
    format!(
        "force-bind: pid {pid} (bindprobe): bind tcp {addr}: allowed by '{rule}' (no post-bind hook ran; the kernel tells the bpf engine no errno): failed, errno unknown"
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time with microseconds
/// (`2026-12-01T09:30:00.123456Z`), None when `t` is not exactly that form.
fn rfc3339_utc_micros(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = t.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() != 27
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b[i] != c)
    {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hh, mm, ss) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    digits(20..26)?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Checks that `time` is an RFC 3339 UTC time with microseconds, and now (so UTC,
/// not local time).
fn assert_now_utc(time: &str, context: &str) {
    let Some(secs) = rfc3339_utc_micros(time) else {
        panic!("{time:?} is not an RFC 3339 UTC time with microseconds\n{context}");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - secs).abs() < 120,
        "{time} is not now (UTC)\n{context}"
    );
}

/// A JSON event without its leading `"time":"…Z",` member (checked to be now, in
/// UTC): `{"event":…}`.
fn untimed_json(line: &str, context: &str) -> String {
    let rest = line
        .strip_prefix(r#"{"time":""#)
        .unwrap_or_else(|| panic!("JSON event does not start with \"time\": {line}\n{context}"));
    let (time, rest) = rest
        .split_once(r#"","#)
        .unwrap_or_else(|| panic!("no time in {line}\n{context}"));
    assert_now_utc(time, context);
    format!("{{{rest}")
}

/// A `--log` text line without its leading time (checked to be now, in UTC).
fn untimed_text(line: &str, context: &str) -> String {
    let (time, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("no time in {line:?}\n{context}"));
    assert_now_utc(time, context);
    rest.to_string()
}

/// The JSON event lines of a run, each without its time.
fn json_events(f: &Finished) -> Vec<String> {
    let context = f.to_string();
    event_lines(f)
        .iter()
        .map(|l| untimed_json(l, &context))
        .collect()
}

fn probe<'a>(addr: &'a str, port: &'a str) -> Vec<&'a str> {
    vec![bindprobe(), "--addr", addr, "--port", port]
}

fn with<'a>(options: &[&'a str], program: Vec<&'a str>) -> Vec<&'a str> {
    options.iter().copied().chain(program).collect()
}

#[test]
fn time_pattern_accepts_only_rfc3339_utc_with_microseconds() {
    assert_eq!(rfc3339_utc_micros("1970-01-01T00:00:00.000000Z"), Some(0));
    assert_eq!(
        rfc3339_utc_micros("2026-12-01T09:30:00.123456Z"),
        Some(1_796_117_400)
    );
    assert_eq!(
        rfc3339_utc_micros("2000-02-29T23:59:59.999999Z"),
        Some(951_868_799)
    );
    for bad in [
        "2026-12-01T09:30:00Z",
        "2026-12-01T09:30:00.123Z",
        "2026-12-01 09:30:00.123456Z",
        "2026-12-01T09:30:00.123456+00:00",
        "2026-13-01T09:30:00.123456Z",
        "2026-12-01T09:30:00.12345xZ",
    ] {
        assert_eq!(rfc3339_utc_micros(bad), None, "{bad}");
    }
}

engine_tests! {
    fn rewritten_bind_line_and_json(engine: Engine) {
        let (p, q) = (free_port().to_string(), free_port().to_string());
        let rule = format!("127.0.0.2:{q}");
        let f = run(force_bind(engine, &with(&["-v", "-b", &rule], probe("0.0.0.0", &p))));
        f.assert_success();
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            reported(engine, vec![format!(
                "force-bind: pid {pid} (bindprobe): bind tcp fd 4 0.0.0.0:{p}: rewritten to 127.0.0.2:{q} by '-b {rule}': ok, bound 127.0.0.2:{q}"
            )], true),
            "{f}"
        );
        let f = run(force_bind(engine, &with(&["--json", "-b", &rule], probe("0.0.0.0", &p))));
        let pid = probe_pid(&f);
        assert_eq!(
            json_events(&f),
            reported(engine, vec![format!(
                r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"proto":"tcp","family":"ipv4","address":"0.0.0.0:{p}","rule":"-b {rule}","action":"rewritten","to":"127.0.0.2:{q}","result":"ok","bound":"127.0.0.2:{q}"}}"#
            )], true),
            "{f}"
        );
    }

    fn denied_bind_line_and_json(engine: Engine) {
        let p = free_port().to_string();
        let f = run(force_bind(engine, &with(&["-v", "-d"], probe("127.0.0.1", &p))));
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            reported(engine, vec![format!("force-bind: pid {pid} (bindprobe): bind tcp fd 4 127.0.0.1:{p}: denied by '-d': failed: EPERM (Operation not permitted)")], true),
            "{f}"
        );
        let f = run(force_bind(engine, &with(&["--json", "-d"], probe("127.0.0.1", &p))));
        let pid = probe_pid(&f);
        assert_eq!(
            json_events(&f),
            reported(engine, vec![format!(
                r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"proto":"tcp","family":"ipv4","address":"127.0.0.1:{p}","rule":"-d","action":"denied","result":"error","errno":"EPERM","error":"Operation not permitted"}}"#
            )], true),
            "{f}"
        );
    }

    /// A port-0 bind under -d goes through; its listen() is judged on the port the
    /// kernel gave it, and denied.
    fn port_zero_under_deny_is_judged_at_listen(engine: Engine) {
        let args = with(&["-v", "-d"], {
            let mut p = probe("127.0.0.1", "0");
            p.push("--listen");
            p
        });
        let f = run(force_bind(engine, &args));
        let pid = probe_pid(&f);
        let probe = f.probe();
        let [Probe::Bound(got), Probe::Error(libc::EPERM)] = probe.as_slice() else {
            panic!("want a bound port-0 socket whose listen fails with EPERM\n{f}");
        };
        assert_ne!(got.port(), 0, "{f}");
        // Before 5.6 (no copy of the socket) the port the kernel gave cannot be read:
        // the listen is judged as the address the bind asked for, on any port.
        let (bound, listened) = match engine {
            Engine::OldKernel => (String::new(), "127.0.0.1:0".to_string()),
            _ => (format!(", bound {got}"), got.to_string()),
        };
        assert_eq!(
            event_lines(&f),
            reported(engine, vec![
                format!("force-bind: pid {pid} (bindprobe): bind tcp fd 4 127.0.0.1:0: allowed by '-d' (port 0: its listen() is judged on the port the kernel gives it): ok{bound}"),
                format!("force-bind: pid {pid} (bindprobe): listen tcp fd 4 {listened}: denied by '-d': failed: EPERM (Operation not permitted)"),
            ], true),
            "{f}"
        );
    }

    /// With no rule at all force-bind only watches: every bind and listen is shown
    /// without -v, and nothing is changed (under bpf the binds: with no rule, listen()
    /// is not judged, so no filter traps it).
    fn no_rule_only_watches(engine: Engine) {
        let q = free_port().to_string();
        let program = || {
            let mut p = probe("127.0.0.1", &q);
            p.push("--listen");
            p
        };
        let f = run(force_bind(engine, &program()));
        f.assert_success();
        let pid = probe_pid(&f);
        assert_eq!(
            event_lines(&f),
            reported(engine, vec![
                format!("force-bind: pid {pid} (bindprobe): bind tcp fd 4 127.0.0.1:{q}: allowed (no rule matched): ok, bound 127.0.0.1:{q}"),
                format!("force-bind: pid {pid} (bindprobe): listen tcp fd 4: ok, listening on 127.0.0.1:{q}"),
            ], false),
            "{f}"
        );
        assert_eq!(f.bound(), vec![v4("127.0.0.1", q.parse().unwrap())]);
        let f = run(force_bind(engine, &with(&["--json"], program())));
        f.assert_success();
        let pid = probe_pid(&f);
        assert_eq!(
            json_events(&f),
            reported(engine, vec![
                format!(r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"proto":"tcp","family":"ipv4","address":"127.0.0.1:{q}","rule":null,"action":"allowed","result":"ok","bound":"127.0.0.1:{q}"}}"#),
                format!(r#"{{"event":"listen","pid":{pid},"comm":"bindprobe","fd":4,"proto":"tcp","rule":null,"action":"allowed","result":"ok","bound":"127.0.0.1:{q}"}}"#),
            ], false),
            "{f}"
        );
    }

    /// EADDRINUSE names the process that holds the address (under bpf the kernel
    /// tells no errno: the failure is said as such).
    fn address_in_use_names_its_holder(engine: Engine) {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port().to_string();
        let me = std::process::id();
        let me_comm = std::fs::read_to_string("/proc/self/comm").unwrap().trim().to_string();
        let allow = format!(":{port}=allow");
        let f = run(force_bind(engine, &with(&["-v", "-m", &allow], probe("127.0.0.1", &port))));
        let pid = probe_pid(&f);
        if engine == Engine::Bpf {
            let rule = format!("-m {allow}");
            assert_eq!(event_lines(&f), vec![failed_errno_unknown(pid, &format!("127.0.0.1:{port}"), &rule)], "{f}");
            let f = run(force_bind(engine, &with(&["--json", "-m", &allow], probe("127.0.0.1", &port))));
            let json = json_events(&f);
            assert!(json.len() == 1 && json[0].contains(r#""result":"error","errno":"unknown""#), "{f}");
            return;
        }
        assert_eq!(
            event_lines(&f),
            vec![format!(
                "force-bind: pid {pid} (bindprobe): bind tcp fd 4 127.0.0.1:{port}: allowed by '-m {allow}': failed: EADDRINUSE (Address already in use), held by pid {me} ({me_comm})"
            )],
            "{f}"
        );
        let f = run(force_bind(engine, &with(&["--json", "-m", &allow], probe("127.0.0.1", &port))));
        let pid = probe_pid(&f);
        assert_eq!(
            json_events(&f),
            vec![format!(
                r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"proto":"tcp","family":"ipv4","address":"127.0.0.1:{port}","rule":"-m {allow}","action":"allowed","result":"error","errno":"EADDRINUSE","error":"Address already in use","holder":{{"pid":{me},"comm":"{me_comm}"}}}}"#
            )],
            "{f}"
        );
        drop(held);
    }

    /// EADDRNOTAVAIL explains that the address is not local (192.0.2.1 is
    /// TEST-NET-1: never assigned, and the failed bind sends nothing anywhere).
    /// Under bpf the kernel tells no errno, so there is no hint.
    fn address_not_available_gets_a_hint(engine: Engine) {
        let f = run(force_bind(engine, &with(&["-v", "-m", "192.0.2.1=allow"], probe("192.0.2.1", "0"))));
        let pid = probe_pid(&f);
        if engine == Engine::Bpf {
            let want = failed_errno_unknown(pid, "192.0.2.1:0", "-m 192.0.2.1=allow");
            return assert_eq!(event_lines(&f), vec![want], "{f}");
        }
        assert_eq!(
            event_lines(&f),
            vec![format!(
                "force-bind: pid {pid} (bindprobe): bind tcp fd 4 192.0.2.1:0: allowed by '-m 192.0.2.1=allow': failed: EADDRNOTAVAIL (Cannot assign requested address); hint: 192.0.2.1 is not an address of any local interface (see `ip address`); IP_FREEBIND would allow it"
            )],
            "{f}"
        );
    }

    /// -q says nothing but fatal errors; --log sends events to a file instead, each
    /// line (text or JSON) stamped with the time.
    fn quiet_and_log_file(engine: Engine) {
        let p = free_port().to_string();
        let f = run(force_bind(engine, &with(&["-q", "-d"], probe("127.0.0.1", &p))));
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        assert_eq!(f.stderr, "", "{f}");

        let log = tmp_path("events.log");
        let log_s = log.to_str().unwrap();
        let f = run(force_bind(engine, &with(&["--json", "--log", log_s, "-d"], probe("127.0.0.1", &p))));
        assert!(event_lines(&f).is_empty(), "{f}");
        let pid = probe_pid(&f);
        let written = std::fs::read_to_string(&log).unwrap();
        let context = format!("{f}\n--- {log_s} ---\n{written}");
        let lines: Vec<String> = written.lines().map(|l| untimed_json(l, &context)).collect();
        assert_eq!(
            lines,
            reported(engine, vec![format!(
                r#"{{"event":"bind","pid":{pid},"comm":"bindprobe","fd":4,"proto":"tcp","family":"ipv4","address":"127.0.0.1:{p}","rule":"-d","action":"denied","result":"error","errno":"EPERM","error":"Operation not permitted"}}"#
            )], true),
            "{context}"
        );
        let _ = std::fs::remove_file(&log);

        // Text lines, appended to what is there.
        std::fs::write(&log, "kept\n").unwrap();
        let mut program = probe("127.0.0.1", &p);
        program.push("--listen");
        let f = run(force_bind(engine, &with(&["--log", log_s], program)));
        f.assert_success();
        assert!(event_lines(&f).is_empty(), "{f}");
        let pid = probe_pid(&f);
        let written = std::fs::read_to_string(&log).unwrap();
        let context = format!("{f}\n--- {log_s} ---\n{written}");
        let mut lines = written.lines();
        assert_eq!(lines.next(), Some("kept"), "{context}");
        let lines: Vec<String> = event_lines_of(&lines.collect::<Vec<_>>().join("\n"))
            .iter()
            .map(|l| untimed_text(l, &context))
            .collect();
        assert_eq!(
            lines,
            reported(engine, vec![
                format!("force-bind: pid {pid} (bindprobe): bind tcp fd 4 127.0.0.1:{p}: allowed (no rule matched): ok, bound 127.0.0.1:{p}"),
                format!("force-bind: pid {pid} (bindprobe): listen tcp fd 4: ok, listening on 127.0.0.1:{p}"),
            ], false),
            "{context}"
        );
        let _ = std::fs::remove_file(&log);
    }
}
