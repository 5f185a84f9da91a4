//! tests/activation.rs: `fd=N` / `sd=N` / `sd=NAME` targets with systemd-socket-activate,
//! `-L`, LISTEN_PID checking and the clean-up of LISTEN_* in the program's environment.

mod common;

use common::*;
use std::net::{SocketAddr, TcpStream};

/// python's http.server calls listen(5) (socketserver.TCPServer.request_queue_size).
const PYTHON_BACKLOG: u32 = 5;

/// Runs `python3 -m http.server Q --bind 127.0.0.1` under
/// `systemd-socket-activate -l 127.0.0.1:P SA_ARGS force-bind FB_ARGS`, where FB_ARGS
/// redirect Q to the passed socket; checks that a GET on P is served and nothing
/// listens on Q. Returns the server and P so callers can check more; None under
/// bpf, which refuses to put a passed socket in place (asserted here).
fn served_on_passed_socket(
    engine: Engine,
    sa_args: &[&str],
    fb_args: &[&str],
    q: u16,
) -> Option<(Proc, SocketAddr)> {
    let p = free_port();
    let listen = v4("127.0.0.1", p);
    let q_s = q.to_string();
    let mut args = fb_args.to_vec();
    args.extend_from_slice(&[python3(), "-m", "http.server", &q_s, "--bind", "127.0.0.1"]);
    let server = Proc::spawn(socket_activate(listen, sa_args, engine, &args));
    assert!(wait_for_listen(listen, WAIT), "{}", server.context());
    if engine == Engine::Bpf {
        // force-bind refuses at once: the connection may be reset.
        let _trigger = TcpStream::connect_timeout(&listen, WAIT);
        assert_bpf_refused(&server.finish(WAIT));
        return None;
    }
    // The first connection makes systemd-socket-activate exec force-bind; it waits in
    // the accept queue until the server runs.
    assert_eq!(
        http_get_retry(listen, WAIT),
        Ok(200),
        "{}",
        server.context()
    );
    assert_eq!(
        tcp_listeners_on(q),
        vec![],
        "the program bound its own port\n{}",
        server.context()
    );
    assert_eq!(tcp_listeners_on(p), vec![listen], "{}", server.context());
    Some((server, listen))
}

/// Under bpf, force-bind refused the policy (a replacement of a passed socket):
/// exit 2, one line of its own.
#[track_caller]
fn assert_bpf_refused(f: &Finished) {
    assert_eq!(
        f.code(),
        Some(2),
        "the bpf engine should refuse this policy\n{f}"
    );
    let lines = force_bind_lines(f);
    assert_eq!(lines.len(), 1, "{f}");
    assert!(
        lines[0].contains("--engine bpf: ") && lines[0].contains("inherited socket"),
        "{f}"
    );
}

/// Runs `systemd-socket-activate -l 127.0.0.1:P SA_ARGS force-bind FB_ARGS` (the
/// program in FB_ARGS runs to its end once a connection triggers the activation).
fn activated(engine: Engine, sa_args: &[&str], fb_args: &[&str]) -> Finished {
    activated_on(engine, sa_args, fb_args).0
}

/// `activated`, and the address of the passed socket.
fn activated_on(engine: Engine, sa_args: &[&str], fb_args: &[&str]) -> (Finished, SocketAddr) {
    let listen = v4("127.0.0.1", free_port());
    let proc = Proc::spawn(socket_activate(listen, sa_args, engine, fb_args));
    assert!(wait_for_listen(listen, WAIT), "{}", proc.context());
    let trigger = TcpStream::connect_timeout(&listen, WAIT);
    // Under bpf a refused policy ends force-bind at once: the connection may be reset.
    assert!(
        trigger.is_ok() || engine == Engine::Bpf,
        "trigger activation: {trigger:?}"
    );
    (proc.finish(WAIT), listen)
}

/// force-bind's own stderr lines (not systemd-socket-activate's).
fn force_bind_lines(f: &Finished) -> Vec<&str> {
    f.stderr
        .lines()
        .filter(|l| l.starts_with("force-bind: "))
        .collect()
}

/// The program's PID, as bindprobe reports it (`... pid=N`).
fn probe_pid(f: &Finished) -> i32 {
    f.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the probe's output\n{f}"))
}

engine_tests! {
    fn sd_index_replaces_the_programs_socket(engine: Engine) {
        let q = free_port();
        let Some((server, _)) = served_on_passed_socket(engine, &[], &["-m", &format!(":{q}=sd=0")], q) else {
            return;
        };
        let f = server.kill();
        assert!(!f.stderr.contains("panicked"), "{f}");
    }

    fn sd_index_dash_form(engine: Engine) {
        let q = free_port();
        served_on_passed_socket(engine, &[], &["-m", &format!(":{q}=sd-0")], q);
    }

    fn sd_name_picks_by_listen_fdnames(engine: Engine) {
        let q = free_port();
        served_on_passed_socket(engine, &["--fdname=web"], &["-m", &format!(":{q}=sd=web")], q);
    }

    fn second_passed_socket_by_index_and_name(engine: Engine) {
        let (a, b) = (free_port(), free_port());
        let (first, second) = (v4("127.0.0.1", a), v4("127.0.0.1", b));
        for target in ["sd=1", "sd=two"] {
            let q = free_port();
            let (q_s, rule) = (q.to_string(), format!(":{q}={target}"));
            let (first_s, second_s) = (first.to_string(), second.to_string());
            let mut args = vec!["-l", &first_s, "-l", &second_s, "--fdname=one:two"];
            args.push(force_bind_bin());
            args.extend_from_slice(engine.args());
            args.extend_from_slice(&["-m", &rule]);
            args.extend_from_slice(&[python3(), "-m", "http.server", &q_s, "--bind", "127.0.0.1"]);
            let server = Proc::spawn(command("systemd-socket-activate", &args));
            assert!(wait_for_listen(second, WAIT), "{}", server.context());
            if engine == Engine::Bpf {
                let _trigger = TcpStream::connect_timeout(&second, WAIT);
                assert_bpf_refused(&server.finish(WAIT));
                continue;
            }
            assert_eq!(http_get_retry(second, WAIT), Ok(200), "{target}\n{}", server.context());
            assert_eq!(tcp_listeners_on(q), vec![], "{target}\n{}", server.context());
        }
    }

    fn fd_number_replaces_the_programs_socket(engine: Engine) {
        let q = free_port();
        served_on_passed_socket(engine, &[], &["-m", &format!(":{q}=fd=3")], q);
        let q = free_port();
        served_on_passed_socket(engine, &[], &["-m", &format!(":{q}=fd-3")], q);
    }

    fn program_listen_reaches_the_passed_socket_without_l(engine: Engine) {
        let q = free_port();
        let rule = format!(":{q}=sd=0");
        let Some((server, listen)) = served_on_passed_socket(engine, &[], &["-m", &rule], q) else {
            return;
        };
        assert_eq!(listen_backlog(listen), Some(PYTHON_BACKLOG), "{}", server.context());
    }

    fn l_skips_listen_on_the_passed_socket(engine: Engine) {
        let q = free_port();
        let rule = format!(":{q}=sd=0");
        let Some((server, listen)) = served_on_passed_socket(engine, &[], &["-L", "-m", &rule], q) else {
            return;
        };
        // systemd-socket-activate listened with its own (large) backlog; with -L the
        // program's listen(5) never reaches the socket.
        let backlog = listen_backlog(listen);
        assert!(
            matches!(backlog, Some(b) if b != PYTHON_BACKLOG),
            "backlog {backlog:?}\n{}",
            server.context()
        );
    }

    fn wrong_listen_pid_is_not_honoured(engine: Engine) {
        let (p, q) = (free_port(), free_port());
        let listen = v4("127.0.0.1", p);
        let (p_s, q_s, rule) = (listen.to_string(), q.to_string(), format!(":{q}=sd=0"));
        // systemd-socket-activate passes fd 3 with LISTEN_FDS=1, but `env` overrides
        // LISTEN_PID, so the fds are not meant for force-bind.
        let mut args = vec!["-l", &p_s, "env", "LISTEN_PID=1", force_bind_bin()];
        args.extend_from_slice(engine.args());
        args.extend_from_slice(&["-v", "-m", &rule]);
        args.extend_from_slice(&[python3(), "-m", "http.server", &q_s, "--bind", "127.0.0.1"]);
        let server = Proc::spawn(command("systemd-socket-activate", &args));
        assert!(wait_for_listen(listen, WAIT), "{}", server.context());
        let _trigger = TcpStream::connect_timeout(&listen, WAIT).expect("trigger activation");
        let own = v4("127.0.0.1", q);
        assert!(wait_for_listen(own, WAIT), "program did not bind normally\n{}", server.context());
        assert_eq!(http_get_retry(own, WAIT), Ok(200), "{}", server.context());
        assert!(server.wait_stderr("not passed", WAIT), "{}", server.context());
    }

    fn missing_fd_falls_back_to_a_normal_bind(engine: Engine) {
        let no_activation = "no socket activation: LISTEN_FDS and LISTEN_PID are not set for force-bind";
        for (target, why) in [
            ("fd=97", "fd 97 was not passed to force-bind (no open socket there)"),
            ("sd=0", no_activation),
            ("sd=web", no_activation),
        ] {
            let q = free_port();
            let rule = format!(":{q}={target}");
            let port = q.to_string();
            // At the default verbosity: one start-up line for the rule, and one for
            // the bind that it could not decide. Under bpf the start-up line alone:
            // the rule is left out of the programs, and without -v no bind is
            // reported from the kernel.
            let f = run(force_bind(engine, &["-m", &rule, bindprobe(), "--port", &port]));
            f.assert_success();
            assert_eq!(f.bound(), vec![v4("127.0.0.1", q)], "{f}");
            let pid = probe_pid(&f);
            let mut want = vec![format!("force-bind: warning: rule '-m {rule}': {why}")];
            if engine != Engine::Bpf {
                want.push(format!("force-bind: warning: pid {pid} (bindprobe): bind tcp fd 4 127.0.0.1:{q}: rule '-m {rule}' skipped: {target} was not passed; bound as asked"));
            }
            assert_eq!(f.stderr_lines(), want, "{f}");
            let f = run(force_bind(engine, &["-v", "-m", &rule, bindprobe(), "--port", &port]));
            assert_eq!(f.bound(), vec![v4("127.0.0.1", q)], "{f}");
            assert!(f.stderr.contains("not passed"), "{f}");
            f.assert_success();
        }
    }

    /// A replace rule that cannot be carried out is skipped and the next rule
    /// decides: `-d -m :Q=sd=0` without activation denies.
    fn unpassed_socket_leaves_the_bind_to_the_next_rule(engine: Engine) {
        let q = free_port();
        let (rule, port) = (format!(":{q}=sd=0"), q.to_string());
        let f = run(force_bind(engine, &["-d", "-m", &rule, bindprobe(), "--port", &port]));
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        assert_eq!(
            f.stderr_lines(),
            vec![format!("force-bind: warning: rule '-m {rule}': no socket activation: LISTEN_FDS and LISTEN_PID are not set for force-bind")],
            "one start-up line; the bind was decided, so no more\n{f}"
        );
        let f = run(force_bind(engine, &["-b", "127.0.0.5", "-m", &rule, bindprobe(), "--port", &port]));
        assert_eq!(f.bound(), vec![v4("127.0.0.5", q)], "{f}");
    }

    /// sd=NAME with a name that was not passed: the start-up line lists the names
    /// and suggests the nearest, and the program binds as asked.
    fn misspelled_socket_name_is_pointed_out(engine: Engine) {
        let q = free_port();
        let (rule, port) = (format!(":{q}=sd=wbe"), q.to_string());
        let f = activated(engine, &["--fdname=web"], &["-m", &rule, bindprobe(), "--port", &port]);
        f.assert_success();
        assert_eq!(f.bound(), vec![v4("127.0.0.1", q)], "{f}");
        let lines = force_bind_lines(&f);
        let startup = format!("force-bind: warning: rule '-m {rule}': no socket named 'wbe' was passed (LISTEN_FDNAMES=web); did you mean sd=web?");
        assert_eq!(lines.iter().filter(|l| **l == startup).count(), 1, "{f}");
        assert_eq!(lines[0], startup, "{f}");
    }

    /// A port-0 bind is not a service bind: a replace rule whose MATCH does not name
    /// port 0 leaves it alone, while the program's bind of a real port is replaced.
    fn port_zero_bind_is_not_replaced_unless_the_match_names_it(engine: Engine) {
        let q = free_port();
        let ports = format!("0,{q}");
        let (f, listen) = activated_on(engine, &[], &["-m", "127.0.0.1=sd=0", bindprobe(), "--port", &ports]);
        if engine == Engine::Bpf {
            return assert_bpf_refused(&f);
        }
        f.assert_success();
        let bound = f.bound();
        assert_eq!(bound.len(), 2, "{f}");
        assert_eq!(bound[0].ip(), listen.ip(), "{f}");
        assert!(bound[0].port() != 0 && bound[0] != listen, "port 0 bound on its own\n{f}");
        assert_eq!(bound[1], listen, "the bind of {q} is replaced\n{f}");
        let (f, listen) = activated_on(engine, &[], &["-m", ":0=sd=0", bindprobe(), "--port", "0"]);
        assert_eq!(f.bound(), vec![listen], "{f}");
    }

    /// A passed socket of another family or type is never put in place of the
    /// program's: the rule is skipped (a warning says why when no other rule
    /// decides), and the bind goes through as asked or as the next rule says.
    fn passed_socket_of_another_kind_is_skipped(engine: Engine) {
        // IPv6 stream bind; the passed socket is IPv4 stream.
        let q = free_port();
        let (rule, port) = (format!(":{q}=sd=0"), q.to_string());
        let args = ["-m", &rule, bindprobe(), "--family", "6", "--addr", "::1", "--port", &port, "--listen"];
        let f = activated(engine, &[], &args);
        if engine == Engine::Bpf {
            return assert_bpf_refused(&f);
        }
        f.assert_success();
        assert_eq!(f.bound(), vec![v6("::1", q)], "bound as asked\n{f}");
        let pid = probe_pid(&f);
        assert_eq!(
            force_bind_lines(&f),
            vec![format!("force-bind: warning: pid {pid} (bindprobe): bind tcp fd 5 [::1]:{q}: rule '-m {rule}' skipped: no sd=0 socket is an IPv6 stream socket (fd 3: IPv4 stream); bound as asked")],
            "{f}"
        );
        assert!(!f.stderr.contains("same kind"), "{f}");

        // IPv4 datagram bind: the next rule decides, without a warning.
        let f = activated(engine, &[], &["-d", "-m", &rule, bindprobe(), "--udp", "--port", &port]);
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        assert_eq!(force_bind_lines(&f), Vec::<&str>::new(), "{f}");
        let f = activated(engine, &[], &["-b", "127.0.0.5", "-m", &rule, bindprobe(), "--udp", "--port", &port]);
        assert_eq!(f.bound(), vec![v4("127.0.0.5", q)], "{f}");
        f.assert_success();
    }

    fn listen_variables_are_removed_from_the_program(engine: Engine) {
        let p = free_port();
        let listen = v4("127.0.0.1", p);
        let q = free_port();
        let rule = format!(":{q}=sd=web");
        // systemd-socket-activate passes only the variables it is told to (-E).
        let sa_args = ["--fdname=web", "-E", "FORCE_BIND_TEST_MARK=kept"];
        let cmd = socket_activate(listen, &sa_args, engine, &["-m", &rule, "sh", "-c", "env"]);
        let mut proc = Proc::spawn(cmd);
        assert!(wait_for_listen(listen, WAIT), "{}", proc.context());
        let trigger = TcpStream::connect_timeout(&listen, WAIT);
        // Under bpf force-bind refuses at once, and the passed socket may close
        // under the connection.
        assert!(trigger.is_ok() || engine == Engine::Bpf, "trigger activation: {trigger:?}");
        assert!(proc.wait_timeout(WAIT).is_some(), "{}", proc.context());
        let f = proc.finish(WAIT);
        if engine == Engine::Bpf {
            return assert_bpf_refused(&f);
        }
        f.assert_success();
        assert!(f.stdout.contains("FORCE_BIND_TEST_MARK=kept"), "env did not run\n{f}");
        for var in ["LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES="] {
            assert!(!f.stdout.lines().any(|l| l.starts_with(var)), "{var} leaked\n{f}");
        }
    }
}
