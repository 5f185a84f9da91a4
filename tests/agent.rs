//! tests/agent.rs: `force-bind agent` with real OCI runtimes (runc, crun) and real
//! containers: OCI bundles built here from busybox-static and from the host's
//! python3 (/usr mounted read-only), with the seccomp profile `force-bind agent
//! --profile` prints. Each container joins a network namespace this test made (a
//! `sleep` holding it, loopback up), so binds of 0.0.0.0 never touch the host's;
//! what the kernel bound is read from /proc/HOLDER/net/tcp{,6} and real HTTP clients
//! connect from a thread inside that namespace. Runtime state lives under the test's
//! own `--root`, and every container is deleted by its guard.
//!
//! crun 1.8 refuses a hybrid cgroup layout (cgroup v1 controllers with
//! /sys/fs/cgroup/unified); it runs here in a private mount namespace with that
//! mount taken away. A missing runtime, busybox-static, python3, podman or its
//! profile is a skip (a failure under FORCE_BIND_REQUIRE=all; tests/install-deps.sh
//! installs them).

mod common;

use common::servers::{Listener, find_program, in_netns_of, in_new_netns, listeners_of, tcp};
use common::*;
use serde_json::{Value, json};
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    Runc,
    Crun,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
        }
    }

    /// The runtime's path, or a skip.
    fn find(self) -> Option<String> {
        let found = find_program(self.name());
        if found.is_none() {
            skip(&format!(
                "{} not found (tests/install-deps.sh installs it)",
                self.name()
            ));
        }
        found
    }

    /// `RUNTIME --root STATE ARGS...`, run as `wrap` says.
    fn command(self, path: &str, state: &Path, args: &[&str]) -> Command {
        let state = state.to_str().expect("utf-8 path");
        let mut cmd = self.wrap(path, &["--root", state]);
        cmd.args(args);
        cmd
    }

    /// `PROGRAM ARGS...`, where this runtime (run by PROGRAM or by what it starts)
    /// works: crun in a private mount namespace without /sys/fs/cgroup/unified (see
    /// the top of this file).
    fn wrap(self, program: &str, args: &[&str]) -> Command {
        match self {
            Runtime::Runc => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            Runtime::Crun => {
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi; exec \"$@\"",
                    "sh",
                    program,
                ])
                .args(args);
                cmd
            }
        }
    }
}

/// Runs a runtime command to its end (at most 20 s), its output appended to `log`;
/// Err with that output when it fails.
fn run_logged(mut cmd: Command, log: &Path) -> Result<(), String> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open runtime log");
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log"))
        .stderr(file)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            send_signal(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
            return Err(format!("{desc}: no end in 20 s"));
        }
        thread::sleep(STEP);
    };
    if status.success() {
        Ok(())
    } else {
        let out = fs::read_to_string(log).unwrap_or_default();
        Err(format!("{desc}: {status}\n{out}"))
    }
}

// ---------------------------------------------------------------------------
// A test's world: a network namespace, the agent, bundles and containers
// ---------------------------------------------------------------------------

/// What goes in a container.
#[derive(Clone, Copy, Debug)]
enum Image {
    /// /bin/busybox (busybox-static) and /bin/sh.
    Busybox,
    /// The host's /usr, read-only: /usr/bin/python3 and busybox.
    Python,
}

struct Lab {
    runtime: Runtime,
    runtime_path: String,
    dir: PathBuf,
    socket: PathBuf,
    /// `sleep`, holding the network namespace the containers join.
    netns: Proc,
    agent: Option<Proc>,
    n: u32,
}

/// CAP_NET_BIND_SERVICE and what runc's default spec gives besides.
const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn busybox() -> Option<&'static str> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let ok = *FOUND.get_or_init(|| is_static_elf("/bin/busybox"));
    if !ok {
        skip("/bin/busybox is not busybox-static (tests/install-deps.sh installs it)");
    }
    ok.then_some("/bin/busybox")
}

impl Lab {
    /// The namespace and the agent with `agent_args` (its RULES); None: skipped.
    fn new(runtime: Runtime, agent_args: &[&str]) -> Option<Lab> {
        Lab::with_netns(runtime, agent_args, &[])
    }

    /// The same, the namespace set up further by the shell commands `setup`.
    fn with_netns(runtime: Runtime, agent_args: &[&str], setup: &[&str]) -> Option<Lab> {
        let mut lab = Lab::bare(runtime, setup)?;
        lab.start_agent(agent_args);
        Some(lab)
    }

    /// The namespace only: no agent yet.
    fn bare(runtime: Runtime, setup: &[&str]) -> Option<Lab> {
        if let Some(why) = common::servers::namespaces_unavailable() {
            skip(&why);
            return None;
        }
        let runtime_path = runtime.find()?;
        busybox()?;
        let dir = tmp_path(&format!("agent-{}", runtime.name()));
        fs::create_dir_all(&dir).expect("lab dir");
        let socket = dir.join("agent.sock");
        let netns = Proc::spawn(in_new_netns(setup, command("sleep", &["300"])));
        assert!(
            wait_until(WAIT, || {
                fs::read_link(format!("/proc/{}/exe", netns.pid()))
                    .is_ok_and(|exe| exe.ends_with("sleep"))
            }),
            "the namespace holder did not start"
        );
        Some(Lab {
            runtime,
            runtime_path,
            dir,
            socket,
            netns,
            agent: None,
            n: 0,
        })
    }

    fn start_agent(&mut self, agent_args: &[&str]) {
        let socket = self.socket.to_str().unwrap().to_string();
        let mut args = vec!["agent", "--socket", &socket, "--json", "-v"];
        args.extend(agent_args);
        self.wait_agent(Proc::spawn(force_bind_plain(&args)));
    }

    /// Waits for `agent` (or what starts it) to listen on the socket.
    fn wait_agent(&mut self, agent: Proc) {
        assert!(
            wait_until(WAIT, || self.socket.exists()),
            "the agent did not listen\n{}",
            agent.context()
        );
        self.agent = Some(agent);
    }

    fn agent(&self) -> &Proc {
        self.agent.as_ref().expect("agent running")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }

    /// `force-bind agent --profile` for this agent's socket, with `metadata`, merged
    /// into `base` when given.
    fn profile(&self, metadata: &str, base: Option<&str>) -> Value {
        let socket = self.socket.to_str().unwrap();
        let mut args = vec!["agent", "--profile", "--socket", socket];
        if !metadata.is_empty() {
            args.extend(["--metadata", metadata]);
        }
        if let Some(base) = base {
            args.extend(["--base", base]);
        }
        let out = run(force_bind_plain(&args));
        out.assert_success();
        serde_json::from_str(&out.stdout).expect("the profile is JSON")
    }

    /// A bundle running `args` in `image` with `caps` and `seccomp` (a profile).
    fn bundle(&mut self, image: Image, args: &[&str], caps: &[&str], seccomp: Value) -> PathBuf {
        self.n += 1;
        let bundle = self.dir.join(format!("bundle{}", self.n));
        let rootfs = bundle.join("rootfs");
        for d in ["proc", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777"]}),
        ];
        match image {
            Image::Busybox => {
                fs::create_dir_all(rootfs.join("bin")).unwrap();
                fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
                std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
            }
            Image::Python => {
                fs::create_dir_all(rootfs.join("usr")).unwrap();
                for (link, to) in [
                    ("bin", "usr/bin"),
                    ("lib", "usr/lib"),
                    ("lib64", "usr/lib64"),
                    ("sbin", "usr/sbin"),
                ] {
                    std::os::unix::fs::symlink(to, rootfs.join(link)).unwrap();
                }
                mounts.push(
                    json!({"destination": "/usr", "type": "bind", "source": "/usr",
                                   "options": ["rbind", "ro", "nosuid", "nodev"]}),
                );
            }
        }
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps,
                },
                "noNewPrivileges": true,
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "fb",
            "mounts": mounts,
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "network", "path": format!("/proc/{}/ns/net", self.netns.pid())},
                    {"type": "ipc"},
                    {"type": "uts"},
                    {"type": "mount"},
                ],
                "seccomp": seccomp,
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            },
        });
        fs::write(
            bundle.join("config.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .expect("write config.json");
        bundle
    }

    /// Starts `bundle` detached as a new container.
    fn run(&mut self, bundle: &Path) -> Result<Container, String> {
        self.n += 1;
        let id = container_id();
        let container = Container {
            runtime: self.runtime,
            runtime_path: self.runtime_path.clone(),
            state: self.dir.join("state"),
            id: id.clone(),
            log: self.log(),
        };
        let cmd = self.runtime.command(
            &self.runtime_path,
            &container.state,
            &["run", "-d", "--bundle", bundle.to_str().unwrap(), &id],
        );
        run_logged(cmd, &self.log()).map(|()| container)
    }

    /// Waits until the namespace has a TCP listener at `addr`.
    fn wait_listening(&self, addr: SocketAddr) {
        let found = wait_until(WAIT, || self.listeners().contains(&tcp(addr)));
        assert!(
            found,
            "nothing listens at {addr}; the namespace has {:?}\nruntime: {}\n{}",
            self.listeners(),
            fs::read_to_string(self.log()).unwrap_or_default(),
            self.agent.as_ref().map(Proc::context).unwrap_or_default()
        );
    }

    fn listeners(&self) -> Vec<Listener> {
        listeners_of(self.netns.pid())
            .unwrap_or_default()
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    }

    /// The listeners on `port`, any address.
    fn on_port(&self, port: u16) -> Vec<Listener> {
        let mut on: Vec<_> = self
            .listeners()
            .into_iter()
            .filter(|l| l.addr.port() == port)
            .collect();
        on.sort();
        on
    }

    /// One HTTP GET from inside the namespace: the status code.
    fn http_status(&self, addr: SocketAddr) -> u16 {
        in_netns_of(self.netns.pid(), || http_get_retry(addr, WAIT))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.agent().context()))
    }

    /// The agent's JSON events so far.
    fn events(&self) -> Vec<Value> {
        self.agent
            .as_ref()
            .map(|a| a.stderr())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for an event with every (key, value) of `want`.
    fn wait_event(&self, want: &[(&str, &str)]) -> Value {
        let matches = |e: &Value| want.iter().all(|(k, v)| e[*k].as_str() == Some(*v));
        let mut found = None;
        wait_until(WAIT, || {
            found = self.events().into_iter().find(|e| matches(e));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no event with {want:?}\n{}",
                self.agent.as_ref().map(Proc::context).unwrap_or_default()
            )
        })
    }

    /// The agent's descriptors and threads.
    fn agent_counts(&self) -> (usize, usize) {
        let pid = self.agent().pid();
        let count = |what: &str| {
            fs::read_dir(format!("/proc/{pid}/{what}"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        (count("fd"), count("task"))
    }
}

/// A container id unique on the machine while this test process runs: the runtimes
/// name the container's cgroups after it, whatever their --root.
fn container_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "fb{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A container of the test's; deleted (killed) when dropped.
struct Container {
    runtime: Runtime,
    runtime_path: String,
    state: PathBuf,
    id: String,
    log: PathBuf,
}

impl Container {
    /// `exec -d` of `args` in the running container.
    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["exec", "-d", &self.id];
        all.extend(args);
        run_logged(
            self.runtime.command(&self.runtime_path, &self.state, &all),
            &self.log,
        )
    }

    /// The container's init process, in our PID namespace (`RUNTIME state`).
    fn pid(&self) -> i32 {
        let out = self
            .runtime
            .command(&self.runtime_path, &self.state, &["state", &self.id])
            .stdin(Stdio::null())
            .output()
            .expect("runtime state");
        let state: Value = serde_json::from_slice(&out.stdout).expect("state JSON");
        state["pid"].as_i64().expect("state pid") as i32
    }
}

impl Container {
    /// Waits for the container to write `/tmp/NAME` (through its root in /proc) and
    /// returns what it wrote.
    fn wait_file(&self, name: &str) -> String {
        let path = format!("/proc/{}/root/tmp/{name}", self.pid());
        assert!(
            wait_until(WAIT, || fs::metadata(&path).is_ok()),
            "the container did not write /tmp/{name}\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        fs::read_to_string(&path).unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let delete =
            self.runtime
                .command(&self.runtime_path, &self.state, &["delete", "-f", &self.id]);
        // The container's processes are orphans of the runtime, reparented to this
        // test process (the harness makes it a subreaper): the runtime waits for its
        // init to be gone, so they are reaped here meanwhile.
        thread::scope(|scope| {
            let deleting = scope.spawn(|| run_logged(delete, &self.log));
            while !deleting.is_finished() {
                reap_container_orphans(&self.id);
                thread::sleep(STEP);
            }
        });
        reap_container_orphans(&self.id);
        // runc 1.1's `delete -f` kills the init and tries to remove the cgroups at
        // once, while an exec'd process may not be gone yet: it leaves the empty
        // directories behind. Ours are named after our unique id.
        let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for controller in controllers.flatten() {
            let dir = controller.path().join(&self.id);
            if dir.is_dir() {
                wait_until(Duration::from_secs(2), || fs::remove_dir(&dir).is_ok());
            }
        }
    }
}

/// Reaps the exited processes of container `id` that are this process's children
/// (by their cgroup, which names the container): only those, so no other wait in
/// the harness loses its child.
fn reap_container_orphans(id: &str) {
    let me = std::process::id() as i32;
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    let in_container = format!("/{id}");
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = proc_stat(pid).is_some_and(|(state, ppid)| state == 'Z' && ppid == me);
        let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.ends_with(&in_container)));
        if ours && theirs {
            // SAFETY: waitpid(2) on one exited child of ours, without blocking.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// `busybox httpd` in the foreground on `addr`.
fn httpd(addr: &str) -> Vec<String> {
    ["/bin/busybox", "httpd", "-f", "-h", "/", "-p", addr]
        .map(String::from)
        .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Generates `runc::NAME` and `crun::NAME` for each `fn NAME(runtime: Runtime)`.
macro_rules! runtime_tests {
    ($($(#[$meta:meta])* fn $name:ident($rt:ident: Runtime) $body:block)*) => {
        $($(#[$meta])* fn $name($rt: Runtime) $body)*
        mod runc {
            $(#[test] fn $name() { super::$name(super::Runtime::Runc) })*
        }
        mod crun {
            $(#[test] fn $name() { super::$name(super::Runtime::Crun) })*
        }
    };
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

runtime_tests! {
    /// The container asks for 0.0.0.0:P; its metadata's -b puts it on 127.0.0.2:P,
    /// a real client gets an answer there, and the event names the container.
    fn wildcard_goes_to_the_metadata_address(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let profile = lab.profile("-b 127.0.0.2", None);
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, profile);
        let ctr = lab.run(&bundle).expect("the container starts");
        let want = v4("127.0.0.2", port);
        lab.wait_listening(want);
        assert_eq!(lab.on_port(port), [tcp(want)]);
        // busybox httpd answers 404 for a directory without an index: any status
        // is a real HTTP answer from the container.
        let status = lab.http_status(want);
        assert!((200..500).contains(&status), "{status}");
        let event = lab.wait_event(&[("event", "bind"), ("container", &ctr.id)]);
        assert_eq!(event["action"], "rewritten", "{event}");
        assert_eq!(event["bound"], want.to_string(), "{event}");
        lab.wait_event(&[("event", "container"), ("container", &ctr.id), ("result", "ok")]);
    }

    /// Two containers with different metadata through one agent: a busybox and a
    /// python one, each on its own address.
    fn two_containers_keep_their_own_rules(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &["-d"]) else { return };
        if find_program("/usr/bin/python3").is_none() {
            skip("/usr/bin/python3 not found (tests/install-deps.sh installs python3)");
            return;
        }
        let port = free_port();
        let first = lab.profile("-b 127.0.0.2", None);
        let second = lab.profile("-b 127.0.0.3", None);
        let busy = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, first);
        let port_s = port.to_string();
        let py = lab.bundle(
            Image::Python,
            &["/usr/bin/python3", "-m", "http.server", &port_s, "--bind", "0.0.0.0", "--directory", "/"],
            DEFAULT_CAPS,
            second,
        );
        let _a = lab.run(&busy).expect("busybox container");
        let _b = lab.run(&py).expect("python container");
        lab.wait_listening(v4("127.0.0.2", port));
        lab.wait_listening(v4("127.0.0.3", port));
        assert_eq!(lab.on_port(port), [tcp(v4("127.0.0.2", port)), tcp(v4("127.0.0.3", port))]);
        assert_eq!(lab.http_status(v4("127.0.0.3", port)), 200);
        let status = lab.http_status(v4("127.0.0.2", port));
        assert!((200..500).contains(&status), "{status}");
    }

    /// A process started with `exec` in a running container is policed too (a
    /// connection of its own, with its own listener).
    fn exec_is_policed(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let profile = lab.profile("-b 127.0.0.4", None);
        let bundle = lab.bundle(Image::Busybox, &["/bin/busybox", "sleep", "120"], DEFAULT_CAPS, profile);
        let ctr = lab.run(&bundle).expect("the container starts");
        ctr.exec(&strs(&httpd(&format!("0.0.0.0:{port}")))).expect("exec");
        let want = v4("127.0.0.4", port);
        lab.wait_listening(want);
        assert_eq!(lab.on_port(port), [tcp(want)]);
        let status = lab.http_status(want);
        assert!((200..500).contains(&status), "{status}");
    }

    /// [::]:P goes to the rule's IPv6 address.
    fn ipv6_wildcard_goes_to_the_rule_address(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let profile = lab.profile("-b [::1]", None);
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("[::]:{port}"))), DEFAULT_CAPS, profile);
        let _ctr = lab.run(&bundle).expect("the container starts");
        let want = v6("::1", port);
        lab.wait_listening(want);
        assert_eq!(lab.on_port(port), [tcp(want)]);
        let status = lab.http_status(want);
        assert!((200..500).contains(&status), "{status}");
    }

    /// The agent binds with its own privileges, but a container without
    /// CAP_NET_BIND_SERVICE does not get port 80 through it; with the capability
    /// the same container does.
    fn privileged_port_needs_the_containers_capability(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let profile = lab.profile("-b 127.0.0.2", None);
        let no_cap = lab.bundle(Image::Busybox, &strs(&httpd("0.0.0.0:80")), &["CAP_KILL"], profile.clone());
        let ctr = lab.run(&no_cap).expect("the container starts");
        let event = lab.wait_event(&[("event", "bind"), ("container", &ctr.id)]);
        assert_eq!(event["result"], "error", "{event}");
        assert_eq!(event["errno"], "EACCES", "{event}");
        assert_eq!(lab.on_port(80), []);
        drop(ctr);
        let with_cap = lab.bundle(Image::Busybox, &strs(&httpd("0.0.0.0:80")), DEFAULT_CAPS, profile);
        let _ctr = lab.run(&with_cap).expect("the container starts");
        lab.wait_listening(v4("127.0.0.2", 80));
        assert_eq!(lab.on_port(80), [tcp(v4("127.0.0.2", 80))]);
    }

    /// In a network namespace whose ip_unprivileged_port_start is 0 (as Docker
    /// makes a container's), port 80 needs no capability, for the kernel and so for
    /// the agent: the limit is the container's namespace's, not the agent's.
    fn privileged_ports_as_the_containers_namespace_says(runtime: Runtime) {
        let setup = ["echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start"];
        let Some(mut lab) = Lab::with_netns(runtime, &[], &setup) else { return };
        let profile = lab.profile("-b 127.0.0.2", None);
        let no_cap = lab.bundle(Image::Busybox, &strs(&httpd("0.0.0.0:80")), &["CAP_KILL"], profile);
        let ctr = lab.run(&no_cap).expect("the container starts");
        lab.wait_listening(v4("127.0.0.2", 80));
        assert_eq!(lab.on_port(80), [tcp(v4("127.0.0.2", 80))]);
        // An exec'd process too (crun gives no pid for it: the namespace's limit is
        // the one read for the container's init).
        ctr.exec(&strs(&httpd("0.0.0.0:81"))).expect("exec");
        lab.wait_listening(v4("127.0.0.2", 81));
    }

    /// The i386 ABI (int $0x80) from a 32-bit and a 64-bit program, bind directly
    /// and through socketcall(2): the profile names bind, and libseccomp traps both
    /// forms for the x86 architecture, so every one is judged.
    fn i386_binds_are_judged(runtime: Runtime) {
        let Ok(int80_32) = c_build("int80_bind", "int80_bind32", &["-m32", "-static"]) else {
            skip("no 32-bit static toolchain (tests/install-deps.sh installs gcc-multilib)");
            return;
        };
        let int80_64 = c_build("int80_bind", "int80_bind64s", &["-static"]).expect("static int80_bind");
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_ports(4);
        let profile = lab.profile("-b 127.0.0.2", None);
        let script = format!(
            "/bin/int80_32 direct 0.0.0.0 {p0} > /tmp/a; /bin/int80_32 socketcall 0.0.0.0 {p1} >> /tmp/a; \
             /bin/int80_64 direct 0.0.0.0 {p2} >> /tmp/a; /bin/int80_64 socketcall 0.0.0.0 {p3} >> /tmp/a; \
             echo > /tmp/done; busybox sleep 120",
            p0 = port, p1 = port + 1, p2 = port + 2, p3 = port + 3
        );
        let bundle = lab.bundle(Image::Busybox, &["/bin/sh", "-c", &script], DEFAULT_CAPS, profile);
        fs::copy(int80_32, bundle.join("rootfs/bin/int80_32")).unwrap();
        fs::copy(int80_64, bundle.join("rootfs/bin/int80_64")).unwrap();
        let ctr = lab.run(&bundle).expect("the container starts");
        ctr.wait_file("done");
        let said = ctr.wait_file("a");
        let want: Vec<String> = (0..4).map(|i| format!("bound 4 127.0.0.2:{}", port + i)).collect();
        assert_eq!(said.lines().collect::<Vec<_>>(), want, "{said}");
    }

    /// The agent killed while a container runs: the bind the container makes after
    /// that fails (ENOSYS, the listener is gone) and nothing listens on its port,
    /// 0.0.0.0 least of all; one made before is still where the rule put it.
    fn agent_killed_later_binds_fail(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let (before, after) = (free_port(), free_port());
        let profile = lab.profile("-b 127.0.0.2", None);
        // httpd on `before` now; on `after` once /tmp/go exists; then says how the
        // second httpd ended.
        let script = format!(
            "busybox httpd -f -h / -p 0.0.0.0:{before} & \
             while [ ! -e /tmp/go ]; do busybox sleep 0.05; done; \
             busybox httpd -f -h / -p 0.0.0.0:{after}; echo \"second httpd: $?\" > /tmp/done; \
             busybox sleep 120"
        );
        let bundle = lab.bundle(Image::Busybox, &["/bin/sh", "-c", &script], DEFAULT_CAPS, profile);
        let ctr = lab.run(&bundle).expect("the container starts");
        lab.wait_listening(v4("127.0.0.2", before));
        let agent = lab.agent.take().expect("agent");
        agent.kill();
        let root = format!("/proc/{}/root/tmp", ctr.pid());
        fs::write(format!("{root}/go"), "").expect("write /tmp/go in the container");
        let done = format!("{root}/done");
        assert!(
            wait_until(WAIT, || fs::metadata(&done).is_ok()),
            "the second httpd did not end; the namespace has {:?}",
            lab.listeners()
        );
        let said = fs::read_to_string(&done).unwrap();
        assert_ne!(said.trim(), "second httpd: 0", "{said}");
        assert_eq!(lab.on_port(after), []);
        assert_eq!(lab.on_port(before), [tcp(v4("127.0.0.2", before))]);
        // A new agent takes the dead one's socket file over and serves new
        // containers; the old container keeps what it had.
        assert!(lab.socket.exists(), "a killed agent leaves its socket file");
        lab.start_agent(&[]);
        let port = free_port();
        let profile = lab.profile("-b 127.0.0.3", None);
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, profile);
        let _next = lab.run(&bundle).expect("a container starts with the new agent");
        lab.wait_listening(v4("127.0.0.3", port));
        assert_eq!(lab.on_port(before), [tcp(v4("127.0.0.2", before))]);
        // A second agent on a live agent's socket refuses to start.
        let socket = lab.socket.to_str().unwrap();
        let second = run(force_bind_plain(&["agent", "--socket", socket]));
        assert_eq!(second.code(), Some(125), "{second}");
        assert!(second.stderr.contains("another agent listens"), "{second}");
    }

    /// `--profile --base` (podman's own profile, so the container keeps the
    /// runtime's default protection) loads in the runtime and works.
    fn merged_profile_loads(runtime: Runtime) {
        const BASE: &str = "/usr/share/containers/seccomp.json";
        if !Path::new(BASE).exists() {
            skip(&format!("{BASE} not found (golang-github-containers-common; tests/install-deps.sh installs it)"));
            return;
        }
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let mut profile = lab.profile("-b 127.0.0.5", Some(BASE));
        // Podman's file is in the containers format (archMap, includes); the OCI
        // runtimes read the native architecture from it, and "architectures" for
        // the rest.
        profile["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, profile);
        let _ctr = lab.run(&bundle).expect("the container starts with the merged profile");
        let want = v4("127.0.0.5", port);
        lab.wait_listening(want);
        assert_eq!(lab.on_port(port), [tcp(want)]);
        let status = lab.http_status(want);
        assert!((200..500).contains(&status), "{status}");
    }

    /// Bad metadata: that container's binds are denied and an error event names
    /// it; the agent lives on and serves the next container.
    fn bad_metadata_denies_that_container(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let mut bad = lab.profile("", None);
        bad["listenerMetadata"] = json!("-b 300.0.0.1");
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, bad);
        let ctr = lab.run(&bundle).expect("the container starts");
        let refused = lab.wait_event(&[("event", "container"), ("container", &ctr.id)]);
        assert_eq!(refused["result"], "error", "{refused}");
        assert!(refused["error"].as_str().unwrap().contains("300.0.0.1"), "{refused}");
        let denied = lab.wait_event(&[("event", "bind"), ("container", &ctr.id)]);
        assert_eq!(denied["action"], "denied", "{denied}");
        assert_eq!(denied["errno"], "EPERM", "{denied}");
        assert_eq!(lab.on_port(port), []);
        drop(ctr);
        let good = lab.profile("-b 127.0.0.2", None);
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, good);
        let _ctr = lab.run(&bundle).expect("the next container starts");
        lab.wait_listening(v4("127.0.0.2", port));
    }

    /// Connections that are no runtime's (garbage, silence, a descriptor that is no
    /// seccomp listener) are refused with an event, and the agent serves the next
    /// container as before.
    fn garbage_connections_leave_the_agent_serving(runtime: Runtime) {
        use std::io::Write as _;
        use std::os::unix::net::UnixStream;
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let mut garbage = UnixStream::connect(&lab.socket).expect("connect");
        garbage.write_all(b"{\"ociVersion\": 1}").unwrap();
        drop(garbage);
        let _silent = UnixStream::connect(&lab.socket).expect("connect");
        let refused = lab.wait_event(&[("event", "container"), ("result", "error")]);
        assert!(refused["container"].is_null(), "{refused}");
        // A valid state with a pipe where the listener should be.
        let (pipe, _other) = nix::unistd::pipe().unwrap();
        let state = br#"{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":0,"state":{"id":"not-a-listener"}}"#;
        let liar = UnixStream::connect(&lab.socket).expect("connect");
        let fds = [std::os::fd::AsRawFd::as_raw_fd(&pipe)];
        nix::sys::socket::sendmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&liar),
            &[std::io::IoSlice::new(state)],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        let refused = lab.wait_event(&[("event", "container"), ("container", "not-a-listener")]);
        assert_eq!(refused["result"], "error", "{refused}");
        let port = free_port();
        let profile = lab.profile("-b 127.0.0.2", None);
        let bundle = lab.bundle(Image::Busybox, &strs(&httpd(&format!("0.0.0.0:{port}"))), DEFAULT_CAPS, profile);
        let _ctr = lab.run(&bundle).expect("the container starts");
        lab.wait_listening(v4("127.0.0.2", port));
    }

    /// Containers come and go: the agent's descriptors and threads come back to
    /// what they were. Each container binds once (rewritten) and exits.
    fn many_containers_leak_nothing(runtime: Runtime) {
        // runc starts a container in about 0.1 s here, crun faster; 100 each keeps
        // the pair well under a minute.
        const CONTAINERS: usize = 100;
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let profile = lab.profile("-b 127.0.0.2", None);
        // httpd without -f binds, listens and goes to the background, and the
        // container ends with its shell (its PID namespace with it).
        let script = format!("busybox httpd -h / -p 0.0.0.0:{port}; busybox sleep 0.05");
        let bundle = lab.bundle(Image::Busybox, &["/bin/sh", "-c", &script], DEFAULT_CAPS, profile);
        let settled = |lab: &Lab| {
            let mut counts = lab.agent_counts();
            // The supervisor of a container that ended stops within its watchdog's
            // period.
            wait_until(WAIT, || {
                counts = lab.agent_counts();
                counts.1 == 1
            });
            counts
        };
        let foreground = |lab: &mut Lab| {
            lab.n += 1;
            let id = container_id();
            let state = lab.dir.join("state");
            let cmd = lab.runtime.command(
                &lab.runtime_path,
                &state,
                &["run", "--bundle", bundle.to_str().unwrap(), &id],
            );
            run_logged(cmd, &lab.log()).expect("the container runs");
        };
        foreground(&mut lab);
        let before = settled(&lab);
        let started = Instant::now();
        for _ in 0..CONTAINERS {
            foreground(&mut lab);
        }
        let took = started.elapsed();
        let after = settled(&lab);
        let rewritten = lab
            .events()
            .iter()
            .filter(|e| e["event"] == "bind" && e["action"] == "rewritten" && e["result"] == "ok")
            .count();
        assert_eq!(rewritten, CONTAINERS + 1, "every container's bind was judged");
        assert_eq!(after, before, "(descriptors, threads) before and after {CONTAINERS} containers");
        eprintln!("{CONTAINERS} {} containers in {took:?}; agent (fds, threads): {after:?}", runtime.name());
    }

    /// SIGTERM while a container binds one port after another: every bind and
    /// listen the program saw succeed is really there, on the rule's address, and
    /// every one that failed left nothing listening; none is half done.
    fn sigterm_mid_binds_leaves_no_half_done_bind(runtime: Runtime) {
        const PORTS: u16 = 80;
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        if find_program("/usr/bin/python3").is_none() {
            skip("/usr/bin/python3 not found (tests/install-deps.sh installs python3)");
            return;
        }
        let first = free_ports(PORTS);
        let code = "import socket, sys, time\n\
                    first, n = int(sys.argv[1]), int(sys.argv[2])\n\
                    out = open('/tmp/out', 'w', buffering=1)\n\
                    keep = []\n\
                    for port in range(first, first + n):\n\
                    \x20   s = socket.socket()\n\
                    \x20   keep.append(s)\n\
                    \x20   try:\n\
                    \x20       s.bind(('0.0.0.0', port)); s.listen()\n\
                    \x20       out.write(f'ok {port}\\n')\n\
                    \x20   except OSError as e:\n\
                    \x20       out.write(f'error {port} {e.errno}\\n')\n\
                    \x20   time.sleep(0.01)\n\
                    open('/tmp/done', 'w').close()\n\
                    time.sleep(120)\n";
        let (first_s, n_s) = (first.to_string(), PORTS.to_string());
        let profile = lab.profile("-b 127.0.0.2", None);
        let bundle = lab.bundle(Image::Python, &["/usr/bin/python3", "-c", code, &first_s, &n_s], DEFAULT_CAPS, profile);
        let ctr = lab.run(&bundle).expect("the container starts");
        let out = format!("/proc/{}/root/tmp/out", ctr.pid());
        let lines = || fs::read_to_string(&out).map(|t| t.lines().count()).unwrap_or(0);
        assert!(wait_until(WAIT, || lines() >= 5), "the container does not bind");
        let mut agent = lab.agent.take().expect("agent");
        agent.signal(libc::SIGTERM);
        let status = agent.wait_timeout(WAIT).expect("the agent exits after SIGTERM");
        assert_eq!(status.code(), Some(0), "{}", agent.context());
        ctr.wait_file("done");
        let said = fs::read_to_string(&out).unwrap();
        let mut ok = 0;
        for line in said.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let port: u16 = words[1].parse().unwrap();
            match words[0] {
                "ok" => {
                    ok += 1;
                    assert_eq!(lab.on_port(port), [tcp(v4("127.0.0.2", port))], "{line}");
                }
                _ => {
                    // ENOSYS: the listener was gone (or, had the bind been done
                    // before the agent left, it would say ok).
                    assert_eq!(words[2], libc::ENOSYS.to_string(), "{line}");
                    assert_eq!(lab.on_port(port), [], "{line}");
                }
            }
        }
        assert!(ok >= 5 && ok < PORTS as usize, "{ok} binds of {PORTS} before the agent left:\n{said}");
    }

    /// SIGTERM: the agent stops accepting (its socket is gone: a new container is
    /// refused), answers what it was answering and exits 0; a container already
    /// running then has its binds fail, closed.
    fn sigterm_stops_accepting(runtime: Runtime) {
        let Some(mut lab) = Lab::new(runtime, &[]) else { return };
        let port = free_port();
        let profile = lab.profile("-b 127.0.0.2", None);
        let script = format!(
            "while [ ! -e /tmp/go ]; do busybox sleep 0.05; done; \
             busybox httpd -f -h / -p 0.0.0.0:{port}; echo \"httpd: $?\" > /tmp/done; busybox sleep 120"
        );
        let bundle = lab.bundle(Image::Busybox, &["/bin/sh", "-c", &script], DEFAULT_CAPS, profile.clone());
        let ctr = lab.run(&bundle).expect("the container starts");
        lab.wait_event(&[("event", "container"), ("container", &ctr.id)]);
        let mut agent = lab.agent.take().expect("agent");
        agent.signal(libc::SIGTERM);
        let status = agent.wait_timeout(WAIT).expect("the agent exits after SIGTERM");
        assert_eq!(status.code(), Some(0), "{}", agent.context());
        assert!(!lab.socket.exists(), "the socket file is removed");
        let refused = lab.bundle(Image::Busybox, &["/bin/busybox", "true"], DEFAULT_CAPS, profile);
        assert!(lab.run(&refused).is_err(), "a container starts with no agent");
        let root = format!("/proc/{}/root/tmp", ctr.pid());
        fs::write(format!("{root}/go"), "").expect("write /tmp/go in the container");
        let done = format!("{root}/done");
        assert!(wait_until(WAIT, || fs::metadata(&done).is_ok()), "httpd did not end");
        assert_ne!(fs::read_to_string(&done).unwrap().trim(), "httpd: 0");
        assert_eq!(lab.on_port(port), []);
    }
}

// ---------------------------------------------------------------------------
// The README's recipes and the shipped units, run as written
// ---------------------------------------------------------------------------

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in\n{text}");
    text.replace(from, to)
}

#[test]
fn readme_shows_the_shipped_agent_units() {
    for unit in [
        "packaging/systemd/force-bind-agent.socket",
        "packaging/systemd/force-bind-agent.service",
    ] {
        assert_eq!(
            readme_block(unit),
            repo_file(unit),
            "README's copy of {unit}"
        );
    }
}

/// The README's runc recipe, in a bundle with no seccomp profile yet: the agent's
/// socket, the runtime's state directory and the container id are the test's.
#[test]
fn readme_runc_recipe() {
    let Some(mut lab) = Lab::new(Runtime::Runc, &[]) else {
        return;
    };
    let port = free_port();
    let bundle = lab.bundle(
        Image::Busybox,
        &strs(&httpd(&format!("0.0.0.0:{port}"))),
        DEFAULT_CAPS,
        Value::Null,
    );
    let id = container_id();
    let state = lab.dir.join("state");
    let _ctr = Container {
        runtime: Runtime::Runc,
        runtime_path: lab.runtime_path.clone(),
        state: state.clone(),
        id: id.clone(),
        log: lab.log(),
    };
    let recipe = readme_block("agent-runc");
    let profile = format!(
        "{} agent --profile --socket {}",
        force_bind_bin(),
        lab.socket.display()
    );
    let script = replaced(&recipe, "force-bind agent --profile", &profile);
    let run = format!(
        "{} --root {} run -d {id}",
        lab.runtime_path,
        state.display()
    );
    let script = replaced(&script, "runc run -d web", &run);
    let mut sh = Command::new("sh");
    sh.args(["-e", "-c", &script]).current_dir(&bundle);
    run_logged(sh, &lab.log()).expect("the recipe runs");
    let want = v4("127.0.0.2", port);
    lab.wait_listening(want);
    assert_eq!(lab.on_port(port), [tcp(want)]);
}

#[test]
fn readme_podman_recipe_with_runc() {
    readme_podman_recipe(Runtime::Runc);
}

#[test]
fn readme_podman_recipe_with_crun() {
    readme_podman_recipe(Runtime::Crun);
}

/// The README's podman recipe, podman running `runtime`, run as written with these
/// stand-ins: the test's agent socket and profile path, `-d --cidfile` (the test
/// removes the container), the test's network namespace for `host` (its 0.0.0.0
/// binds stay off the host's) and a busybox `--rootfs` for IMAGE (no registry is
/// reachable). Podman's own files (its storage, its run-time state, its network
/// configuration) are in the test's directory, through CONTAINERS_CONF and
/// CONTAINERS_STORAGE_CONF (see `podman_env`).
fn readme_podman_recipe(runtime: Runtime) {
    let Some(podman) = find_program("podman") else {
        skip("podman not found (tests/install-deps.sh installs it)");
        return;
    };
    let Some(mut lab) = Lab::new(runtime, &[]) else {
        return;
    };
    let port = free_port();
    let bundle = lab.bundle(Image::Busybox, &[], DEFAULT_CAPS, Value::Null);
    let env = podman_env(&lab.dir, runtime);
    let cidfile = lab.dir.join("podman.cid");
    // Its cgroups go under a parent named after the test, removed with it, instead of
    // podman's shared `libpod_parent`.
    let cgroup_parent = container_id();
    let _ctr = PodmanContainer {
        runtime,
        podman: podman.clone(),
        env: env.clone(),
        cidfile: cidfile.clone(),
        cgroup_parent: cgroup_parent.clone(),
        log: lab.log(),
    };
    let recipe = readme_block("agent-podman");
    let profile = format!(
        "{} agent --profile --socket {}",
        force_bind_bin(),
        lab.socket.display()
    );
    let script = replaced(&recipe, "force-bind agent --profile", &profile);
    let profile_file = lab.dir.join("web.json");
    let script = replaced(
        &script,
        "/etc/force-bind/web.json",
        profile_file.to_str().unwrap(),
    );
    let run = format!(
        "{podman} run -d --cidfile {} --cgroup-parent /{cgroup_parent}",
        cidfile.display()
    );
    let script = replaced(&script, "podman run", &run);
    let netns = format!("--network ns:/proc/{}/ns/net", lab.netns.pid());
    let script = replaced(&script, "--network host", &netns);
    let image = format!(
        "--rootfs {} /bin/busybox httpd -f -h / -p 0.0.0.0:{port}",
        bundle.join("rootfs").display()
    );
    let script = replaced(&script, "IMAGE ...", &image);
    let mut sh = runtime.wrap("sh", &["-e", "-c", &script]);
    sh.envs(env);
    run_logged(sh, &lab.log()).expect("the recipe runs");
    let want = v4("127.0.0.2", port);
    lab.wait_listening(want);
    assert_eq!(lab.on_port(port), [tcp(want)]);
    // busybox httpd answers 404 for a directory without an index: any status is a
    // real HTTP answer from the container.
    let status = lab.http_status(want);
    assert!((200..500).contains(&status), "{status}");
    let id = fs::read_to_string(&cidfile).expect("podman wrote the container id");
    let event = lab.wait_event(&[("event", "bind"), ("container", id.trim())]);
    assert_eq!(event["action"], "rewritten", "{event}");
    assert_eq!(event["bound"], want.to_string(), "{event}");
}

/// The environment that keeps podman's files in `dir`, has it run `runtime` and fits
/// it to the test machine: rlimits root may set without CAP_SYS_RESOURCE, which the
/// test machine's root lacks (podman as root asks for nofile and nproc of 1048576
/// otherwise); no cgroup for conmon (it stays in ours, so podman leaves no `conmon`
/// cgroup behind).
fn podman_env(dir: &Path, runtime: Runtime) -> Vec<(&'static str, PathBuf)> {
    let d = dir.display();
    let runtime = runtime.name();
    let containers = dir.join("containers.conf");
    fs::write(
        &containers,
        format!(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             cgroups = \"no-conmon\"\n\
             [engine]\n\
             runtime = \"{runtime}\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             tmp_dir = \"{d}/podman-tmp\"\n\
             [network]\n\
             network_config_dir = \"{d}/podman-net\"\n"
        ),
    )
    .expect("write containers.conf");
    let storage = dir.join("storage.conf");
    fs::write(
        &storage,
        format!(
            "[storage]\n\
             driver = \"vfs\"\n\
             graphroot = \"{d}/podman-storage\"\n\
             runroot = \"{d}/podman-run\"\n"
        ),
    )
    .expect("write storage.conf");
    vec![
        ("CONTAINERS_CONF", containers),
        ("CONTAINERS_STORAGE_CONF", storage),
    ]
}

/// A podman container of the test's (its id in `cidfile`); removed when dropped.
struct PodmanContainer {
    runtime: Runtime,
    podman: String,
    env: Vec<(&'static str, PathBuf)>,
    cidfile: PathBuf,
    /// Under /sys/fs/cgroup/CONTROLLER/.
    cgroup_parent: String,
    log: PathBuf,
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let Ok(id) = fs::read_to_string(&self.cidfile) else {
            return;
        };
        let mut rm = self
            .runtime
            .wrap(&self.podman, &["rm", "-f", "-t", "0", id.trim()]);
        rm.envs(self.env.iter().cloned());
        let _ = run_logged(rm, &self.log);
        // conmon, the container's monitor, daemonizes: it is reparented to this test
        // process (the harness makes it a subreaper) and ends with the container.
        wait_until(WAIT, || {
            let conmons = conmon_children();
            for &(pid, state) in &conmons {
                if state == 'Z' {
                    // SAFETY: waitpid(2) on one exited child of ours, without
                    // blocking.
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
            conmons.is_empty()
        });
        // The runtime removed the container's cgroup (`libpod-ID`) unless something
        // was still in it; the parent is the test's.
        let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for controller in controllers.flatten() {
            let parent = controller.path().join(&self.cgroup_parent);
            let Ok(children) = fs::read_dir(&parent) else {
                continue;
            };
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                wait_until(Duration::from_secs(2), || {
                    fs::remove_dir(child.path()).is_ok()
                });
            }
            wait_until(Duration::from_secs(2), || fs::remove_dir(&parent).is_ok());
        }
    }
}

/// This process's children named conmon: (PID, state).
fn conmon_children() -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    proc_table()
        .into_iter()
        .filter(|e| e.ppid == me)
        .filter(|e| {
            fs::read_to_string(format!("/proc/{}/comm", e.pid)).is_ok_and(|c| c.trim() == "conmon")
        })
        .map(|e| (e.pid, e.state))
        .collect()
}

/// The shipped units, as systemd would run them (systemd-socket-activate, the
/// socket in the test's directory): the service's `-d` denies a container without
/// metadata; a container's metadata overrides it.
#[test]
fn shipped_units_serve_containers() {
    let Some(activate) = find_program("systemd-socket-activate") else {
        skip("systemd-socket-activate not found (tests/install-deps.sh installs systemd)");
        return;
    };
    let Some(mut lab) = Lab::bare(Runtime::Runc, &[]) else {
        return;
    };
    let socket_unit = repo_file("packaging/systemd/force-bind-agent.socket");
    let service = repo_file("packaging/systemd/force-bind-agent.service");
    assert!(socket_unit.contains("ListenStream=/run/force-bind/agent.sock"));
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[..2], ["/usr/bin/force-bind", "agent"], "{exec}");
    let socket = lab.socket.to_str().unwrap().to_string();
    let mut args = vec!["-l", &socket, force_bind_bin()];
    args.extend(&words[1..]);
    lab.wait_agent(Proc::spawn(command(&activate, &args)));
    let (allowed, denied) = (free_port(), free_port());
    let with_metadata = lab.profile("-b 127.0.0.2", None);
    let bundle = lab.bundle(
        Image::Busybox,
        &strs(&httpd(&format!("0.0.0.0:{allowed}"))),
        DEFAULT_CAPS,
        with_metadata,
    );
    let _first = lab.run(&bundle).expect("the container starts");
    lab.wait_listening(v4("127.0.0.2", allowed));
    let without = lab.profile("", None);
    let script = format!(
        "busybox httpd -f -h / -p 0.0.0.0:{denied}; echo $? > /tmp/done; busybox sleep 120"
    );
    let bundle = lab.bundle(
        Image::Busybox,
        &["/bin/sh", "-c", &script],
        DEFAULT_CAPS,
        without,
    );
    let second = lab.run(&bundle).expect("the container starts");
    assert_ne!(second.wait_file("done").trim(), "0");
    assert_eq!(lab.on_port(denied), []);
    assert_eq!(lab.on_port(allowed), [tcp(v4("127.0.0.2", allowed))]);
}

/// Bad command lines: one line, exit 2, nothing started.
#[test]
fn agent_command_line_errors() {
    for (args, needle) in [
        (&["agent", "--bogus"][..], "--bogus"),
        (&["agent", "-b", "300.0.0.1"][..], "300.0.0.1"),
        (&["agent", "-m", ":80=fd=3"][..], "inherited"),
        (&["agent", "--base", "/x"][..], "--profile"),
        (&["agent", "--profile", "--metadata", "-b 'x"][..], "quote"),
        (
            &["agent", "--profile", "--base", "/nonexistent/seccomp.json"][..],
            "/nonexistent",
        ),
    ] {
        let out = run(force_bind_plain(args));
        assert_eq!(out.code(), Some(2), "{args:?}: {out}");
        assert!(out.stderr.contains(needle), "{args:?}: {out}");
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{args:?}: {out}");
    }
}
