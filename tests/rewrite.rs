//! tests/rewrite.rs: `-b` and `-m MATCH=ADDR` move binds, as the kernel reports them.

mod common;

use common::*;
use std::net::{SocketAddr, TcpStream};

/// Runs bindprobe under force-bind with `rules` and returns the run.
fn probe(engine: Engine, rules: &[&str], probe_args: &[&str]) -> Finished {
    let mut args = rules.to_vec();
    args.push(bindprobe());
    args.extend_from_slice(probe_args);
    run(force_bind(engine, &args))
}

/// Runs bindprobe binding 127.0.0.1 on `ports` and returns the bound addresses.
fn probe_ports(engine: Engine, rules: &[&str], ports: &[u16]) -> (Vec<SocketAddr>, Finished) {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let f = probe(engine, rules, &["--port", &list.join(",")]);
    (f.bound(), f)
}

/// `python3 -m http.server PORT --bind 0.0.0.0` under `rule`; checks that it listens
/// at exactly `want`, serves a GET there, and never listens on the original port.
fn http_server_moves(engine: Engine, rule: &[&str], port: u16, want: SocketAddr) {
    let mut args = rule.to_vec();
    let port_s = port.to_string();
    args.extend_from_slice(&[python3(), "-m", "http.server", &port_s, "--bind", "0.0.0.0"]);
    let server = Proc::spawn(force_bind(engine, &args));
    assert!(
        wait_for_listen(want, WAIT),
        "no listener at {want}\n{}",
        server.context()
    );
    assert_eq!(http_get_retry(want, WAIT), Ok(200), "{}", server.context());
    if want.port() != port {
        assert_eq!(
            tcp_listeners_on(port),
            vec![],
            "original port in use\n{}",
            server.context()
        );
    }
    let all = tcp_listeners_on(want.port());
    assert_eq!(
        all,
        vec![want],
        "listeners on port {}\n{}",
        want.port(),
        server.context()
    );
    let f = server.kill();
    assert!(!f.stderr.contains("panicked"), "{f}");
}

engine_tests! {
    fn http_server_bind_all_moved_with_b(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        http_server_moves(engine, &["-b", &format!("127.0.0.2:{q}")], p, v4("127.0.0.2", q));
    }

    fn http_server_match_with_prefix_keeps_port(engine: Engine) {
        let p = free_port();
        let rule = format!("0.0.0.0:{p}/0=127.0.0.2");
        http_server_moves(engine, &["-m", &rule], p, v4("127.0.0.2", p));
    }

    fn dual_stack_http_server_moved_to_v4_mapped(engine: Engine) {
        // With --bind ::, http.server binds [::] with IPV6_V6ONLY off (DualStackServer).
        let (p, q) = (free_port(), free_port());
        let (p_s, rule) = (p.to_string(), format!("127.0.0.2:{q}"));
        let args = ["-b", &rule, python3(), "-m", "http.server", &p_s, "--bind", "::"];
        let server = Proc::spawn(force_bind(engine, &args));
        let mapped = v6("::ffff:127.0.0.2", q);
        assert!(wait_for_listen(mapped, WAIT), "{}", server.context());
        let got = http_get_retry(v4("127.0.0.2", q), WAIT);
        assert_eq!(got, Ok(200), "{}", server.context());
        assert_eq!(tcp_listeners_on(p), vec![], "{}", server.context());
        assert_eq!(tcp_listeners_on(q), vec![mapped], "{}", server.context());
    }

    fn b_with_address_only_keeps_port(engine: Engine) {
        let p = free_port();
        for rule in ["127.0.0.7", "127.0.0.7:*"] {
            let (got, f) = probe_ports(engine, &["-b", rule], &[p]);
            assert_eq!(got, vec![v4("127.0.0.7", p)], "-b {rule}\n{f}");
        }
    }

    fn b_with_a_port_moves_port_zero_but_keeps_it_ephemeral(engine: Engine) {
        // A port-0 bind asks for no service port: the rule's address applies, its
        // port does not, so two such binds never collide on the rule's port.
        let q = free_port();
        let (got, f) = probe_ports(engine, &["-b", &format!("127.0.0.3:{q}")], &[0, 0]);
        assert_eq!(got.len(), 2, "{f}");
        for a in &got {
            assert_eq!(a.ip(), v4("127.0.0.3", 0).ip(), "{f}");
            assert!(a.port() != 0 && a.port() != q, "an ephemeral port, not {q}\n{f}");
        }
        assert_ne!(got[0], got[1], "{f}");
        f.assert_success();
        // A MATCH that names port 0 makes it a service bind: the port is rewritten too.
        let (got, f) = probe_ports(engine, &["-m", &format!(":0=127.0.0.3:{q}")], &[0]);
        assert_eq!(got, vec![v4("127.0.0.3", q)], "{f}");
        f.assert_success();
    }

    fn udp_bind_is_rewritten(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let port = p.to_string();
        let f = probe(engine, &["-b", &format!("127.0.0.3:{q}")], &["--udp", "--port", &port]);
        assert_eq!(f.bound(), vec![v4("127.0.0.3", q)], "{f}");
        assert!(listening(Proto::Udp).iter().all(|s| s.addr.port() != p), "{f}");
    }

    fn v4_rule_on_dual_stack_socket_uses_v4_mapped(engine: Engine) {
        // From the main thread and from a second thread: the supervisor must find
        // the socket's IPV6_V6ONLY setting either way.
        for threads in ["0", "1"] {
            let (asked, p) = (free_port(), free_port());
            let (asked_s, rule) = (asked.to_string(), format!("127.0.0.1:{p}"));
            let mut probe = Proc::spawn_with_stdin(force_bind(engine, &[
                "-b", &rule, bindprobe(), "--threads", threads,
                "--family", "6", "--addr", "::", "--v6only", "0", "--port", &asked_s,
                "--listen", "--hold", "--ready",
            ]));
            assert!(probe.wait_line(|l| l == "ready", WAIT).is_some(), "{}", probe.context());
            let mapped = v6("::ffff:127.0.0.1", p);
            let bound = bound_addrs(&probe.stdout_lines().join("\n"));
            assert_eq!(bound, vec![mapped], "{}", probe.context());
            // The kernel lists it in /proc/net/tcp6 as a v4-mapped address, and an
            // IPv4 client reaches it.
            assert_eq!(tcp_listeners_on(p), vec![mapped]);
            assert_eq!(tcp_listeners_on(asked), vec![], "{}", probe.context());
            TcpStream::connect_timeout(&v4("127.0.0.1", p), WAIT).expect("IPv4 client connects");
            probe.close_stdin();
            probe.finish(WAIT).assert_success();
        }
    }

    fn v4_rule_rewrites_a_v4_mapped_bind_in_mapped_form(engine: Engine) {
        // `[::ffff:127.0.0.1]` binds IPv4: IPv4 and family-less rules reach it, and it
        // stays on its AF_INET6 socket in mapped form.
        let (p, q) = (free_port(), free_port());
        let args = ["--family", "6", "--addr", "::ffff:127.0.0.1", "--port", &p.to_string()];
        let f = probe(engine, &["-b", &format!("127.0.0.3:{q}")], &args);
        assert_eq!(f.bound(), vec![v6("::ffff:127.0.0.3", q)], "{f}");
        let f = probe(engine, &["-m", &format!(":{p}=127.0.0.4")], &args);
        assert_eq!(f.bound(), vec![v6("::ffff:127.0.0.4", p)], "{f}");
        let f = probe(engine, &["-m", &format!("127.0.0.0:{p}/8=deny")], &args);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        // An IPv6 rule given later still does not take it.
        let f = probe(engine, &["-b", &format!("127.0.0.3:{q}"), "-b", "[::1]"], &args);
        assert_eq!(f.bound(), vec![v6("::ffff:127.0.0.3", q)], "{f}");
    }

    fn v4_rule_leaves_v6only_socket_alone(engine: Engine) {
        // A real port: a port-0 bind would keep its port under any rule.
        for threads in ["0", "1"] {
            let (asked, p) = (free_port(), free_port());
            let f = probe(engine, &["-b", &format!("127.0.0.1:{p}")], &[
                "--threads", threads,
                "--family", "6", "--addr", "::", "--v6only", "1", "--port", &asked.to_string(),
            ]);
            assert_eq!(single_bound(&f), v6("::", asked), "{f}");
        }
    }

    fn v4_rule_leaves_v6_loopback_alone(engine: Engine) {
        let (asked, p) = (free_port(), free_port());
        let f = probe(engine, &["-b", &format!("127.0.0.1:{p}")], &[
            "--family", "6", "--addr", "::1", "--v6only", "0", "--port", &asked.to_string(),
        ]);
        assert_eq!(single_bound(&f), v6("::1", asked), "{f}");
    }

    fn v6_rule_rewrites_v6_only(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let (rule, port) = (format!("[::1]:{q}"), p.to_string());
        let f = probe(engine, &["-b", &rule], &["--family", "6", "--addr", "::1", "--port", &port]);
        assert_eq!(f.bound(), vec![v6("::1", q)], "{f}");
        // Same rule, IPv4 socket: a different family, so untouched.
        let f = probe(engine, &["-b", &rule], &["--port", &port]);
        assert_eq!(single_bound(&f), v4("127.0.0.1", p), "{f}");
        // A v4-mapped bind is an IPv4 bind: an IPv6 rule leaves it alone too.
        let f = probe(engine, &["-b", &rule], &["--family", "6", "--addr", "::ffff:127.0.0.1", "--port", &port]);
        assert_eq!(single_bound(&f), v6("::ffff:127.0.0.1", p), "{f}");
    }

    fn v6_match_with_prefix(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let rule = format!("[::]:{p}/0=[::1]:{q}");
        let port = p.to_string();
        let f = probe(engine, &["-m", &rule], &["--family", "6", "--addr", "::1", "--port", &port]);
        assert_eq!(f.bound(), vec![v6("::1", q)], "{f}");
    }

    fn port_match_applies_to_both_families(engine: Engine) {
        let p = free_port();
        let rule = format!(":{p}=deny");
        let port = p.to_string();
        let f = probe(engine, &["-m", &rule], &["--family", "6", "--addr", "::1", "--port", &port]);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        let f = probe(engine, &["-m", &rule], &["--port", &p.to_string()]);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
    }

    fn port_range_match(engine: Engine) {
        let a = free_ports(3);
        let rule = format!(":{a}-{}=127.0.0.3", a + 1);
        let (got, f) = probe_ports(engine, &["-m", &rule], &[a, a + 1, a + 2]);
        assert_eq!(
            got,
            vec![v4("127.0.0.3", a), v4("127.0.0.3", a + 1), v4("127.0.0.1", a + 2)],
            "{f}"
        );
    }

    fn ip_prefix_match(engine: Engine) {
        let p = free_port();
        let (got, f) = probe_ports(engine, &["-m", &format!("127.0.0.0:{p}/8=127.0.0.5")], &[p]);
        assert_eq!(got, vec![v4("127.0.0.5", p)], "{f}");
        // Without a prefix the whole address must match: 127.0.0.2 is not 127.0.0.1.
        let (got, f) = probe_ports(engine, &["-m", &format!("127.0.0.2:{p}=127.0.0.5")], &[p]);
        assert_eq!(got, vec![v4("127.0.0.1", p)], "{f}");
        let (got, f) = probe_ports(engine, &["-m", &format!("127.0.0.2:{p}/32=127.0.0.5")], &[p]);
        assert_eq!(got, vec![v4("127.0.0.1", p)], "{f}");
    }

    fn any_port_match(engine: Engine) {
        let a = free_ports(2);
        let (got, f) = probe_ports(engine, &["-m", "127.0.0.1:*=127.0.0.6"], &[a, a + 1]);
        assert_eq!(got, vec![v4("127.0.0.6", a), v4("127.0.0.6", a + 1)], "{f}");
        let port = a.to_string();
        let args = ["--addr", "127.0.0.2", "--port", &port];
        let f = probe(engine, &["-m", "127.0.0.1:*=127.0.0.6"], &args);
        assert_eq!(f.bound(), vec![v4("127.0.0.2", a)], "other addresses untouched\n{f}");
    }

    fn last_given_rule_wins(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let (got, f) = probe_ports(engine, &[
            "-m", &format!(":{p}=127.0.0.2"),
            "-m", &format!(":{p}=127.0.0.3"),
        ], &[p]);
        assert_eq!(got, vec![v4("127.0.0.3", p)], "{f}");

        let to_3 = format!(":{p}=127.0.0.3");
        let (got, f) = probe_ports(engine, &["-b", "127.0.0.2", "-m", &to_3], &[p, q]);
        assert_eq!(got, vec![v4("127.0.0.3", p), v4("127.0.0.2", q)], "{f}");

        let (got, f) = probe_ports(engine, &["-m", &to_3, "-b", "127.0.0.2"], &[p, q]);
        assert_eq!(got, vec![v4("127.0.0.2", p), v4("127.0.0.2", q)], "{f}");

        let allow = format!(":{p}=allow");
        let (got, f) = probe_ports(engine, &["-b", "127.0.0.2", "-m", &allow], &[p, q]);
        assert_eq!(got, vec![v4("127.0.0.1", p), v4("127.0.0.2", q)], "{f}");
    }

    fn reused_descriptors_are_each_rewritten(engine: Engine) {
        let rule = "127.0.0.1:*=127.0.0.8";
        let f = probe(engine, &["-m", rule], &["--repeat", "6", "--close-reuse"]);
        let got = f.bound();
        assert_eq!(got.len(), 6, "{f}");
        assert!(got.iter().all(|a| a.ip() == v4("127.0.0.8", 0).ip()), "{f}");
        f.assert_success();
    }

    fn exec_inside_target_is_still_rewritten(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let rule = format!("127.0.0.3:{q}");
        let script = format!("exec {} --port {p}", bindprobe());
        let f = run(force_bind(engine, &["-b", &rule, "sh", "-c", &script]));
        assert_eq!(f.bound(), vec![v4("127.0.0.3", q)], "{f}");
        f.assert_success();
    }

    fn child_of_target_is_rewritten(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let rule = format!("127.0.0.3:{q}");
        // `; exit $?` keeps the shell from exec'ing the probe: it forks, then execs.
        let script = format!("{} --port {p}; exit $?", bindprobe());
        let f = run(force_bind(engine, &["-b", &rule, "sh", "-c", &script]));
        assert_eq!(f.bound(), vec![v4("127.0.0.3", q)], "{f}");
        f.assert_success();
    }
}
