//! tests/threads_forks.rs: binds from many threads and forked children at once are all
//! rewritten, none lost and none left unsupervised.

mod common;

use common::*;
use std::collections::HashSet;

fn all_at(f: &Finished, ip: &str, count: usize) {
    let got = f.bound();
    assert_eq!(got.len(), count, "expected {count} binds\n{f}");
    let want = v4(ip, 0).ip();
    assert!(
        got.iter().all(|a| a.ip() == want),
        "a bind escaped {want}\n{f}"
    );
    // Ports may repeat: a child that exits frees its ports for the next bind.
    assert!(got.iter().all(|a| a.port() != 0), "{f}");
    f.assert_success();
}

engine_tests! {
    fn threads_are_all_rewritten(engine: Engine) {
        let f = run(force_bind(engine, &["-b", "127.0.0.3", bindprobe(), "--threads", "8"]));
        all_at(&f, "127.0.0.3", 8);
    }

    fn forked_children_with_threads_are_all_rewritten(engine: Engine) {
        let f = run(force_bind(engine, &[
            "-b", "127.0.0.3", bindprobe(), "--forks", "3", "--threads", "8",
        ]));
        all_at(&f, "127.0.0.3", 32);
        let pids: HashSet<&str> =
            f.stdout.lines().filter_map(|l| l.split_whitespace().nth(3)).collect();
        assert_eq!(pids.len(), 4, "binds from the parent and 3 children\n{f}");
    }

    fn many_short_lived_sockets_per_thread(engine: Engine) {
        let f = run(force_bind(engine, &[
            "-b", "127.0.0.3", bindprobe(), "--threads", "4", "--repeat", "8", "--close-reuse",
        ]));
        let got = f.bound();
        assert_eq!(got.len(), 32, "{f}");
        assert!(got.iter().all(|a| a.ip() == v4("127.0.0.3", 0).ip()), "{f}");
        f.assert_success();
    }

    fn threads_under_deny_all_fail(engine: Engine) {
        let port = free_port().to_string();
        let f = run(force_bind(engine, &[
            "-d", bindprobe(), "--forks", "2", "--threads", "4", "--port", &port,
        ]));
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM); 12], "{f}");
        assert_eq!(f.code(), Some(1), "{f}");
    }

    fn threads_port_zero_listens_under_deny_all_fail(engine: Engine) {
        // -d lets each port-0 bind through and judges its listen() on the port the
        // kernel gave it: every one of the 12 is refused.
        let f = run(force_bind(engine, &[
            "-d", bindprobe(), "--forks", "2", "--threads", "4", "--port", "0", "--listen",
        ]));
        let probe = f.probe();
        let bound = f.bound();
        assert_eq!(bound.len(), 12, "{f}");
        assert!(bound.iter().all(|a| a.port() != 0), "{f}");
        let refused = probe.iter().filter(|p| **p == Probe::Error(libc::EPERM)).count();
        assert_eq!((refused, probe.len()), (12, 24), "{f}");
        assert_eq!(f.stdout.matches("(listen)").count(), 12, "{f}");
        assert_eq!(f.code(), Some(1), "{f}");
    }

    fn held_listeners_from_threads_accept_clients(engine: Engine) {
        let first = free_ports(4);
        let ports: Vec<String> = (first..first + 4).map(|p| p.to_string()).collect();
        let mut p = Proc::spawn_with_stdin(force_bind(engine, &[
            "-m", "127.0.0.1:*=127.0.0.9", bindprobe(), "--port", &ports.join(","),
            "--listen", "--hold", "--ready",
        ]));
        assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "{}", p.context());
        for port in first..first + 4 {
            let addr = v4("127.0.0.9", port);
            assert!(is_listening(addr), "{addr}\n{}", p.context());
            std::net::TcpStream::connect_timeout(&addr, WAIT).expect("client connects");
            assert_eq!(tcp_listeners_on(port), vec![addr]);
        }
        p.close_stdin();
        p.finish(WAIT).assert_success();
    }
}
