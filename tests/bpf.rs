//! tests/bpf.rs: the bpf engine (issue 13) on real programs: cgroup programs decide
//! in the kernel, so what is checked is what the kernel bound (bindprobe's
//! getsockname, /proc/net/tcp* of a private network namespace, a real connection).
//! Every test that binds a wildcard runs in a network namespace of its own.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::servers::*;
use common::*;

/// `force-bind --engine bpf ARGS...` in a new network namespace.
fn bpf_in_netns(args: &[&str]) -> std::process::Command {
    in_new_netns(&[], force_bind(Engine::Bpf, args))
}

fn probe(rules: &[&str], probe_args: &[&str]) -> Finished {
    let mut args = rules.to_vec();
    args.push(bindprobe());
    args.extend_from_slice(probe_args);
    run(bpf_in_netns(&args))
}

bpf_test! {
    /// Each family to its own address, the port kept; a v4-mapped bind is IPv4 and
    /// gets the IPv4 address in mapped form; a port-0 bind keeps port 0.
    fn rewrites_each_family_mapped_and_port_zero() {
        let p = free_port();
        let ps = p.to_string();
        let rules = ["-b", "127.0.0.2", "-b", "[::1]"];
        let f = probe(&rules, &["--family", "4", "--addr", "0.0.0.0", "--port", &ps]);
        assert_eq!(single_bound(&f), v4("127.0.0.2", p), "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::1", p), "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--v6only", "1", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::1", p), "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::ffff:0.0.0.0", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::ffff:127.0.0.2", p), "{f}");
        let f = probe(&rules, &["--family", "4", "--addr", "0.0.0.0", "--port", "0"]);
        let got = single_bound(&f);
        assert_eq!(got.ip(), v4("127.0.0.2", 0).ip(), "{f}");
        assert_ne!(got.port(), 0, "{f}");
        let f = probe(&rules, &["--udp", "--family", "4", "--addr", "0.0.0.0", "--port", &ps]);
        assert_eq!(single_bound(&f), v4("127.0.0.2", p), "{f}");
    }

    /// `-d -m :P=allow`: P binds, any other port is denied (EPERM); a port-0 bind
    /// goes through and its listen() is judged on the port it got (denied).
    fn deny_all_but_one_port() {
        let (p, q) = (free_port(), free_port());
        let ports = format!("{p},{q}");
        let rules = ["-d", "-m", &format!(":{p}=allow")];
        let f = probe(&rules, &["--port", &ports]);
        assert_eq!(f.probe()[..2], [Probe::Bound(v4("127.0.0.1", p)), Probe::Error(libc::EPERM)], "{f}");
        let f = probe(&rules, &["--family", "6", "--port", &ports]);
        assert_eq!(f.probe()[..2], [Probe::Bound(v6("::1", p)), Probe::Error(libc::EPERM)], "{f}");
        let f = probe(&rules, &["--port", "0", "--listen"]);
        let probes = f.probe();
        assert!(
            matches!(probes.as_slice(), [Probe::Bound(a), Probe::Error(libc::EPERM), ..] if a.port() != 0),
            "a port-0 bind goes through and its listen is denied\n{f}"
        );
        // A socket bound on the allowed port listens.
        let f = probe(&rules, &["--port", &p.to_string(), "--listen"]);
        assert_eq!(f.probe()[..1], [Probe::Bound(v4("127.0.0.1", p))], "{f}");
        assert!(!f.stdout.contains("error"), "{f}");
    }

    /// An IPv4 rule alone: a dual-stack `[::]` bind meets it and is rewritten to
    /// the mapped address, an IPv6-only one is not, as decide says; bind6 reads the
    /// socket's IPV6_V6ONLY, and -v says where it found the bit.
    fn ipv4_rule_alone_decides_wildcard_by_ipv6only() {
        let p = free_port();
        let ps = p.to_string();
        let rules = ["-b", "127.0.0.2"];
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--v6only", "0", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::ffff:127.0.0.2", p), "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--v6only", "1", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::", p), "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--v6only", "0", "--port", "0"]);
        assert_eq!(single_bound(&f).ip(), v6("::ffff:127.0.0.2", 0).ip(), "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::1", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::1", p), "{f}");
        let f = probe(&rules, &["--udp", "--family", "6", "--addr", "::", "--v6only", "0", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::ffff:127.0.0.2", p), "{f}");
        // A deny of IPv4 port P: a dual [::]:P is denied, a v6only one binds.
        let rules = ["-m", &format!("0.0.0.0:{p}/0=deny")];
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--v6only", "0", "--port", &ps]);
        assert_eq!(f.probe()[..1], [Probe::Error(libc::EPERM)], "{f}");
        let f = probe(&rules, &["--family", "6", "--addr", "::", "--v6only", "1", "--port", &ps]);
        assert_eq!(single_bound(&f), v6("::", p), "{f}");
        let mut args = vec!["-v", "-b", "127.0.0.2"];
        args.push("true");
        let f = run(force_bind(Engine::Bpf, &args));
        f.assert_success();
        assert!(f.stderr.contains("IPV6_V6ONLY read from bit") && f.stderr.contains("post_bind6"), "{f}");
    }

    /// `-b 127.0.0.2` alone on real dual-stack servers (nginx `ipv6only=off`, node,
    /// a static Go binary, python3 --bind ::): each listens on ::ffff:127.0.0.2:P
    /// only (/proc/net/tcp6), answers there over IPv4, and not on 127.0.0.1 or ::1,
    /// where a dual-stack [::] would also answer.
    fn ipv4_rule_alone_on_dual_stack_servers() {
        let p = free_port();
        let nginx_dir = tmp_path("bpf-nginx");
        let servers: Vec<(&str, Option<Vec<String>>)> = vec![
            ("nginx", find_program("nginx").map(|nginx| {
                fs::create_dir_all(&nginx_dir).expect("nginx dir");
                let conf = nginx_dir.join("nginx.conf");
                let d = nginx_dir.display();
                fs::write(
                    &conf,
                    format!(
                        "daemon off; master_process on; worker_processes 1; user root; pid {d}/nginx.pid;\n\
                         error_log stderr notice; events {{ worker_connections 64; }}\n\
                         http {{ access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/px;\n\
                         fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n\
                         server {{ listen [::]:{p} ipv6only=off; location / {{ return 200 \"ok\\n\"; }} }} }}\n"
                    ),
                )
                .expect("nginx.conf");
                [nginx.as_str(), "-p", &d.to_string(), "-e", "stderr", "-c", conf.to_str().unwrap()]
                    .map(String::from)
                    .to_vec()
            })),
            ("node", find_program("node").map(|node| {
                let code = format!("require('http').createServer((q,s)=>s.end('ok')).listen({p})");
                vec![node, "-e".into(), code]
            })),
            ("go", find_program("go").map(|go| vec![gosrv(&go).to_string(), format!(":{p}")])),
            ("python3", Some(
                [python3(), "-m", "http.server", &p.to_string(), "--bind", "::"].map(String::from).to_vec(),
            )),
        ];
        for (name, argv) in servers {
            let Some(argv) = argv else {
                return skip(&format!("{name} is not installed"));
            };
            let mut args = vec!["-b", "127.0.0.2"];
            args.extend(argv.iter().map(String::as_str));
            let mut server = Proc::spawn(bpf_in_netns(&args));
            let want = std::collections::BTreeSet::from([tcp(v6("::ffff:127.0.0.2", p))]);
            wait_listeners(&mut server, &[p], &want);
            let answers = in_netns_of(server.pid(), || {
                [v4("127.0.0.2", p), v4("127.0.0.1", p), v6("::1", p)]
                    .map(|a| (a, std::net::TcpStream::connect_timeout(&a, WAIT).is_ok()))
            });
            assert_eq!(
                answers.map(|a| a.map(|(_, ok)| ok)),
                Ok([true, false, false]),
                "{name}\n{}",
                server.context()
            );
            let status = in_netns_of(server.pid(), || http_get_retry(v4("127.0.0.2", p), WAIT)).and_then(|r| r);
            assert_eq!(status, Ok(200), "{name}\n{}", server.context());
            assert_no_other_listeners(&server, &[p]);
            server.kill();
        }
    }

    /// Without CAP_PERFMON the verifier does not give cgroup programs
    /// bpf_probe_read_kernel: a policy that needs IPV6_V6ONLY is refused (exit 2, one
    /// line, the verifier's reason), found by the load failing.
    fn without_perfmon_the_ipv6only_read_is_refused() {
        let Some(paths) = require(&["setpriv"]) else { return };
        let drop = ["--bounding-set=-sys_admin,-perfmon", "--inh-caps=-sys_admin,-perfmon"];
        let mut args: Vec<&str> = drop.to_vec();
        args.extend([force_bind_bin(), "--engine", "bpf", "-b", "127.0.0.2", "true"]);
        let f = run(command(&paths[0], &args));
        assert_eq!(f.code(), Some(2), "{f}");
        assert_eq!(f.stderr_lines().len(), 1, "{f}");
        assert!(
            f.stderr.contains("dual-stack") && f.stderr.contains("bpf_probe_read_kernel"),
            "{f}"
        );
    }

    /// A port range moves only its own ports; an IPv4 rule with an IPv6 one for
    /// `[::]`.
    fn port_ranges() {
        let p = free_ports(4);
        let rules = ["-b", "[::1]", "-m", &format!("0.0.0.0:{p}-{}/0=127.0.0.3", p + 2)];
        let ports = format!("{},{},{}", p, p + 2, p + 3);
        let f = probe(&rules, &["--addr", "0.0.0.0", "--port", &ports]);
        assert_eq!(
            f.bound(),
            vec![v4("127.0.0.3", p), v4("127.0.0.3", p + 2), v4("0.0.0.0", p + 3)],
            "{f}"
        );
    }

    /// What the programs cannot carry out is refused at start, one line, exit 2.
    fn refuses_what_the_kernel_cannot_do() {
        // A rewrite to [::] where [::] is decided by IPV6_V6ONLY: post_bind6 could
        // not tell it from a raced bind.
        let f = run(force_bind(Engine::Bpf, &["-b", "127.0.0.1", "-m", "[::1]:80=[::]", "true"]));
        assert_eq!(f.code(), Some(2), "{f}");
        assert_eq!(f.stderr_lines().len(), 1, "{f}");
        assert!(f.stderr.contains("rewrite to [::]") && f.stderr.contains("--engine notify"), "{f}");
        let f = run(force_bind(Engine::Bpf, &["-d", "-m", ":40000-40100=deny", "true"]));
        assert_eq!(f.code(), Some(2), "{f}");
        assert!(f.stderr.contains("ip_local_port_range"), "{f}");
        // fd=3 with a socket really passed on fd 3.
        let code = "import os, socket, sys\n\
                    s = socket.socket(); s.bind(('127.0.0.1', 0))\n\
                    os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
                    os.execv(sys.argv[1], sys.argv[1:])\n";
        let cmd = command(
            python3(),
            &["-c", code, force_bind_bin(), "--engine", "bpf", "-b", "[::1]", "-m", ":80=fd=3", "true"],
        );
        let f = run(cmd);
        assert_eq!(f.code(), Some(2), "{f}");
        assert!(f.stderr.contains("inherited socket"), "{f}");
        assert_eq!(f.stderr_lines().len(), 1, "{f}");
    }

    /// Raw, ping and SCTP sockets bind without passing the bind hooks: they cannot
    /// be created under the engine (EPERM from socket()).
    fn sockets_whose_binds_skip_the_hooks_are_refused() {
        let code = "import socket\n\
                    for args in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),\n\
                                 (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),\n\
                                 (socket.AF_INET6, socket.SOCK_STREAM, 132),\n\
                                 (socket.AF_INET, socket.SOCK_STREAM, 0),\n\
                                 (socket.AF_INET6, socket.SOCK_DGRAM, 0)]:\n    \
                        try:\n        \
                            socket.socket(*args).close(); print('ok')\n    \
                        except OSError as e:\n        \
                            print('errno', e.errno)\n";
        let mut args = vec!["-b", "[::1]"];
        args.extend(python_args(code, &[]));
        let f = run(force_bind(Engine::Bpf, &args));
        f.assert_success();
        let lines: Vec<&str> = f.stdout.lines().collect();
        // A ping socket may meet net.ipv4.ping_group_range (EACCES) before the hook,
        // and an SCTP one a kernel without SCTP (EPROTONOSUPPORT); raw is the hook's.
        assert!(
            matches!(
                lines.as_slice(),
                ["errno 1", "errno 1" | "errno 13", "errno 1" | "errno 93", "ok", "ok"]
            ),
            "{f}"
        );
    }

    /// io_uring's IORING_OP_BIND goes through the bind hooks: allowed where the
    /// policy does not judge listen() (no seccomp filter at all), and rewritten.
    fn io_uring_binds_pass_the_hooks() {
        let p = free_port();
        let ps = p.to_string();
        let uring = example("uring_bind");
        let rules = ["-m", &format!("127.0.0.1:{p}=127.0.0.5")];
        let mut args = rules.to_vec();
        args.extend([uring.as_str(), "127.0.0.1", &ps]);
        let f = run(force_bind(Engine::Bpf, &args));
        assert!(f.stdout.contains("via io_uring"), "{f}");
        assert_eq!(f.bound(), vec![v4("127.0.0.5", p)], "{f}");
        // A policy that judges listen(): io_uring stays refused (IORING_OP_LISTEN's
        // implicit bind would not be), and the fallback bind(2) is rewritten.
        let args = ["-b", "127.0.0.6", "-b", "[::1]", uring.as_str(), "0.0.0.0", &ps];
        let f = run(in_new_netns(&[], force_bind(Engine::Bpf, &args)));
        assert!(f.stdout.contains("io_uring error 38") && f.stdout.contains("via bind"), "{f}");
        assert_eq!(f.bound(), vec![v4("127.0.0.6", p)], "{f}");
        // --allow-io-uring: its binds are still the kernel's to judge.
        let args = ["--allow-io-uring", "-b", "127.0.0.6", "-b", "[::1]", uring.as_str(), "0.0.0.0", &ps];
        let f = run(in_new_netns(&[], force_bind(Engine::Bpf, &args)));
        assert!(f.stdout.contains("via io_uring"), "{f}");
        assert_eq!(f.bound(), vec![v4("127.0.0.6", p)], "{f}");
    }

    /// python3 -m http.server (a dual-stack `[::]` socket) and with --bind 0.0.0.0,
    /// served where the rules say, checked in /proc/net and with a real request.
    fn python_http_server() {
        // Python 3.11 binds 0.0.0.0 by default; --bind :: is a dual-stack socket.
        for (bind, want) in [(None, v4("127.0.0.2", 0)), (Some("::"), v6("::1", 0))] {
            let p = free_port();
            let ps = p.to_string();
            let mut args = vec!["-b", "127.0.0.2", "-b", "[::1]", python3(), "-m", "http.server", &ps];
            if let Some(b) = bind {
                args.extend(["--bind", b]);
            }
            let mut server = Proc::spawn(bpf_in_netns(&args));
            let mut want = want;
            want.set_port(p);
            let listeners = std::collections::BTreeSet::from([tcp(want)]);
            wait_listeners(&mut server, &[p], &listeners);
            let status = in_netns_of(server.pid(), || http_get_retry(want, WAIT)).and_then(|r| r);
            assert_eq!(status, Ok(200), "{}", server.context());
            assert_no_other_listeners(&server, &[p]);
            server.kill();
        }
    }

    /// socat listening on 0.0.0.0 is moved to 127.0.0.2 and answers there.
    fn socat_listener() {
        let Some(paths) = require(&["socat"]) else { return };
        let p = free_port();
        let listen = format!("TCP4-LISTEN:{p},bind=0.0.0.0,reuseaddr,fork");
        let args = ["-b", "127.0.0.2", "-b", "[::1]", paths[0].as_str(), &listen, "SYSTEM:echo hello"];
        let mut server = Proc::spawn(bpf_in_netns(&args));
        let want = std::collections::BTreeSet::from([tcp(v4("127.0.0.2", p))]);
        wait_listeners(&mut server, &[p], &want);
        let got = in_netns_of(server.pid(), || {
            let mut s = std::net::TcpStream::connect_timeout(&v4("127.0.0.2", p), WAIT)?;
            s.set_read_timeout(Some(WAIT))?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut s, &mut text)?;
            Ok::<_, std::io::Error>(text)
        });
        assert_eq!(got.map(|r| r.map_err(|e| e.to_string())), Ok(Ok("hello\n".into())), "{}", server.context());
        server.kill();
    }

    /// A SIGKILLed force-bind leaves its programs on the cgroup: the program's later
    /// binds are still rewritten and denied. The next run removes the cgroup once
    /// nothing is left in it.
    fn sigkilled_force_bind_leaves_the_policy_in_force() {
        let (p, q) = (free_port(), free_port());
        let go = tmp_path("bpf-go");
        let out = tmp_path("bpf-out");
        let _ = fs::remove_file(&go);
        let _ = fs::remove_file(&out);
        let code = "import os, socket, sys, time\n\
                    go, out, p, q = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n\
                    print('started', flush=True)\n\
                    end = time.time() + 10\n\
                    while not os.path.exists(go) and time.time() < end: time.sleep(0.01)\n\
                    lines = []\n\
                    for port in (p, q):\n    \
                        s = socket.socket()\n    \
                        try:\n        \
                            s.bind(('127.0.0.1', port)); lines.append('bound %s:%d' % s.getsockname())\n    \
                        except OSError as e:\n        \
                            lines.append('error %d' % e.errno)\n\
                    open(out + '.tmp', 'w').write('\\n'.join(lines) + '\\n')\n\
                    os.rename(out + '.tmp', out)\n";
        let (ps, qs) = (p.to_string(), q.to_string());
        let rule = format!("127.0.0.1:{p}=127.0.0.4");
        let mut args = vec!["-d", "-m", &rule];
        let (g, o) = (go.to_str().unwrap(), out.to_str().unwrap());
        args.extend(python_args(code, &[g, o, &ps, &qs]));
        let mut server = Proc::spawn(force_bind(Engine::Bpf, &args));
        assert!(server.wait_line(|l| l == "started", WAIT).is_some(), "{}", server.context());
        let cgroup = cgroup_of_child(server.pid());
        send_signal(server.pid(), libc::SIGKILL);
        assert!(server.wait_timeout(WAIT).is_some(), "force-bind still runs");
        fs::write(&go, "").unwrap();
        assert!(wait_until(WAIT, || out.exists()), "the program did not bind\n{}", server.context());
        let text = fs::read_to_string(&out).unwrap();
        assert_eq!(text, format!("bound 127.0.0.4:{p}\nerror 1\n"), "{}", server.context());
        // The program has exited: the next run removes what the killed one left.
        let cgroup = cgroup.expect("the program's cgroup");
        assert!(cgroup.exists(), "{}", cgroup.display());
        let deadline = Instant::now() + WAIT;
        while cgroup.exists() && Instant::now() < deadline {
            run(force_bind(Engine::Bpf, &["-b", "[::1]", "true"])).assert_success();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!cgroup.exists(), "{} was not removed", cgroup.display());
        drop(server);
        let _ = fs::remove_file(&go);
        let _ = fs::remove_file(&out);
    }

    /// A root program cannot leave its cgroup or take the programs off it: the
    /// cgroup2 mounts are read-only in its mount namespace, BPF_PROG_DETACH without
    /// the programs' descriptors fails (they are BPF_F_ALLOW_MULTI) and
    /// BPF_PROG_GET_FD_BY_ID needs the CAP_SYS_ADMIN it no longer has; its binds
    /// stay policed.
    fn a_root_program_cannot_leave_the_policy() {
        let code = "import ctypes, os, socket, struct\n\
                    libc = ctypes.CDLL(None, use_errno=True)\n\
                    path = [l for l in open('/proc/self/mountinfo') if ' - cgroup2 ' in l][0].split()[4]\n\
                    own = open('/proc/self/cgroup').read().splitlines()[-1][3:]\n\
                    try:\n    \
                        open(path + '/cgroup.procs', 'w').write(str(os.getpid())); print('moved')\n\
                    except OSError as e:\n    \
                        print('move errno', e.errno)\n\
                    fd = os.open(path + own, os.O_RDONLY)\n\
                    for t in (2, 8, 9):\n    \
                        a = ctypes.create_string_buffer(struct.pack('IIII', fd, 0, t, 0))\n    \
                        print('detach', libc.syscall(321, 9, a, 16), ctypes.get_errno())\n\
                    a = ctypes.create_string_buffer(struct.pack('IIII', 1, 0, 0, 0))\n\
                    print('get_fd_by_id', libc.syscall(321, 13, a, 16), ctypes.get_errno())\n\
                    s = socket.socket(); s.bind(('127.0.0.1', 0)); print('bound', s.getsockname()[0])\n";
        let mut args = vec!["-b", "127.0.0.2", "-b", "[::1]"];
        args.extend(python_args(code, &[]));
        let f = run(force_bind(Engine::Bpf, &args));
        f.assert_success();
        assert_eq!(
            f.stdout.lines().collect::<Vec<_>>(),
            [
                "move errno 30",
                "detach -1 22",
                "detach -1 22",
                "detach -1 22",
                "get_fd_by_id -1 1",
                "bound 127.0.0.2"
            ],
            "{f}"
        );
    }

    /// -v names the engine and what it does with listen().
    fn verbose_names_the_engine() {
        let f = run(force_bind(Engine::Bpf, &["-v", "-b", "[::1]", "true"]));
        f.assert_success();
        assert!(f.stderr.contains("bpf engine: cgroup "), "{f}");
        // Bind events come from the event programs' ring buffer (tests/bpf_events.rs).
        assert!(!f.stderr.contains("no bind events"), "{f}");
        let f = run(force_bind_plain(&["-V"]));
        assert!(f.stdout.contains("; bpf ("), "{f}");
    }
}

/// The cgroup directory force-bind's child (the program) is in, from
/// /proc/PID/cgroup and the cgroup2 mount.
fn cgroup_of_child(force_bind: i32) -> Option<std::path::PathBuf> {
    let child = *children_of(force_bind).first()?;
    let text = fs::read_to_string(format!("/proc/{child}/cgroup")).ok()?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .to_string();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split_whitespace().nth(4).map(String::from))?
    })?;
    let dir = Path::new(&mount).join(path.trim_start_matches('/'));
    dir.file_name()?
        .to_str()?
        .starts_with("force-bind-")
        .then_some(dir)
}
