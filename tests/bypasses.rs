//! tests/bypasses.rs: the ways around a bind policy that are not a plain bind(): the
//! i386 syscall ABI (from 64-bit and 32-bit programs, direct and through socketcall),
//! io_uring, listen() on a socket nobody bound, SCTP's bindx, and the sockaddr race.
//! Each must be held to the policy in every engine.

mod common;

use common::*;

/// force-bind options followed by the program's command line.
fn then<'a>(options: &[&'a str], program: Vec<&'a str>) -> Vec<&'a str> {
    options.iter().copied().chain(program).collect()
}

fn uring_bind() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| example("uring_bind"))
}

fn int80_64() -> &'static str {
    c_build("int80_bind", "int80_bind64", &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// A 32-bit build of a C target, or why there is none (gcc-multilib missing).
fn build32(src: &str) -> Result<&'static str, String> {
    c_build(src, &format!("{src}32"), &["-m32", "-static"])
        .map_err(|e| format!("no 32-bit toolchain (apt-get install gcc-multilib): {e}"))
}

fn only_bound_ip(f: &Finished, ip: &str) {
    let bound = f.bound();
    assert_eq!(bound.len(), 1, "{f}");
    assert_eq!(bound[0].ip(), v4(ip, 0).ip(), "{f}");
}

fn denied(f: &Finished) {
    assert!(f.bound().is_empty(), "{f}");
    assert!(f.stdout.contains("error 1 "), "EPERM expected\n{f}");
}

/// `force-bind ...` started with a listening TCP socket on fd 3 (as an inherited or
/// activated socket would be); returns the command and that socket's port.
fn with_inherited_fd3(engine: Engine, args: &[&str]) -> (std::process::Command, u16) {
    let port = free_port();
    let cmd = force_bind(engine, args);
    let mut argv: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let code = "import os, socket, sys\n\
                s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n\
                os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
                os.execvp(sys.argv[2], sys.argv[2:])\n";
    let port_s = port.to_string();
    let mut py = vec![port_s.as_str()];
    py.extend(argv.iter().map(String::as_str));
    (command(python3(), &python_args(code, &py)[1..]), port)
}

engine_tests! {
    /// A 64-bit program may switch to the i386 ABI with `int $0x80` at any time.
    fn i386_binds_from_a_64_bit_program(engine: Engine) {
        for mode in ["direct", "socketcall"] {
            let f = run(force_bind(engine, &["-b", "127.0.0.6", int80_64(), mode, "0.0.0.0", "0"]));
            if engine == Engine::OldKernel {
                // Before 5.6 the new address must be written into the program, and
                // a 64-bit program's stack is out of a 32-bit pointer's reach:
                // refused, never let through unchecked.
                denied(&f);
            } else {
                only_bound_ip(&f, "127.0.0.6");
            }
            // A real port: -d lets a port-0 bind through (its listen() is judged).
            let port = free_port().to_string();
            denied(&run(force_bind(engine, &["-d", int80_64(), mode, "127.0.0.1", &port])));
        }
    }

    fn a_32_bit_program_is_held_to_the_policy(engine: Engine) {
        let (glibc32, int80_32) = match (build32("static_bind"), build32("int80_bind")) {
            (Ok(glibc32), Ok(int80_32)) => (glibc32, int80_32),
            (Err(why), _) | (_, Err(why)) => return skip(&why),
        };
        only_bound_ip(&run(force_bind(engine, &["-b", "127.0.0.7", glibc32, "0.0.0.0", "0"])), "127.0.0.7");
        let port = free_port().to_string();
        denied(&run(force_bind(engine, &["-d", glibc32, "127.0.0.1", &port])));
        for mode in ["direct", "socketcall"] {
            only_bound_ip(&run(force_bind(engine, &["-b", "127.0.0.7", int80_32, mode, "0.0.0.0", "0"])), "127.0.0.7");
            denied(&run(force_bind(engine, &["-d", int80_32, mode, "127.0.0.1", &port])));
        }
    }

    /// fd= through socketcall: the inherited socket takes the program's place; the
    /// bpf engine refuses the policy (exit 2, one line).
    fn inherited_socket_replaces_an_i386_bind(engine: Engine) {
        let mut programs = vec![int80_64()];
        match build32("int80_bind") {
            Ok(int80_32) => programs.push(int80_32),
            Err(why) => skip(&format!("the 32-bit program is not tried: {why}")),
        }
        for program in programs {
            for mode in ["direct", "socketcall"] {
                let (cmd, port) = with_inherited_fd3(engine, &["-m", ":5555=fd=3", program, mode, "0.0.0.0", "5555"]);
                let f = run(cmd);
                if engine == Engine::Bpf {
                    // By design: the programs cannot put a socket in the program's place.
                    assert_bpf_refuses(&f);
                    continue;
                }
                assert_eq!(f.bound(), vec![v4("127.0.0.1", port)], "{program} {mode}\n{f}");
            }
        }
    }

    /// IORING_OP_BIND never passes through seccomp: io_uring is refused unless
    /// asked for, and the program's fallback bind() meets the policy. Under the bpf
    /// engine IORING_OP_BIND passes the bind hooks: --allow-io-uring is no bypass.
    fn io_uring_is_refused_so_binds_stay_visible(engine: Engine) {
        let port = free_port().to_string();
        let f = run(force_bind(engine, &["-v", "-d", uring_bind(), "127.0.0.1", &port]));
        assert!(f.stdout.contains("io_uring error 38"), "ENOSYS expected\n{f}");
        assert!(f.stdout.contains("via bind"), "{f}");
        denied(&f);
        if engine == Engine::OldKernel {
            // The emulated old kernel has no io_uring at all: nothing more to see.
            return;
        }
        assert!(f.stderr.contains("io_uring_setup: refused: binds through io_uring would bypass the policy"), "{f}");
        // With --allow-io-uring the bypass is real (and this test would see one),
        // except in the kernel's own bind hooks.
        let f = run(force_bind(engine, &["--allow-io-uring", "-d", uring_bind(), "127.0.0.1", &port]));
        assert!(f.stdout.contains("via io_uring"), "{f}");
        if engine == Engine::Bpf {
            denied(&f);
            return;
        }
        assert_eq!(f.bound(), vec![v4("127.0.0.1", port.parse().unwrap())], "{f}");
    }

    /// listen() on a socket nobody bound binds it to 0.0.0.0 (or [::]) on an
    /// ephemeral port: that implicit bind meets the policy like an explicit one.
    fn listen_on_an_unbound_socket_is_judged(engine: Engine) {
        let code = "import socket, sys\n\
                    fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET\n\
                    s = socket.socket(fam)\n\
                    try:\n    \
                        s.listen(); a = s.getsockname()\n    \
                        print('bound', sys.argv[1], f'[{a[0]}]:{a[1]}' if fam == socket.AF_INET6 else f'{a[0]}:{a[1]}')\n\
                    except OSError as e:\n    \
                        print('error', e.errno, '(listen)')\n";
        let covered = engine != Engine::OldKernel;
        let f = run(force_bind(engine, &then(&["-b", "127.0.0.8"], python_args(code, &["4"]))));
        only_bound_ip(&f, if covered { "127.0.0.8" } else { "0.0.0.0" });
        let f = run(force_bind(engine, &then(&["-d"], python_args(code, &["4"]))));
        if covered {
            denied(&f);
        } else {
            // Documented: before pidfd_getfd (5.6) the implicit bind is not seen.
            only_bound_ip(&f, "0.0.0.0");
        }
        let f = run(force_bind(engine, &then(&["-b", "[::1]"], python_args(code, &["6"]))));
        let bound = f.bound();
        assert_eq!(bound.len(), 1, "{f}");
        if covered {
            assert_eq!(bound[0].ip(), "::1".parse::<std::net::IpAddr>().unwrap(), "{f}");
        }
        // No rule: nothing to judge, listen is not even trapped.
        only_bound_ip(&run(force_bind(engine, &python_args(code, &["4"]))), "0.0.0.0");
    }

    /// setsockopt(SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD) binds addresses too: refused
    /// (under bpf no SCTP socket can exist instead).
    fn sctp_bindx_is_refused(engine: Engine) {
        let code = "import socket\n\
                    s = socket.socket()\n\
                    try:\n    \
                        s.setsockopt(132, 100, bytes(16)); print('accepted')\n\
                    except OSError as e:\n    \
                        print('errno', e.errno)\n";
        let native = run(command(python3(), &python_args(code, &[])[1..]));
        assert!(!native.stdout.contains("errno 1\n"), "{native}");
        let f = run(force_bind(engine, &then(&["-b", "127.0.0.1"], python_args(code, &[]))));
        if engine == Engine::Bpf {
            // Not trapped: no SCTP socket can be created under bpf (EPERM from
            // socket(), tests/bpf.rs), so a bindx has nothing to bind; this TCP
            // socket gets the kernel's own answer.
            assert_eq!(f.stdout.trim(), format!("errno {}", libc::ENOPROTOOPT), "{f}");
            return;
        }
        assert_eq!(f.stdout.trim(), "errno 1", "{f}");
    }

    /// The C force-bind's listed race: one thread binds an allowed address while
    /// another swaps in a denied one. Every engine binds the bytes it checked.
    /// bindrace binds port 0, so the deny names port 0 (`-d` alone lets it through).
    fn the_sockaddr_race_never_wins(engine: Engine) {
        let f = run(force_bind(engine, &[
            "-d", "-m", ":0=deny", "-m", "127.0.0.1=allow",
            bindrace(), "127.0.0.1", "127.0.0.2", "20000",
        ]));
        let line = f.stdout.lines().find(|l| l.starts_with("binds ")).unwrap_or_else(|| panic!("{f}"));
        let n: Vec<u32> = line.split_whitespace().skip(1).step_by(2).map(|v| v.parse().unwrap()).collect();
        let (binds, asked, swapped, other, errors) = (n[0], n[1], n[2], n[3], n[4]);
        eprintln!("{engine:?}: {line}");
        assert_eq!(binds, 20000, "{f}");
        assert_eq!((swapped, other), (0, 0), "{line}");
        assert!(asked > 0 && errors > 0, "the race did not happen: {line}");
        // Rewritten: whatever the buffer says, the bind lands on the rule's address.
        let f = run(force_bind(engine, &["-b", "127.0.0.1:0", bindrace(), "0.0.0.0", "127.0.0.2", "20000"]));
        let line = f.stdout.lines().find(|l| l.starts_with("binds ")).unwrap_or_else(|| panic!("{f}"));
        assert!(line.ends_with("asked 0 swapped 0 other 20000 errors 0"), "{line}");
    }
}
