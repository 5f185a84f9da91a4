//! tests/harness.rs: checks the test harness and helper programs themselves, without
//! force-bind, so a failure elsewhere can be trusted to be force-bind's.

mod common;

use common::*;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;

#[test]
fn decodes_proc_net_addresses() {
    // Rows as a little-endian kernel prints them (tcp_ipv4.c / tcp_ipv6.c).
    if cfg!(target_endian = "little") {
        let table = [
            ("0100007F:1F90", "127.0.0.1:8080"),
            ("0300007F:0050", "127.0.0.3:80"),
            ("00000000:0016", "0.0.0.0:22"),
            ("00000000000000000000000001000000:1F90", "[::1]:8080"),
            ("00000000000000000000000000000000:0035", "[::]:53"),
            (
                "0000000000000000FFFF00000100007F:2710",
                "[::ffff:127.0.0.1]:10000",
            ),
            ("B80D0120000000000000000001000000:0001", "[2001:db8::1]:1"),
        ];
        for (hex, want) in table {
            assert_eq!(
                decode_proc_addr(hex),
                Some(want.parse().unwrap()),
                "decoding {hex}"
            );
        }
    }
    for bad in ["", "0100007F", "0100007F:", "XYZ:0050", "0100007F00:0050"] {
        assert_eq!(decode_proc_addr(bad), None, "decoding {bad:?}");
    }
}

#[test]
fn parses_a_proc_net_table() {
    let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2B4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
";
    if cfg!(target_endian = "little") {
        assert_eq!(
            parse_proc_net(text),
            vec![
                NetSocket {
                    addr: v4("127.0.0.1", 8080),
                    state: TCP_LISTEN,
                    inode: 12345
                },
                NetSocket {
                    addr: v4("127.0.0.1", 0xA2B4),
                    state: 1,
                    inode: 0
                },
            ]
        );
    }
}

/// The decoder agrees with the live kernel on any host byte order.
#[test]
fn finds_live_sockets_in_proc_net() {
    let l4 = TcpListener::bind("127.0.0.5:0").unwrap();
    let l6 = TcpListener::bind("[::1]:0").unwrap();
    let u4 = UdpSocket::bind("127.0.0.5:0").unwrap();
    assert!(is_listening(l4.local_addr().unwrap()));
    assert!(is_listening(l6.local_addr().unwrap()));
    assert!(
        listening(Proto::Udp)
            .iter()
            .any(|s| s.addr == u4.local_addr().unwrap() && s.inode != 0)
    );
    assert!(wait_for_listen(l4.local_addr().unwrap(), STEP));
}

#[test]
fn free_ports_are_distinct_and_free() {
    let a = free_port();
    let b = free_port();
    let c = free_ports(4);
    assert_ne!(a, b);
    assert!(!(c..c + 4).contains(&a) && !(c..c + 4).contains(&b));
    for p in [a, b, c, c + 3] {
        assert!(tcp_listeners_on(p).is_empty());
        TcpListener::bind(("127.0.0.1", p)).expect("free port binds");
    }
}

#[test]
fn parses_probe_output() {
    let out = "bound 4 127.0.0.3:80 pid=1\nbound 6 [::ffff:127.0.0.1]:81 pid=1\n\
               bound unix /tmp/x pid=2\nerror 1 Operation not permitted (bind) pid=1\nready\nnoise\n";
    assert_eq!(
        parse_probe(out),
        vec![
            Probe::Bound(v4("127.0.0.3", 80)),
            Probe::Bound(v6("::ffff:127.0.0.1", 81)),
            Probe::BoundUnix("/tmp/x".into()),
            Probe::Error(1),
            Probe::Ready,
            Probe::Other("noise".into()),
        ]
    );
}

#[test]
fn bindprobe_reports_what_it_bound() {
    let p = free_ports(2);
    let f = run(command(
        bindprobe(),
        &["--port", &format!("{p},{}", p + 1), "--threads", "3"],
    ));
    assert_eq!(f.code(), Some(1), "some binds failed:\n{f}");
    let mut got = f.bound();
    got.sort();
    // Every thread tries both ports and holds what it got; one socket wins each port.
    assert_eq!(got, vec![v4("127.0.0.1", p), v4("127.0.0.1", p + 1)], "{f}");
    let errors = f.probe().iter().filter(|p| **p == Probe::Error(98)).count();
    assert_eq!(errors, 4, "EADDRINUSE for the losers:\n{f}");
}

#[test]
fn bindprobe_holds_and_listens() {
    let p = free_port();
    let mut probe = Proc::spawn_with_stdin(command(
        bindprobe(),
        &[
            "--family",
            "6",
            "--addr",
            "::1",
            "--port",
            &p.to_string(),
            "--listen",
            "--hold",
            "--ready",
        ],
    ));
    assert!(
        probe.wait_line(|l| l == "ready", WAIT).is_some(),
        "{}",
        probe.context()
    );
    assert!(is_listening(v6("::1", p)));
    probe.close_stdin();
    let f = probe.finish(WAIT);
    f.assert_success();
    assert_eq!(f.bound(), vec![v6("::1", p)]);
    assert!(!is_listening(v6("::1", p)));
}

#[test]
fn static_bind_is_static_and_binds() {
    let bin = static_bind();
    assert!(is_static_elf(bin), "{bin} has a PT_INTERP header");
    match std::process::Command::new("file").arg(bin).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("statically linked"), "file says: {text}");
        }
        Err(e) => skip(&format!("cannot run file(1): {e}: its view is not checked")),
    }
    assert!(
        !is_static_elf("/bin/sh"),
        "/bin/sh is dynamic on this system"
    );
    let p = free_port();
    let f = run(command(bin, &["127.0.0.1", &p.to_string()]));
    f.assert_success();
    assert_eq!(f.bound(), vec![v4("127.0.0.1", p)]);
}

#[test]
fn guard_kills_the_whole_tree() {
    let proc = Proc::spawn(command("sh", &["-c", "sleep 30 & sleep 30; wait"]));
    let pid = proc.pid();
    assert!(wait_until(WAIT, || descendants(pid).len() == 2));
    let tree = descendants(pid);
    drop(proc);
    assert!(
        wait_until(WAIT, || tree
            .iter()
            .all(|&p| !matches!(proc_state(p), Some(s) if s != 'Z'))),
        "descendants {tree:?} survived"
    );
}

/// The switch (tests/common/mod.rs): without FORCE_BIND_REQUIRE=all a skip passes
/// and says so in one `SKIPPED` line, even when libtest captures the output; with
/// it, or with any other value, the skip fails with its reason. The old-kernel engine
/// is unavailable when its wrapper's source is missing. The test runs its own binary
/// again, as a child that only skips (`SKIP_AS` says for want of what).
#[test]
fn a_skip_fails_under_force_bind_require_all() {
    const TEST: &str = "a_skip_fails_under_force_bind_require_all";
    const SKIP_AS: &str = "FORCE_BIND_TEST_SKIP_AS";
    const NO_OLDKERNEL_C: &str = "/nonexistent/oldkernel.c";
    match std::env::var(SKIP_AS).as_deref() {
        Ok("made-up") => return skip("a prerequisite this test makes up"),
        Ok("old-kernel") => match Engine::OldKernel.unavailable() {
            Some(why) => return skip(&why),
            None => panic!("the old-kernel engine is available"),
        },
        _ => {}
    }
    let exe = std::env::current_exe().expect("this test binary");
    let child = |lacks: &str, env: &[(&str, &str)]| {
        let mut cmd = command(exe.to_str().expect("utf-8 path"), &["--exact", TEST]);
        cmd.env_remove(REQUIRE)
            .env(SKIP_AS, lacks)
            .env("FORCE_BIND_OLDKERNEL_C", NO_OLDKERNEL_C)
            .envs(env.iter().copied());
        run(cmd)
    };
    let skip_lines = |f: &Finished| -> Vec<String> {
        f.stderr_lines()
            .into_iter()
            .filter(|l| l.contains("SKIPPED"))
            .map(String::from)
            .collect()
    };
    assert!(!Path::new(NO_OLDKERNEL_C).exists());

    // Without the switch (CI=true alone is not it): a pass that says it skipped.
    for env in [&[][..], &[("CI", "true")]] {
        let f = child("made-up", env);
        assert_eq!(f.code(), Some(0), "{env:?}: a skip passes\n{f}");
        assert_eq!(
            skip_lines(&f),
            [format!("SKIPPED {TEST}: a prerequisite this test makes up")],
            "{f}"
        );
    }
    let f = child("old-kernel", &[]);
    assert_eq!(f.code(), Some(0), "{f}");
    assert_eq!(
        skip_lines(&f),
        [format!(
            "SKIPPED {TEST}: {NO_OLDKERNEL_C} not found (the shared VM tools; \
             set FORCE_BIND_OLDKERNEL_C to its oldkernel.c)"
        )],
        "{f}"
    );

    // With it, or a misspelt one: a failure that says why, and no SKIPPED line.
    for (lacks, why) in [
        ("made-up", "a prerequisite this test makes up"),
        ("old-kernel", "/nonexistent/oldkernel.c not found"),
    ] {
        for value in ["all", "1"] {
            let f = child(lacks, &[(REQUIRE, value)]);
            assert_eq!(
                f.code(),
                Some(101),
                "{REQUIRE}={value}: the skip must fail\n{f}"
            );
            let said = format!("{}{}", f.stdout, f.stderr);
            assert!(said.contains(why), "{REQUIRE}={value}: the reason\n{f}");
            assert_eq!(skip_lines(&f), Vec::<String>::new(), "{f}");
        }
    }
}
