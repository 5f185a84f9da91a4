//! tests/deny_allow.rs: `-d`, `deny` and `allow`, and what they must leave alone.

mod common;

use common::*;

fn probe(engine: Engine, rules: &[&str], probe_args: &[&str]) -> Finished {
    let mut args = rules.to_vec();
    args.push(bindprobe());
    args.extend_from_slice(probe_args);
    run(force_bind(engine, &args))
}

engine_tests! {
    fn netcat_listen_is_denied(engine: Engine) {
        let p = free_port();
        let f = run(force_bind(engine, &["-d", "nc", "-l", "127.0.0.1", &p.to_string()]));
        assert_ne!(f.code(), Some(0), "{f}");
        assert_eq!(f.signal(), None, "{f}");
        assert!(f.stderr.contains("Operation not permitted"), "{f}");
        assert!(f.stderr.lines().filter(|l| l.contains("Operation not permitted")).count() >= 1);
        let on_port: Vec<_> = sockets(Proto::Tcp)
            .into_iter()
            .filter(|s| s.addr.port() == p)
            .collect();
        assert_eq!(on_port, vec![], "{f}");
    }

    fn deny_all_but_allowed_port(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let allow = format!(":{p}=allow");
        let f = probe(engine, &["-d", "-m", &allow], &["--port", &format!("{p},{q}")]);
        assert_eq!(
            f.probe(),
            vec![Probe::Bound(v4("127.0.0.1", p)), Probe::Error(libc::EPERM)],
            "{f}"
        );
        // The probe exits 1 when a bind failed; force-bind passes that on.
        assert_eq!(f.code(), Some(1), "{f}");
    }

    fn deny_rule_for_one_port(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let f = probe(engine, &["-m", &format!(":{p}=deny")], &["--port", &format!("{p},{q}")]);
        assert_eq!(
            f.probe(),
            vec![Probe::Error(libc::EPERM), Probe::Bound(v4("127.0.0.1", q))],
            "{f}"
        );
    }

    fn deny_covers_ipv6_udp_and_threads(engine: Engine) {
        let p = free_port();
        let port = p.to_string();
        let f = probe(engine, &["-d"], &["--family", "6", "--addr", "::1", "--port", &port]);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        let f = probe(engine, &["-d"], &["--udp", "--port", &port]);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        let f = probe(engine, &["-d"], &["--port", &port, "--threads", "4"]);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM); 4], "{f}");
        let on_port: Vec<_> = [Proto::Tcp, Proto::Udp]
            .into_iter()
            .flat_map(sockets)
            .filter(|s| s.addr.port() == p)
            .collect();
        assert_eq!(on_port, vec![], "nothing was bound on {p}");
    }

    fn deny_lets_port_zero_bind_and_refuses_its_listen(engine: Engine) {
        // A port-0 bind is no service bind: -d lets it through, and its listen() is
        // judged on the port the kernel gave it, which -d denies.
        for family in [&["--addr", "127.0.0.1"][..], &["--family", "6", "--addr", "::1"]] {
            let mut args = family.to_vec();
            args.extend(["--port", "0", "--listen"]);
            let f = probe(engine, &["-d"], &args);
            let probe = f.probe();
            let [Probe::Bound(a), Probe::Error(libc::EPERM)] = probe.as_slice() else {
                panic!("want a bound port-0 socket whose listen fails with EPERM\n{f}");
            };
            assert_eq!(a.ip().to_string(), family[family.len() - 1], "{f}");
            assert_ne!(a.port(), 0, "{f}");
            assert!(f.stdout.contains("(listen)"), "{f}");
            assert_eq!(f.code(), Some(1), "{f}");
        }
        // Without listen() (UDP), it stays a plain port-0 bind.
        let f = probe(engine, &["-d"], &["--udp", "--port", "0"]);
        let a = single_bound(&f);
        assert_eq!((a.ip(), a.port() != 0), (v4("127.0.0.1", 0).ip(), true), "{f}");
        f.assert_success();
        // A MATCH that names port 0 denies the bind itself.
        for rules in [&["-m", ":0=deny"][..], &["-d", "-m", "127.0.0.1:0=deny"]] {
            let f = probe(engine, rules, &["--port", "0", "--listen"]);
            assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{rules:?}\n{f}");
            assert!(f.stdout.contains("(bind)"), "{f}");
        }
    }

    fn unix_socket_bind_is_never_touched(engine: Engine) {
        let path = tmp_path("unix.sock");
        let path_s = path.to_str().unwrap();
        let f = probe(engine, &["-d"], &["--unix", path_s]);
        let exists = path.exists();
        let _ = std::fs::remove_file(&path);
        assert_eq!(f.probe(), vec![Probe::BoundUnix(path_s.to_string())], "{f}");
        assert!(exists, "the socket file was created");
        f.assert_success();

        let path = tmp_path("unix.sock");
        let path_s = path.to_str().unwrap();
        let f = probe(engine, &["-b", "127.0.0.2:1"], &["--unix", path_s]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(f.probe(), vec![Probe::BoundUnix(path_s.to_string())], "{f}");
    }
}
