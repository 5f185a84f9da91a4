//! tests/engines.rs: what differs between the engines: which one `auto` picks and
//! why, the supervisor's own resources,
//! binding with the target's privileges, and what becomes of trapped binds when the
//! supervisor is gone.

mod common;

use common::*;
use std::time::Duration;

/// `binds N asked A swapped S other O errors E` from bindrace.
#[derive(Debug, PartialEq, Eq)]
struct Race {
    binds: u32,
    asked: u32,
    swapped: u32,
    other: u32,
    errors: u32,
}

fn race(f: &Finished) -> Race {
    let line = f
        .stdout
        .lines()
        .find(|l| l.starts_with("binds "))
        .unwrap_or_else(|| panic!("no result\n{f}"));
    let n: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .step_by(2)
        .map(|v| v.parse().unwrap())
        .collect();
    Race {
        binds: n[0],
        asked: n[1],
        swapped: n[2],
        other: n[3],
        errors: n[4],
    }
}

#[test]
fn auto_on_older_kernels_picks_ptrace_and_says_why() {
    let oldkernel = match oldkernel() {
        Ok(path) => path,
        Err(why) => return skip(&why),
    };
    // (kernel, what -v says, whether it is worth a warning without -v)
    let cases = [
        (
            "4.19",
            "engine: ptrace (no seccomp user notification (Linux 5.0))",
            false,
        ),
        (
            "5.4",
            "no pidfd_getfd (Linux 5.6): using the ptrace engine",
            true,
        ),
        ("5.8", "no SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)", true),
    ];
    for (version, says, warns) in cases {
        let probe = [bindprobe(), "--addr", "0.0.0.0", "--port", "0"];
        let mut args = vec![
            "--as",
            version,
            "--",
            force_bind_bin(),
            "-v",
            "-b",
            "127.0.0.5",
        ];
        args.extend(probe);
        let f = run(command(oldkernel, &args));
        f.assert_success();
        assert!(f.stderr.contains(says), "{version}: {f}");
        assert_eq!(f.bound(), vec![f.bound()[0]], "{version}: {f}");
        assert_eq!(f.bound()[0].ip(), v4("127.0.0.5", 0).ip(), "{version}: {f}");

        let mut quiet = vec!["--as", version, "--", force_bind_bin(), "-b", "127.0.0.5"];
        quiet.extend(probe);
        let f = run(command(oldkernel, &quiet));
        assert_eq!(f.stderr.contains("warning"), warns, "{version}: {f}");
    }
}

#[test]
fn notify_requested_where_it_cannot_run_fails_in_one_line() {
    let oldkernel = match oldkernel() {
        Ok(path) => path,
        Err(why) => return skip(&why),
    };
    let f = run(command(
        oldkernel,
        &[
            "--as",
            "4.19",
            "--",
            force_bind_bin(),
            "--engine",
            "notify",
            "true",
        ],
    ));
    assert_eq!(f.code(), Some(125), "{f}");
    assert_eq!(f.stderr.trim().lines().count(), 1, "{f}");
    assert!(f.stderr.contains("notify engine cannot run here"), "{f}");
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

engine_tests! {
    /// The supervisor keeps no descriptor per bind: its count after 5,000 binds is
    /// the count after 50.
    fn supervisor_descriptors_stay_flat(engine: Engine) {
        let mut counts = Vec::new();
        for tries in ["50", "5000"] {
            let mut p = Proc::spawn_with_stdin(force_bind(
                engine,
                &["-b", "127.0.0.1:0", bindrace(), "0.0.0.0", "127.0.0.2", tries, "hold"],
            ));
            assert!(p.wait_line(|l| l.starts_with("binds"), Duration::from_secs(60)).is_some(), "{}", p.context());
            counts.push(open_fds(p.pid()));
            p.close_stdin();
            let f = p.finish(WAIT);
            f.assert_success();
            assert_eq!(race(&f).other, tries.parse::<u32>().unwrap(), "{f}");
        }
        assert!(counts[0] > 0, "could not count force-bind's descriptors");
        assert_eq!(counts[0], counts[1], "descriptors after 50 and 5000 binds");
    }

    /// If force-bind dies, a trapped bind must not go through unchecked: the notify
    /// engine's listener closes (the bind fails), the ptrace engine takes the program
    /// down with it (PTRACE_O_EXITKILL).
    fn binds_fail_closed_when_force_bind_dies(engine: Engine) {
        let port = free_port();
        let flag = tmp_path("supervisor-gone");
        let code = "import os, socket, sys, time\n\
                    print('ready', flush=True)\n\
                    for _ in range(400):\n    \
                        if os.path.exists(sys.argv[1]): break\n    \
                        time.sleep(0.01)\n\
                    s = socket.socket()\n\
                    try:\n    \
                        s.bind(('127.0.0.1', int(sys.argv[2]))); s.listen(); print('bound', flush=True)\n\
                    except OSError as e:\n    \
                        print('error', e.errno, flush=True)\n\
                    time.sleep(1)\n";
        let port_s = port.to_string();
        let flag_s = flag.to_str().unwrap();
        let mut args = vec!["-d"];
        args.extend(python_args(code, &[flag_s, &port_s]));
        let p = Proc::spawn(force_bind(engine, &args));
        assert!(p.wait_line(|l| l == "ready", WAIT).is_some(), "{}", p.context());
        send_signal(p.pid(), 9);
        std::fs::write(&flag, "").unwrap();
        let outcome = p.wait_line(|l| l == "bound" || l.starts_with("error"), Duration::from_secs(3));
        assert_ne!(outcome.as_deref(), Some("bound"), "{}", p.context());
        assert!(!is_listening(v4("127.0.0.1", port)), "something listens on {port}");
        let _ = std::fs::remove_file(&flag);
    }

    /// The supervisor binds with its own credentials, but must not grant more than
    /// the program has: a privileged port needs the program's CAP_NET_BIND_SERVICE.
    fn privileged_port_needs_the_programs_capability(engine: Engine) {
        let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1024);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || start <= 99 {
            return skip(&format!("needs root (to drop to nobody) and port 99 privileged (ip_unprivileged_port_start is {start})"));
        }
        // A real port: a port-0 bind would keep port 0 under the rule.
        let port = free_port().to_string();
        let f = run(force_bind(engine, &[
            "-b", "127.0.0.2:99", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all", bindprobe(), "--addr", "127.0.0.1", "--port", &port,
        ]));
        assert!(f.stdout.contains("error 13 "), "EACCES expected\n{f}");
        assert!(f.bound().is_empty(), "{f}");
    }
}
