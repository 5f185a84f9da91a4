//! tests/auto.rs: which engine `auto` (the default) takes, checked on what the
//! kernel did: the program's own /proc/self/cgroup (the bpf engine starts it in a
//! force-bind-PID cgroup; notify and ptrace leave it where force-bind is) and the
//! address the kernel bound (bindprobe's getsockname()). auto takes bpf where it
//! can carry out the whole policy (root, a writable cgroup2, clone3
//! CLONE_INTO_CGROUP, a policy the programs compile, no bind events wanted), else
//! notify, else ptrace; -v says why. The choice itself, fact by fact, is unit-tested
//! in src/engine.rs.

mod common;

use common::servers::require;
use common::*;

/// A policy the bpf engine carries out: a rule per family.
const BOTH: [&str; 4] = ["-b", "127.0.0.5", "-b", "[::1]"];

/// `sh -c` that prints the program's cgroup2 line, then binds 0.0.0.0:0.
const CGROUP_THEN_BIND: &str = "grep ^0:: /proc/self/cgroup; exec \"$0\" --addr 0.0.0.0 --port 0";

/// force-bind's arguments: `rules`, then the program of [`CGROUP_THEN_BIND`].
fn args<'a>(rules: &[&'a str]) -> Vec<&'a str> {
    let mut args = rules.to_vec();
    args.extend(["sh", "-c", CGROUP_THEN_BIND, bindprobe()]);
    args
}

/// Whether the program ran in a cgroup the bpf engine made for it.
fn in_bpf_cgroup(f: &Finished) -> bool {
    let line = f
        .stdout
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line from the program\n{f}"));
    line.rsplit('/')
        .next()
        .is_some_and(|leaf| leaf.starts_with("force-bind-"))
}

/// The address the probe bound, which must be 127.0.0.5 (the rule's).
#[track_caller]
fn assert_rewritten(f: &Finished) {
    f.assert_success();
    let bound = f.bound();
    assert_eq!(bound.len(), 1, "{f}");
    assert_eq!(bound[0].ip(), v4("127.0.0.5", 0).ip(), "{f}");
    assert_ne!(bound[0].port(), 0, "{f}");
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why auto cannot be expected to take bpf here, if it cannot: what -V says of the
/// engine on this kernel (root, cgroup2, clone3 CLONE_INTO_CGROUP).
fn bpf_not_for_auto() -> Option<String> {
    if let Some(why) = bpf_unavailable() {
        return Some(why);
    }
    let f = run(force_bind_plain(&["-V"]));
    f.assert_success();
    (!f.stdout.contains("auto takes it"))
        .then(|| format!("auto does not consider bpf here: {}", f.stdout.trim()))
}

/// As root on this host, auto takes bpf for a policy it compiles: the program runs
/// in force-bind's cgroup and its wildcard bind lands on the rule's address.
#[test]
fn auto_takes_bpf_as_root() {
    if let Some(why) = bpf_not_for_auto() {
        return skip(&why);
    }
    let f = run(force_bind_plain(&args(&BOTH)));
    assert_rewritten(&f);
    assert!(in_bpf_cgroup(&f), "auto did not take bpf\n{f}");
    assert!(
        f.stderr.is_empty(),
        "nothing to say at default verbosity\n{f}"
    );
    // --engine auto is the default, spelled out.
    let mut explicit = vec!["--engine", "auto"];
    explicit.extend(args(&BOTH));
    let f = run(force_bind_plain(&explicit));
    assert_rewritten(&f);
    assert!(in_bpf_cgroup(&f), "{f}");
    // A listener: /proc/net/tcp has it on the rule's address, and it answers.
    let port = free_port();
    let port_s = port.to_string();
    let mut listen = BOTH.to_vec();
    listen.extend([
        bindprobe(),
        "--addr",
        "0.0.0.0",
        "--port",
        &port_s,
        "--listen",
        "--hold",
    ]);
    // --hold keeps the socket until stdin's EOF.
    let p = Proc::spawn_with_stdin(force_bind_plain(&listen));
    let at = v4("127.0.0.5", port);
    assert!(
        wait_for_listen(at, WAIT),
        "not listening on {at}\n{}",
        p.context()
    );
    assert!(!is_listening(v4("0.0.0.0", port)), "{}", p.context());
    std::net::TcpStream::connect_timeout(&at, WAIT)
        .unwrap_or_else(|e| panic!("{at}: {e}\n{}", p.context()));
    let f = p.kill();
    assert!(!f.stderr.contains("panicked"), "{f}");
}

/// -v wants bind events, which the bpf engine reports from the kernel
/// (bpf/events.rs): auto still takes bpf, says why in one line, and the bind's
/// event comes from the ring buffer.
#[test]
fn auto_with_events_wanted_takes_bpf_and_says_why() {
    if let Some(why) = bpf_not_for_auto() {
        return skip(&why);
    }
    let mut verbose = vec!["-v"];
    verbose.extend(args(&BOTH));
    let f = run(force_bind_plain(&verbose));
    assert_rewritten(&f);
    assert!(in_bpf_cgroup(&f), "{f}");
    let says: Vec<&str> = f
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("force-bind: engine: "))
        .collect();
    assert_eq!(says.len(), 1, "one line says which engine and why\n{f}");
    assert!(
        says[0].starts_with("force-bind: engine: bpf (root, "),
        "{f}"
    );
    assert!(f.stderr.contains("bpf engine: cgroup "), "{f}");
    assert!(
        f.stderr.contains(": ok, bound 127.0.0.5:"),
        "the bind's event\n{f}"
    );
}

/// A policy bpf refuses by design (an fd= replacement of a socket really passed on
/// fd 3) is carried out by notify, quietly, and -v says why.
#[test]
fn auto_takes_notify_for_a_policy_bpf_refuses() {
    if let Some(why) = bpf_not_for_auto() {
        return skip(&why);
    }
    let code = "import os, socket, sys\n\
                s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
                os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
                print('passed', s.getsockname()[1], flush=True)\n\
                os.execv(sys.argv[1], sys.argv[1:])\n";
    for verbose in [false, true] {
        let mut cmd = vec!["-c", code, force_bind_bin()];
        if verbose {
            cmd.push("-v");
        }
        cmd.extend(["-b", "127.0.0.5", "-b", "[::1]", "-m", ":5555=fd=3"]);
        cmd.extend([
            "sh",
            "-c",
            "grep ^0:: /proc/self/cgroup; exec \"$0\" --addr 0.0.0.0 --port 5555",
            bindprobe(),
        ]);
        let f = run(command(python3(), &cmd));
        f.assert_success();
        assert!(!in_bpf_cgroup(&f), "{f}");
        // The passed socket took the program's place: bound where it was bound.
        let passed: u16 = f
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("passed "))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{f}"));
        assert_eq!(f.bound(), [v4("127.0.0.1", passed)], "{f}");
        if verbose {
            assert!(
                f.stderr.contains("engine: notify (bpf: the policy does not compile: rule '-m :5555=fd=3': the bpf engine cannot put an inherited socket"),
                "{f}"
            );
        } else {
            assert!(f.stderr.is_empty(), "{f}");
        }
    }
}

/// Not root: auto takes notify (bpf: not root).
#[test]
fn auto_as_nobody_takes_notify() {
    if !is_root() {
        return skip("needs root to run force-bind as uid 65534");
    }
    let Some(setpriv) = require(&["setpriv"]) else {
        return;
    };
    let mut cmd = AS_NOBODY.to_vec();
    cmd.extend([force_bind_bin(), "-v"]);
    cmd.extend(args(&BOTH));
    let f = run(command(&setpriv[0], &cmd));
    assert_rewritten(&f);
    assert!(!in_bpf_cgroup(&f), "{f}");
    assert!(f.stderr.contains("engine: notify (bpf: not root)"), "{f}");
}

/// cgroup2 read-only (a private mount namespace with the mount remounted ro):
/// auto takes notify (bpf: ... is not writable).
#[test]
fn auto_with_a_read_only_cgroup2_takes_notify() {
    if let Some(why) = bpf_not_for_auto() {
        return skip(&why);
    }
    let Some(unshare) = require(&["unshare"]) else {
        return;
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let point = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(str::to_string))?
        })
        .expect("a cgroup2 mount (bpf_unavailable checked it)");
    // unshare -m makes the new namespace's mounts private: the remount stays there.
    let script = "mount -o remount,bind,ro \"$0\" && exec \"$@\"";
    let mut cmd = vec![
        "-m",
        "--",
        "sh",
        "-c",
        script,
        &point,
        force_bind_bin(),
        "-v",
    ];
    cmd.extend(args(&BOTH));
    let f = run(command(&unshare[0], &cmd));
    assert_rewritten(&f);
    assert!(!in_bpf_cgroup(&f), "{f}");
    assert!(
        f.stderr.contains("engine: notify (bpf: ") && f.stderr.contains("is not writable)"),
        "{f}"
    );
}

/// Under the emulated 4.19 (shared/tools/vm's `oldkernel`: no clone3, no user
/// notification, though bpf(2) passes), auto ends at ptrace even for a policy bpf
/// compiles: clone3 CLONE_INTO_CGROUP (5.7) is the fact that rules bpf out.
#[test]
fn auto_under_an_emulated_4_19_ends_at_ptrace() {
    let oldkernel = match oldkernel() {
        Ok(path) => path,
        Err(why) => return skip(&why),
    };
    for verbose in [false, true] {
        let mut cmd = vec!["--as", "4.19", "--", force_bind_bin()];
        if verbose {
            cmd.push("-v");
        }
        cmd.extend(args(&BOTH));
        let f = run(command(oldkernel, &cmd));
        assert_rewritten(&f);
        assert!(!in_bpf_cgroup(&f), "{f}");
        if verbose {
            assert!(
                f.stderr
                    .contains("engine: ptrace (no seccomp user notification (Linux 5.0))"),
                "{f}"
            );
        } else {
            assert!(f.stderr.is_empty(), "{f}");
        }
    }
}

/// -V names each engine and whether auto would consider bpf.
#[test]
fn version_says_whether_auto_considers_bpf() {
    let f = run(force_bind_plain(&["-V"]));
    f.assert_success();
    let engines = f
        .stdout
        .lines()
        .find(|l| l.starts_with("engines: "))
        .unwrap_or_else(|| panic!("{f}"));
    assert!(
        engines.contains("notify") && engines.contains("ptrace"),
        "{f}"
    );
    if bpf_unavailable().is_some() {
        assert!(engines.contains("bpf unavailable: "), "{f}");
    } else {
        assert!(
            engines.contains("bpf (cgroup bind4/bind6 programs; auto takes it"),
            "{f}"
        );
    }
    let oldkernel = match oldkernel() {
        Ok(path) => path,
        Err(why) => return skip(&why),
    };
    let f = run(command(
        oldkernel,
        &["--as", "4.19", "--", force_bind_bin(), "-V"],
    ));
    f.assert_success();
    if bpf_unavailable().is_none() {
        assert!(
            f.stdout
                .contains("auto does not take it: no clone3 CLONE_INTO_CGROUP (Linux 5.7)"),
            "{f}"
        );
    }
}

/// A cgroup of the test's own under its cgroup on the cgroup2 mount, with a bind4
/// program (allow everything) attached *without* BPF_F_ALLOW_MULTI: no cgroup below
/// it can take another bind4 program (EPERM). Removed on drop.
struct ExclusiveParent {
    dir: std::path::PathBuf,
    _program: std::os::fd::OwnedFd,
}

impl ExclusiveParent {
    fn create() -> Result<ExclusiveParent, String> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let (point, root) = mountinfo
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split_whitespace().collect();
                (right.split_whitespace().next()? == "cgroup2")
                    .then(|| (f[4].to_string(), f[3].to_string()))
            })
            .ok_or("no cgroup2 mount")?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let own = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("no 0:: line")?;
        let relative = own
            .strip_prefix(root.as_str())
            .unwrap_or(own)
            .trim_start_matches('/');
        let dir = std::path::Path::new(&point)
            .join(relative)
            .join(format!("auto-test-exclusive-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // r0 = 1 (allow); exit. struct bpf_insn: code, dst|src, off, imm.
        let insns: [u64; 2] = [0xb7 | (1u64 << 32), 0x95];
        let license = c"GPL";
        // union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type (4.17).
        #[repr(C)]
        #[derive(Default)]
        struct Load {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
            prog_ifindex: u32,
            expected_attach_type: u32,
        }
        const CGROUP_SOCK_ADDR: u32 = 18;
        const INET4_BIND: u32 = 8;
        let load = Load {
            prog_type: CGROUP_SOCK_ADDR,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: INET4_BIND,
            ..Load::default()
        };
        // SAFETY: BPF_PROG_LOAD (5) with an attr of the size passed, pointing at
        // `insns` and `license`, which outlive the call.
        let fd =
            unsafe { libc::syscall(libc::SYS_bpf, 5, &load as *const Load, size_of::<Load>()) };
        if fd < 0 {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "BPF_PROG_LOAD: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a descriptor the kernel just returned, owned by nothing else.
        let program = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let cgroup = std::fs::File::open(&dir).map_err(|e| e.to_string())?;
        // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags (0).
        let attach: [u32; 4] = [
            cgroup.as_raw_fd() as u32,
            program.as_raw_fd() as u32,
            INET4_BIND,
            0,
        ];
        // SAFETY: BPF_PROG_ATTACH (8) with a 16-byte attr on our stack.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, 8, attach.as_ptr(), size_of_val(&attach)) };
        let parent = ExclusiveParent {
            dir,
            _program: program,
        };
        if rc != 0 {
            return Err(format!(
                "BPF_PROG_ATTACH: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(parent)
    }
}

impl Drop for ExclusiveParent {
    fn drop(&mut self) {
        // Its processes are gone (reaped) by now; the attached program goes with it.
        let _ = wait_until(WAIT, || std::fs::remove_dir(&self.dir).is_ok());
    }
}

/// Attaching fails at run time (EPERM: an enclosing cgroup holds a bind4 program
/// attached without BPF_F_ALLOW_MULTI): auto carries the policy out with notify,
/// quietly (bpf was only an optimisation the user did not ask for), and leaves no
/// cgroup behind.
#[test]
fn auto_falls_back_to_notify_when_attaching_fails() {
    use std::os::unix::process::CommandExt;
    if let Some(why) = bpf_not_for_auto() {
        return skip(&why);
    }
    let parent = match ExclusiveParent::create() {
        Ok(parent) => parent,
        Err(why) => return skip(&format!("cannot set up an exclusive bind4 program: {why}")),
    };
    let procs = std::ffi::CString::new(
        parent
            .dir
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("no NUL in a path");
    let mut cmd = force_bind_plain(&args(&BOTH));
    // SAFETY: the closure makes only async-signal-safe calls (open, write, close) on
    // memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let f = run(cmd);
    assert_rewritten(&f);
    assert!(!in_bpf_cgroup(&f), "{f}");
    assert!(
        f.stdout.contains("auto-test-exclusive-"),
        "the program did not start under the exclusive parent\n{f}"
    );
    assert!(
        f.stderr.is_empty(),
        "a fallback the user did not ask about is said at -v only\n{f}"
    );
    let left: Vec<_> = std::fs::read_dir(&parent.dir)
        .expect("the parent cgroup")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("force-bind-"))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}
