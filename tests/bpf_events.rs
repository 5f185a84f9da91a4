//! tests/bpf_events.rs: bind events under the bpf engine (issue 13): the event
//! programs' ring buffer read back as -v, --json and --log lines. Each run is
//! checked against what the kernel bound (bindprobe's getsockname, /proc/net of the
//! run's own network namespace, a real connection) and against what the notify
//! engine prints for the same run, field by field (not the timestamps, and not the
//! fields the bpf engine cannot know: the descriptor and a failed bind's errno).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use common::servers::*;
use common::*;
use serde_json::Value;

/// `force-bind ENGINE ARGS...` in a new network namespace.
fn in_netns(engine: Engine, args: &[&str]) -> std::process::Command {
    in_new_netns(&[], force_bind(engine, args))
}

/// The JSON event lines of stderr (or a log file).
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "bind")
        .collect()
}

/// The fields both engines must agree on. A port-0 bind's port is the kernel's
/// pick, different in each run: checked against bindprobe instead.
fn comparable(e: &Value) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    for k in [
        "event", "comm", "proto", "family", "address", "rule", "action", "to", "result",
    ] {
        m.insert(k, e[k].to_string());
    }
    let bound = e["bound"].as_str().unwrap_or("");
    let bound = match bound.parse::<SocketAddr>() {
        Ok(a) if e["address"].as_str().is_some_and(|r| r.ends_with(":0")) => {
            SocketAddr::new(a.ip(), 0).to_string()
        }
        _ => bound.to_string(),
    };
    m.insert("bound", bound);
    m
}

/// The probe runs under both engines: a rewrite per family and protocol, port 0, a
/// second bind of a taken port (EADDRINUSE), a denied port.
const RULES: [&str; 6] = ["-b", "127.0.0.2", "-b", "[::1]", "-m", ":9=deny"];

fn probes(p: u16) -> Vec<Vec<String>> {
    let ps = format!("{p},{p}");
    [
        vec!["--addr", "0.0.0.0", "--port", &ps],
        vec!["--udp", "--family", "6", "--addr", "::", "--port", "0"],
        vec!["--family", "6", "--addr", "::ffff:0.0.0.0", "--port", "0"],
        vec!["--addr", "0.0.0.0", "--port", "9"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect())
    .collect()
}

fn run_probe(engine: Engine, extra: &[&str], probe_args: &[String]) -> Finished {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend_from_slice(&RULES);
    args.push(bindprobe());
    args.extend(probe_args.iter().map(String::as_str));
    run(in_netns(engine, &args))
}

bpf_test! {
    /// --json: every bind is one event; its fields are the notify engine's for the
    /// same run, its bound address is what getsockname says, its pid bindprobe's; a
    /// failed bind says errno unknown, a denied one EPERM.
    fn json_events_match_the_kernel_and_the_notify_engine() {
        let p = free_port();
        for probe_args in probes(p) {
            let bpf = run_probe(Engine::Bpf, &["--json"], &probe_args);
            let notify = run_probe(Engine::Notify, &["--json"], &probe_args);
            let (be, ne) = (events(&bpf.stderr), events(&notify.stderr));
            assert!(!be.is_empty(), "no bpf events\n{bpf}");
            assert_eq!(
                be.iter().map(comparable).collect::<Vec<_>>(),
                ne.iter().map(comparable).collect::<Vec<_>>(),
                "bpf:\n{bpf}\nnotify:\n{notify}"
            );
            // What the kernel bound, as bindprobe read it back.
            let bound: Vec<String> = be
                .iter()
                .filter_map(|e| e["bound"].as_str().map(str::to_string))
                .collect();
            let probed: Vec<String> = bpf.bound().iter().map(|a| a.to_string()).collect();
            assert_eq!(bound, probed, "{bpf}");
            let pids: Vec<i64> = bpf
                .stdout
                .lines()
                .filter_map(|l| l.rsplit_once("pid=")?.1.parse().ok())
                .collect();
            for (e, n) in be.iter().zip(&ne) {
                assert!(e.get("fd").is_none(), "the bpf engine does not know the fd: {e}");
                if e["result"] == "error" {
                    let want = if e["action"] == "denied" { "EPERM" } else { "unknown" };
                    assert_eq!(e["errno"], want, "{bpf}");
                    if want == "unknown" {
                        assert_eq!(n["errno"], "EADDRINUSE", "{notify}");
                    }
                }
                // pid 0 where a kernel does not let cgroup programs ask.
                if e["pid"] != 0 {
                    assert!(pids.contains(&e["pid"].as_i64().unwrap()), "{bpf}");
                }
            }
        }
    }

    /// -v: the same text lines as the notify engine, without " fd N", and a failed
    /// bind's errno said to be unknown.
    fn text_events_match_the_notify_engine() {
        let p = free_port();
        let probe_args = &probes(p)[0];
        let bpf = run_probe(Engine::Bpf, &["-v"], probe_args);
        let notify = run_probe(Engine::Notify, &["-v"], probe_args);
        let lines = |f: &Finished| -> Vec<String> {
            f.stderr_lines()
                .into_iter()
                .filter(|l| l.contains(": bind "))
                .map(|l| {
                    let l = l.split_once("): ").map(|(_, rest)| rest).unwrap_or(l);
                    let l = l.split(' ').collect::<Vec<_>>();
                    let mut out = Vec::new();
                    let mut it = l.iter();
                    while let Some(w) = it.next() {
                        if *w == "fd" {
                            it.next();
                        } else {
                            out.push(*w);
                        }
                    }
                    let l = out.join(" ");
                    match (l.split_once(" (no post-bind"), l.split_once("): failed")) {
                        (Some((a, _)), Some((_, b))) => format!("{a}: failed{b}"),
                        _ => l,
                    }
                })
                .map(|l| l.split_once(": failed").map(|(a, _)| format!("{a}: failed")).unwrap_or(l))
                .collect()
        };
        let want = vec![
            format!("bind tcp 0.0.0.0:{p}: rewritten to 127.0.0.2:{p} by '-b 127.0.0.2': ok, bound 127.0.0.2:{p}"),
            format!("bind tcp 0.0.0.0:{p}: rewritten to 127.0.0.2:{p} by '-b 127.0.0.2': failed"),
        ];
        assert_eq!(lines(&bpf), want, "{bpf}");
        assert_eq!(lines(&notify), want, "{notify}");
        assert!(bpf.stderr.contains("failed, errno unknown"), "{bpf}");
        assert!(!bpf.stderr.contains("reports no bind events"), "{bpf}");
    }

    /// --log FILE: the events go to the file, each line with its time; stderr keeps
    /// only what is not an event.
    fn log_file_gets_the_events() {
        let log = tmp_path("bpf-events.log");
        let _ = fs::remove_file(&log);
        let log_s = log.to_str().unwrap().to_string();
        let p = free_port();
        let f = run_probe(
            Engine::Bpf,
            &["-v", "--log", &log_s],
            &["--udp".into(), "--addr".into(), "0.0.0.0".into(), "--port".into(), p.to_string()],
        );
        f.assert_success();
        let text = fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(": bind ")).collect();
        assert_eq!(lines.len(), 1, "{text}\n{f}");
        assert!(
            lines[0].ends_with(&format!(
                "bind udp 0.0.0.0:{p}: rewritten to 127.0.0.2:{p} by '-b 127.0.0.2': ok, bound 127.0.0.2:{p}"
            )),
            "{text}"
        );
        // An RFC 3339 time first.
        assert!(lines[0].starts_with("20") && lines[0].contains("Z force-bind: pid "), "{text}");
        assert!(!f.stderr.contains(": bind "), "{f}");
        let _ = fs::remove_file(&log);
    }

    /// python3 -m http.server under the engine: its event's bound address is the
    /// socket /proc/net/tcp shows in its namespace and a client reaches there.
    fn a_real_server_is_reported_where_it_listens() {
        let p = free_port();
        let ps = p.to_string();
        let mut args = vec!["--json", "-b", "127.0.0.2", "-b", "[::1]"];
        args.extend_from_slice(&[python3(), "-m", "http.server", &ps, "--bind", "0.0.0.0"]);
        let server = Proc::spawn(in_netns(Engine::Bpf, &args));
        let want = v4("127.0.0.2", p);
        assert!(
            server.wait_stderr(&format!("\"bound\":\"{want}\""), Duration::from_secs(10)),
            "{}",
            server.context()
        );
        let pid = *server
            .descendants()
            .iter()
            .find(|&&d| comm(d).as_deref() == Some("python3"))
            .expect("the server runs");
        // The namespace's own table (/proc/net is the test's main thread's); the
        // bind event comes before the server's listen().
        let listeners = || -> Vec<SocketAddr> {
            let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
            parse_proc_net(&table)
                .into_iter()
                .filter(|s| s.state == TCP_LISTEN && s.addr.port() == p)
                .map(|s| s.addr)
                .collect()
        };
        wait_until(Duration::from_secs(10), || !listeners().is_empty());
        let listeners = listeners();
        let status = in_netns_of(pid, move || http_get_retry(want, Duration::from_secs(5))).unwrap();
        assert_eq!(listeners, vec![want], "{}", server.context());
        assert_eq!(status, Ok(200), "{}", server.context());
        let f = server.kill();
        let e = events(&f.stderr);
        assert_eq!(e.len(), 1, "{f}");
        assert_eq!(e[0]["comm"], "python3", "{f}");
        assert_eq!(e[0]["address"], format!("0.0.0.0:{p}"), "{f}");
    }

    /// socat, a TCP and a UDP listener: two events, each where /proc/net says.
    fn socat_tcp_and_udp() {
        let Some(found) = require(&["socat"]) else {
            return skip("socat not installed");
        };
        let p = free_port();
        let script = format!(
            "{socat} -u TCP-LISTEN:{p},bind=0.0.0.0 - >/dev/null & a=$!; {socat} -u UDP-RECV:{p},bind=0.0.0.0 - >/dev/null & b=$!; i=0; while [ $i -lt 100 ] && [ \"$(cat /proc/net/tcp /proc/net/udp | grep -c :{p:04X})\" -lt 2 ]; do sleep 0.05; i=$((i+1)); done; cat /proc/net/tcp /proc/net/udp; kill $a $b",
            socat = found[0]
        );
        let f = run(in_netns(
            Engine::Bpf,
            &["--json", "-b", "127.0.0.3", "-b", "[::1]", "sh", "-c", &script],
        ));
        let mut got: Vec<(String, String)> = events(&f.stderr)
            .iter()
            .map(|e| (e["proto"].as_str().unwrap().to_string(), e["bound"].to_string()))
            .collect();
        got.sort();
        let b = format!("\"127.0.0.3:{p}\"");
        assert_eq!(got, vec![("tcp".into(), b.clone()), ("udp".into(), b)], "{f}");
        // Both tables show 127.0.0.3 (0300007F) on the port.
        let hex = format!("0300007F:{p:04X}");
        assert_eq!(f.stdout.matches(&hex).count(), 2, "{f}");
    }

    /// Without -v/--json/--log the event programs and their ring buffer are not
    /// loaded (force-bind holds no BPF_MAP_TYPE_RINGBUF descriptor); with --json they are.
    fn event_programs_only_when_events_are_wanted() {
        for (extra, want) in [(&[][..], 0), (&["--json"][..], 1)] {
            let p = free_port().to_string();
            let mut args = extra.to_vec();
            args.extend_from_slice(&RULES);
            args.extend_from_slice(&[bindprobe(), "--port", &p, "--hold", "--ready"]);
            let mut probe = Proc::spawn_with_stdin(in_netns(Engine::Bpf, &args));
            assert!(
                probe.wait_line(|l| l == "ready", Duration::from_secs(10)).is_some(),
                "{}",
                probe.context()
            );
            // unshare and sh exec force-bind: it is the process started.
            let fb = probe.pid();
            assert_eq!(comm(fb).as_deref(), Some("force-bind"), "{}", probe.context());
            let rings = fs::read_dir(format!("/proc/{fb}/fdinfo"))
                .unwrap()
                .filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
                .filter(|info| info.lines().any(|l| l.split_whitespace().eq(["map_type:", "27"])))
                .count();
            probe.close_stdin();
            let f = probe.finish(Duration::from_secs(10));
            assert_eq!(rings, want, "with {extra:?}\n{f}");
        }
    }

    /// Watch mode (no rule): every bind is shown as the notify engine shows it,
    /// without the descriptor.
    fn watch_mode_shows_every_bind() {
        let p = free_port().to_string();
        let args = [bindprobe(), "--addr", "0.0.0.0", "--port", &p, "--listen"];
        let lines = |engine| {
            let f = run(in_netns(engine, &args));
            f.assert_success();
            let got: Vec<String> = f
                .stderr_lines()
                .iter()
                .filter_map(|l| l.split_once("): ").map(|(_, rest)| rest.to_string()))
                .filter(|l| l.starts_with("bind "))
                .map(|l| match l.split_once(" fd ") {
                    // "bind tcp fd N ADDR...": the bpf engine knows no descriptor.
                    Some((a, b)) => format!("{a} {}", b.split_once(' ').map_or("", |x| x.1)),
                    None => l,
                })
                .collect();
            (got, f)
        };
        let (bpf, fb) = lines(Engine::Bpf);
        let (notify, fn_) = lines(Engine::Notify);
        assert_eq!(
            bpf,
            vec![format!("bind tcp 0.0.0.0:{p}: allowed (no rule matched): ok, bound 0.0.0.0:{p}")],
            "{fb}"
        );
        assert_eq!(bpf, notify, "{fn_}");
    }

    /// io_uring's IORING_OP_BIND passes the same hooks, so it has its event too
    /// (which no seccomp-based engine can give: they refuse io_uring, or let it
    /// bind unseen with --allow-io-uring).
    fn io_uring_binds_have_events() {
        let p = free_port();
        let ps = p.to_string();
        let uring = example("uring_bind");
        let rule = format!("127.0.0.1:{p}=127.0.0.5");
        let f = run(force_bind(Engine::Bpf, &["--json", "-m", &rule, &uring, "127.0.0.1", &ps]));
        assert!(f.stdout.contains("via io_uring"), "{f}");
        assert_eq!(f.bound(), vec![v4("127.0.0.5", p)], "{f}");
        let e = events(&f.stderr);
        assert_eq!(e.len(), 1, "{f}");
        assert_eq!(e[0]["comm"], "uring_bind", "{f}");
        assert_eq!(e[0]["address"], format!("127.0.0.1:{p}"), "{f}");
        assert_eq!(e[0]["action"], "rewritten", "{f}");
        assert_eq!(e[0]["bound"], format!("127.0.0.5:{p}"), "{f}");
    }
}

bpf_test! {
    /// An IPv4 rule alone on `[::]`: the events decide as the kernel did, by the
    /// socket's IPV6_V6ONLY as the programs read it — a dual-stack socket's bind is
    /// rewritten to the mapped address, an IPv6-only one's allowed — and agree with
    /// the notify engine's for the same runs.
    fn dual_stack_events_follow_the_sockets_mode() {
        let p = free_port();
        for (v6only, action, bound) in [
            ("0", "\"rewritten\"", format!("[::ffff:127.0.0.2]:{p}")),
            ("1", "\"allowed\"", format!("[::]:{p}")),
        ] {
            let ps = p.to_string();
            let args = [
                "--json", "-b", "127.0.0.2", bindprobe(), "--family", "6", "--addr", "::",
                "--v6only", v6only, "--port", &ps,
            ];
            let bpf = run(in_netns(Engine::Bpf, &args));
            let notify = run(in_netns(Engine::Notify, &args));
            let (be, ne) = (events(&bpf.stderr), events(&notify.stderr));
            assert_eq!(be.len(), 1, "{bpf}");
            assert_eq!(be[0]["action"].to_string(), action, "{bpf}");
            assert_eq!(be[0]["bound"].as_str(), Some(bound.as_str()), "{bpf}");
            assert_eq!(
                be.iter().map(comparable).collect::<Vec<_>>(),
                ne.iter().map(comparable).collect::<Vec<_>>(),
                "bpf:\n{bpf}\nnotify:\n{notify}"
            );
        }
    }
}
