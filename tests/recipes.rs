//! tests/recipes.rs: the README's recipes, run as written. Each test takes its command
//! line from the shipped file (packaging/systemd/*) or from the README block marked
//! `<!-- recipe: NAME -->`, so the documentation cannot drift from what works.
//!
//! The recipes use fixed ports (80, 8000) and addresses (a ULA on a dummy interface),
//! so each runs in a network namespace of its own (`unshare -n`, which needs root;
//! skipped, saying so, without it). What the kernel bound is read from
//! /proc/PID/net/tcp{,6}, which shows the namespace of PID, and HTTP clients connect
//! from a thread that joined that namespace.

mod common;

use common::*;
use std::fs;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;

/// The value of `Key=` in a unit file (one line, as the recipes write it).
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    unit.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in\n{unit}"))
        .to_string()
}

/// Splits a command line as sh (and systemd's ExecStart=) do for these recipes:
/// whitespace, '...' and "..." quotes, backslash escapes and line continuations.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
            },
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The command of a systemd unit's ExecStart=, with /usr/bin/force-bind replaced by
/// the binary under test.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit_value(unit, "ExecStart");
    assert!(
        !line.contains('%') && !line.contains('$'),
        "the test does not expand systemd specifiers or variables: {line}"
    );
    let mut words = shell_words(&line);
    assert_eq!(words[0], "/usr/bin/force-bind", "{line}");
    words[0] = force_bind_bin().to_string();
    words
}

/// Why network namespaces cannot be made here, if they cannot.
fn netns_unavailable() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        let out = Command::new("unshare")
            .args(["-n", "ip", "link", "set", "lo", "up"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "unshare -n failed (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run unshare: {e}")),
        }
    })
    .clone()
}

/// `unshare -n sh -c 'ip link set lo up; SETUP...; exec "$@"' sh ARGS...`: ARGS run
/// in a new network namespace with loopback up, after the SETUP shell commands.
/// `exec` keeps the PID, so the returned Proc's PID is ARGS' own.
fn in_new_netns(setup: &[&str], args: &[String]) -> Proc {
    let mut script = String::from("set -e\nip link set lo up\n");
    for line in setup {
        script.push_str(line);
        script.push('\n');
    }
    script.push_str("exec \"$@\"\n");
    let mut all = vec!["-n", "sh", "-c", &script, "sh"];
    all.extend(args.iter().map(String::as_str));
    Proc::spawn(command("unshare", &all))
}

/// TCP listeners in the network namespace of `pid`.
fn listeners_of(pid: i32) -> Vec<SocketAddr> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .flat_map(|text| parse_proc_net(&text))
        .filter(|s| s.state == TCP_LISTEN)
        .map(|s| s.addr)
        .collect()
}

/// Waits (bounded) until the namespace of `pid` has a listener at `addr`; returns
/// every listener there.
fn wait_listeners(server: &Proc, addr: SocketAddr) -> Vec<SocketAddr> {
    let found = wait_until(WAIT, || listeners_of(server.pid()).contains(&addr));
    assert!(found, "nothing listens at {addr}\n{}", server.context());
    listeners_of(server.pid())
}

/// An HTTP GET of `addr` from inside the network namespace of `pid`.
fn http_get_in(pid: i32, addr: SocketAddr) -> Result<u16, String> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) with a namespace fd we opened; it moves only this
            // thread, which ends right after the request.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            http_get_retry(addr, WAIT)
        })
        .join()
        .expect("client thread")
    })
}

/// An HTTP status that shows a server answered (the recipes serve /srv/www, which
/// need not exist here).
fn served(status: Result<u16, String>, server: &Proc) {
    assert!(
        matches!(status, Ok(200 | 404)),
        "{status:?}\n{}",
        server.context()
    );
}

#[test]
fn readme_shows_the_shipped_units() {
    for unit in [
        "packaging/systemd/webapp-localhost.service",
        "packaging/systemd/webapp-activated.socket",
        "packaging/systemd/webapp-activated.service",
    ] {
        assert_eq!(
            readme_block(unit),
            repo_file(unit),
            "README's copy of {unit}"
        );
    }
}

#[test]
fn shell_words_split_like_sh() {
    assert_eq!(
        shell_words("a -b '[::1]' \"x y\" c\\\n  d"),
        ["a", "-b", "[::1]", "x y", "c", "d"]
    );
}

/// Recipe: a systemd service that binds 0.0.0.0, pinned to 127.0.0.1.
#[test]
fn service_pinned_to_loopback() {
    if let Some(why) = netns_unavailable() {
        return skip(&why);
    }
    let unit = repo_file("packaging/systemd/webapp-localhost.service");
    let server = in_new_netns(&[], &exec_start(&unit));
    let want = v4("127.0.0.1", 8000);
    assert_eq!(
        wait_listeners(&server, want),
        vec![want],
        "{}",
        server.context()
    );
    served(http_get_in(server.pid(), want), &server);
}

/// Recipe: the .socket + .service pair, run by systemd-socket-activate with the
/// socket unit's ListenStream= and FileDescriptorName=.
#[test]
fn socket_activated_service() {
    if let Some(why) = netns_unavailable() {
        return skip(&why);
    }
    let socket = repo_file("packaging/systemd/webapp-activated.socket");
    let service = repo_file("packaging/systemd/webapp-activated.service");
    let listen = unit_value(&socket, "ListenStream");
    let name = unit_value(&socket, "FileDescriptorName");
    let mut args = vec![
        "systemd-socket-activate".to_string(),
        "-l".into(),
        listen.clone(),
        format!("--fdname={name}"),
    ];
    args.extend(exec_start(&service));
    let server = in_new_netns(&[], &args);
    let addr: SocketAddr = listen.parse().expect("ListenStream=IP:PORT");
    wait_listeners(&server, addr);
    // The first connection starts force-bind and the program, which serve it on
    // systemd's socket.
    served(http_get_in(server.pid(), addr), &server);
    assert_eq!(
        listeners_of(server.pid()),
        vec![addr],
        "the program bound its own port\n{}",
        server.context()
    );
}

/// Can this kernel make dummy interfaces (CONFIG_DUMMY)?
fn dummy_interfaces() -> bool {
    Command::new("unshare")
        .args(["-n", "ip", "link", "add", "fb0", "type", "dummy"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The README's container recipe: its host setup (a dummy interface with the ULA)
/// and the force-bind part of its `podman run` line.
fn container_recipe() -> (Vec<String>, Vec<String>) {
    let block = readme_block("container").replace("\\\n", " ");
    let setup: Vec<String> = block
        .lines()
        .filter(|l| l.starts_with("ip "))
        .map(String::from)
        .collect();
    let podman = block
        .lines()
        .find(|l| l.starts_with("podman run") && l.contains("--network host"))
        .expect("a podman run --network host line");
    let words = shell_words(podman);
    let at = words
        .iter()
        .position(|w| w == "force-bind")
        .expect("force-bind");
    let mut force_bind = words[at..].to_vec();
    force_bind[0] = force_bind_bin().to_string();
    (setup, force_bind)
}

/// Recipe: a service on the host's network pinned to a ULA address, in a namespace
/// with a dummy interface carrying an fd00::/8 address and a 127.0.0.0/8 one.
#[test]
fn container_service_pinned_to_ula() {
    if let Some(why) = netns_unavailable() {
        return skip(&why);
    }
    let (mut setup, command_line) = container_recipe();
    assert!(
        setup.iter().any(|l| l.contains("type dummy")) && setup.iter().any(|l| l.contains("fd00:")),
        "{setup:?}"
    );
    setup.push("ip addr add 127.0.0.10/8 dev fb0".into());
    if !dummy_interfaces() {
        // Some kernels (this sandbox's) lack CONFIG_DUMMY. A veth pair with both ends
        // up is the nearest stand-in; DAD is off so the ULA is usable at once, as on
        // a dummy interface (IFF_NOARP skips DAD).
        eprintln!("note: no dummy interfaces in this kernel; using a veth pair");
        setup = setup
            .iter()
            .map(|l| l.replace("type dummy", "type veth peer name fb0peer"))
            .collect();
        setup.insert(
            0,
            "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad".into(),
        );
        setup.push("ip link set fb0peer up".into());
    }
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();

    // As written: python's http.server binds [::]:8000, dual-stack.
    let server = in_new_netns(&setup, &command_line);
    let want = v6("fd00:f0b::10", 8000);
    assert_eq!(
        wait_listeners(&server, want),
        vec![want],
        "{}",
        server.context()
    );
    assert_eq!(
        http_get_in(server.pid(), want),
        Ok(200),
        "{}",
        server.context()
    );
    drop(server);

    // The same options send an IPv4 bind of 0.0.0.0 to 127.0.0.10.
    let at = command_line
        .iter()
        .position(|w| w == "python3")
        .expect("python3");
    let mut probe = command_line[..at].to_vec();
    probe.extend(["-v", bindprobe(), "--addr", "0.0.0.0", "--port", "8000"].map(String::from));
    let f = in_new_netns(&setup, &probe).finish(WAIT);
    assert_eq!(f.bound(), vec![v4("127.0.0.10", 8000)], "{f}");
}

/// Recipe: the CI job's force-bind line, with a stand-in for the project's
/// `./run-tests` that binds 0.0.0.0 and [::], run as written and on an emulated
/// pre-5.0 kernel (what `-p` is for).
#[test]
fn ci_job_on_an_old_distribution() {
    let block = readme_block("ci");
    let line = block
        .lines()
        .find(|l| l.contains("force-bind -p"))
        .expect("a force-bind -p line");
    let words = shell_words(line);
    let at = words
        .iter()
        .position(|w| w == "force-bind")
        .expect("force-bind");
    let mut args: Vec<String> = words[at + 1..].to_vec();
    let program = args.last().cloned().expect("the test command");
    assert!(program.starts_with("./"), "{line}");

    let dir = tmp_path("ci-job");
    fs::create_dir_all(&dir).unwrap();
    let stand_in = dir.join(&program);
    // Real ports: the recipe says they are kept (a port-0 bind keeps port 0 anyway).
    let (p4, p6) = (free_port(), free_port());
    fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\n{probe} --addr 0.0.0.0 --port {p4} || exit\n\
             exec {probe} --family 6 --addr :: --v6only 1 --port {p6}\n",
            probe = bindprobe()
        ),
    )
    .unwrap();
    let chmod = run(command("chmod", &["755", stand_in.to_str().unwrap()]));
    chmod.assert_success();
    *args.last_mut().unwrap() = stand_in.to_str().unwrap().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    for engine in [Engine::Ptrace, Engine::OldKernel] {
        if let Some(why) = engine.unavailable() {
            skip(&format!("{engine:?}: {why}"));
            continue;
        }
        // The line's own -p is kept; the OldKernel variant only adds the wrapper.
        let mut cmd = match engine.wrapper() {
            Some([wrapper, rest @ ..]) => {
                let mut cmd = command(wrapper, &rest);
                cmd.arg(force_bind_bin());
                cmd
            }
            None => command(force_bind_bin(), &[]),
        };
        cmd.args(&args);
        let f = run(cmd);
        f.assert_success();
        assert_eq!(f.bound(), vec![v4("127.0.0.1", p4), v6("::1", p6)], "{f}");
        assert!(f.stderr.contains("engine: ptrace"), "{f}");
    }
}
