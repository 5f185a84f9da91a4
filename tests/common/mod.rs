//! tests/common: the harness shared by every integration test.
//!
//! It starts force-bind (and the helper programs) as real processes, reads back what
//! the kernel bound from `/proc/net/*` or the probe's `getsockname()` report, and makes
//! sure nothing it started outlives the test. Every wait here is bounded in time.
//!
//! **Skips, and the one switch that forbids them.** A test whose prerequisite is
//! missing here (a program, `gcc -m32`, root, namespaces, the `oldkernel` wrapper
//! built from `../shared/tools/vm`, cargo-deb, a kernel feature) calls [`skip`]:
//! without the switch it prints one line, `SKIPPED <test>: <why>`, on stderr and
//! passes; with `FORCE_BIND_REQUIRE=all` in the environment it fails with the same
//! reason. CI, which has every prerequisite (tests/install-deps.sh), sets the switch
//! (`.ci/run`), so a green CI means every test ran. No other variable (not `CI`)
//! changes this, and a value other than `all` fails a skip too, so that a misspelt
//! switch cannot pass for "skips allowed". A test that does not apply to an engine
//! at all (a limit of that engine, documented in the README) is not generated for
//! it (`not for ENGINE` in [`engine_tests!`]) rather than skipped.
#![allow(dead_code)] // each test binary uses its own subset of the harness

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub mod servers;

/// How long a test waits for anything (a listener, a line, an exit) before failing.
pub const WAIT: Duration = Duration::from_secs(10);
/// Polling step for the bounded waits.
pub const STEP: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Skips
// ---------------------------------------------------------------------------

/// The switch (see the top of this file): `FORCE_BIND_REQUIRE=all` turns every skip
/// into a failure.
pub const REQUIRE: &str = "FORCE_BIND_REQUIRE";

/// The running test cannot do what it is for here, because `why`. Under
/// `FORCE_BIND_REQUIRE=all` this panics: the test fails, saying why. Otherwise it
/// prints `SKIPPED <test>: <why>` (one line) on stderr, and the caller returns, or
/// goes on without the part `why` names. `<test>` is the test's full name, which
/// libtest gives the thread it runs the test on.
#[track_caller]
pub fn skip(why: &str) {
    let current = thread::current();
    let test = current.name().unwrap_or("this test");
    match std::env::var(REQUIRE) {
        Err(std::env::VarError::NotPresent) => {}
        Ok(v) if v.is_empty() => {}
        Ok(v) if v == "all" => panic!("{REQUIRE}=all, so {test} may not skip: {why}"),
        Ok(v) => {
            panic!("{REQUIRE}={v:?} is not `all` (its one value), and {test} would skip: {why}")
        }
        Err(e) => panic!("{REQUIRE}: {e}, and {test} would skip: {why}"),
    }
    let why: Vec<&str> = why
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // Written to the stderr stream itself, not with eprintln!, which libtest captures
    // and shows only for a failed test: a skip is said even when the test passes. One
    // write, so lines of tests running in parallel do not mix.
    let line = format!("SKIPPED {test}: {}\n", why.join(" | "));
    let _ = io::stderr().write_all(line.as_bytes());
}

// ---------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------

/// The supervisor engines force-bind offers. Every engine test runs once per engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Ptrace,
    Notify,
    /// `--engine auto` on an emulated pre-5.0 kernel (shared/tools/vm's `oldkernel`
    /// wrapper hides user notification, pidfd_getfd and NOTIF_ADDFD): auto must pick
    /// ptrace and every behaviour must still hold.
    OldKernel,
    /// `--engine bpf` (root, cgroup2). It refuses what it cannot carry out (fd=/sd=
    /// rules, exit 2 with one line; several-address host names, a deny over the
    /// ephemeral ports); its bind events have no descriptor and no errno for a failed
    /// bind: a test that does not apply says so with
    /// `not for Bpf` and why, and a test of a policy bpf refuses by design asserts
    /// the refusal under Bpf instead ([`Engine::bpf_refuses`]).
    Bpf,
}

impl Engine {
    /// The force-bind options that select this engine.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Engine::Ptrace => &["-p"],
            Engine::Notify => &["--engine", "notify"],
            Engine::OldKernel => &[],
            Engine::Bpf => &["--engine", "bpf"],
        }
    }

    /// A program and its arguments that run force-bind, for engines that need one.
    pub fn wrapper(self) -> Option<[&'static str; 4]> {
        match self {
            Engine::OldKernel => Some([
                oldkernel().expect("oldkernel wrapper"),
                "--as",
                "4.19",
                "--",
            ]),
            _ => None,
        }
    }

    /// Why this engine's tests cannot run here, if they cannot.
    pub fn unavailable(self) -> Option<String> {
        match self {
            Engine::OldKernel => oldkernel().err(),
            Engine::Bpf => bpf_unavailable(),
            _ => None,
        }
    }
}

/// Under `Engine::Bpf`, a policy the bpf engine refuses by design (an `fd=`/`sd=`
/// replacement): exit 2 and one line saying so, before the program runs.
#[track_caller]
pub fn assert_bpf_refuses(f: &Finished) {
    assert_eq!(
        f.code(),
        Some(2),
        "the bpf engine should refuse this policy\n{f}"
    );
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "one line\n{f}");
    assert!(lines[0].contains("--engine bpf: "), "{f}");
}

/// setpriv(1)'s arguments that run a command as nobody, without supplementary
/// groups (the command follows).
#[allow(dead_code)]
pub const AS_NOBODY: &[&str] = &[
    "--reuid",
    "65534",
    "--regid",
    "65534",
    "--clear-groups",
    "--",
];

/// Why the bpf engine cannot run here: it needs root and a writable cgroup2 mount.
pub fn bpf_unavailable() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the bpf engine needs root".into());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !mountinfo.lines().any(|l| l.contains(" - cgroup2 ")) {
        return Some("no cgroup2 mount for the bpf engine".into());
    }
    None
}

/// Generates one `#[test]` per engine for each `fn name(engine: Engine) { ... }`,
/// in modules named after the engine (`ptrace::name`, `notify::name`,
/// `old_kernel::name`, `bpf::name`). Use it once per test file. An engine that cannot run here
/// (`Engine::unavailable`) makes its tests [`skip`]. A test that does not apply to an
/// engine by design says so, with the reason in its doc comment:
/// `fn name(engine: Engine) not for OldKernel { ... }`; that engine has no such test.
#[allow(unused_macros)]
macro_rules! engine_tests {
    ($($tests:tt)*) => {
        $crate::common::engine_module! { ptrace, Ptrace, $($tests)* }
        $crate::common::engine_module! { notify, Notify, $($tests)* }
        $crate::common::engine_module! { old_kernel, OldKernel, $($tests)* }
        $crate::common::engine_module! { bpf, Bpf, $($tests)* }
    };
}
#[allow(unused_imports)]
pub(crate) use engine_tests;

/// One engine's module of tests; see `engine_tests!`.
#[allow(unused_macros)]
macro_rules! engine_module {
    ($module:ident, $variant:ident,
     $( $(#[$attr:meta])* fn $name:ident($engine:ident: Engine)
        $(not for $($not:ident),+)? $body:block )*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                $crate::common::engine_test! {
                    $variant [$($($not)+)?] $(#[$attr])* fn $name($engine) $body
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use engine_module;

/// One engine's test, or nothing when the engine is in the `[...]` list of engines
/// the test is not for; see `engine_tests!`.
#[allow(unused_macros)]
macro_rules! engine_test {
    (Ptrace [Ptrace $($rest:ident)*] $($test:tt)*) => {};
    (Notify [Notify $($rest:ident)*] $($test:tt)*) => {};
    (OldKernel [OldKernel $($rest:ident)*] $($test:tt)*) => {};
    (Bpf [Bpf $($rest:ident)*] $($test:tt)*) => {};
    ($variant:ident [$other:ident $($rest:ident)*] $($test:tt)*) => {
        // A misspelt engine would silently exclude nothing: name it, so it must exist.
        const _: $crate::common::Engine = $crate::common::Engine::$other;
        $crate::common::engine_test! { $variant [$($rest)*] $($test)* }
    };
    ($variant:ident [] $(#[$attr:meta])* fn $name:ident($engine:ident) $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            let $engine = $crate::common::Engine::$variant;
            if let Some(why) = $engine.unavailable() {
                return $crate::common::skip(&why);
            }
            $body
        }
    };
}
#[allow(unused_imports)]
pub(crate) use engine_test;

/// The `oldkernel` wrapper, built once from the company's shared VM tools (checked
/// out beside this repository, as CI has them). Err says why it is not available.
pub fn oldkernel() -> Result<&'static str, String> {
    static PATH: OnceLock<Result<String, String>> = OnceLock::new();
    PATH.get_or_init(|| {
        let src = std::env::var_os("FORCE_BIND_OLDKERNEL_C")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/vm/probe/oldkernel.c")
            });
        if !src.exists() {
            return Err(format!(
                "{} not found (the shared VM tools; set FORCE_BIND_OLDKERNEL_C to its oldkernel.c)",
                src.display()
            ));
        }
        let dir = tmp_dir().join("oldkernel");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!("oldkernel.{}", std::process::id()));
        let out = Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&tmp)
            .arg(&src)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("gcc: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "gcc -static oldkernel.c failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = dir.join("oldkernel");
        fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        Ok(path.to_str().expect("utf-8 path").to_string())
    })
    .as_deref()
    .map_err(Clone::clone)
}

// ---------------------------------------------------------------------------
// Programs under test
// ---------------------------------------------------------------------------

pub fn force_bind_bin() -> &'static str {
    env!("CARGO_BIN_EXE_force-bind")
}

/// A scratch directory cargo keeps for integration tests (`target/tmp`).
pub fn tmp_dir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A path in `tmp_dir()` unique to this process and call.
pub fn tmp_path(stem: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    tmp_dir().join(format!("{stem}-{}-{n}", std::process::id()))
}

/// The `bindprobe` example, which `cargo test` builds next to the main binary.
pub fn bindprobe() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| example("bindprobe"))
}

/// The `bindrace` example: one thread binds while another rewrites the sockaddr.
pub fn bindrace() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| example("bindrace"))
}

/// An example program's path. `cargo test --test NAME` and `cargo test --tests` do
/// not build examples, so a missing one is built with the same cargo, profile and
/// target directory.
pub fn example(name: &str) -> String {
    let profile_dir = Path::new(force_bind_bin()).parent().expect("bin dir");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        build_example(profile_dir, name);
    }
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --examples` first",
        path.display()
    );
    path.to_str().expect("utf-8 path").to_string()
}

fn build_example(profile_dir: &Path, name: &str) {
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") => "dev",
        Some(other) => other,
        None => "dev",
    };
    let target_dir = profile_dir.parent().expect("target dir");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--example", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build --example");
    assert!(
        out.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real python3 interpreter (pyenv shims are shell scripts that cost ~100 ms each).
pub fn python3() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .expect("python3 is needed by the tests");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !path.is_empty(),
            "python3 -c failed"
        );
        path
    })
}

/// `tests/c/static_bind.c` compiled with `gcc -static -O2`, once per test process.
pub fn static_bind() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/static_bind.c");
        let dir = tmp_dir().join("static_bind");
        fs::create_dir_all(&dir).expect("create static_bind dir");
        // Build under a private name and rename, so concurrent test processes never
        // run a half-written binary.
        let tmp = dir.join(format!("static_bind.{}", std::process::id()));
        let out = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .stdin(Stdio::null())
            .output()
            .expect("gcc is needed for the static target");
        assert!(
            out.status.success(),
            "gcc -static failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join("static_bind");
        fs::rename(&tmp, &path).expect("rename static_bind");
        path.to_str().expect("utf-8 path").to_string()
    })
}

/// `tests/c/NAME.c` compiled with `gcc -O2 -Wall FLAGS`, once per test process and
/// name (the flags of the first call win). Like `static_bind`, it is built under a
/// private name and renamed, so concurrent test processes never run a half-written file.
pub fn c_program(name: &str, flags: &[&str]) -> &'static str {
    c_build(name, name, flags).unwrap_or_else(|e| panic!("{e}"))
}

/// `tests/c/SRC.c` compiled with `gcc -O2 -Wall FLAGS` into OUT, once per test
/// process and OUT; Err with gcc's message when it cannot be built (say, `-m32`
/// without gcc-multilib).
pub fn c_build(src: &str, out_name: &str, flags: &[&str]) -> Result<&'static str, String> {
    static BUILT: Mutex<Vec<(String, Result<&'static str, String>)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, result)) = built.iter().find(|(n, _)| n == out_name) {
        return result.clone();
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{src}.c"));
    let dir = tmp_dir().join(out_name);
    fs::create_dir_all(&dir).expect("create C target dir");
    let tmp = dir.join(format!("{out_name}.{}", std::process::id()));
    let out = Command::new("gcc")
        .args(["-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .expect("gcc is needed for the C targets");
    let result = if out.status.success() {
        let path = dir.join(out_name);
        fs::rename(&tmp, &path).expect("rename C target");
        Ok(&*Box::leak(path.to_str().expect("utf-8 path").into()))
    } else {
        Err(format!(
            "gcc {flags:?} {src}.c failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    built.push((out_name.to_string(), result.clone()));
    result
}

/// True when `path` is an ELF executable without a PT_INTERP program header,
/// i.e. the kernel runs it without a dynamic loader.
pub fn is_static_elf(path: &str) -> bool {
    const PT_INTERP: u32 = 3;
    let data = fs::read(path).expect("read ELF");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return false; // not a little-endian ELF64 file
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= data.len() && u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) != PT_INTERP
    })
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

fn base_command(program: impl AsRef<OsStr>) -> Command {
    become_subreaper();
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(tmp_dir())
        // A process group of its own, so the guard can kill everything it started.
        .process_group(0)
        // The test runner itself might be socket-activated; don't leak that.
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

/// `force-bind <engine options> ARGS...` (ARGS holds force-bind's options and the program).
pub fn force_bind(engine: Engine, args: &[&str]) -> Command {
    let mut cmd = match engine.wrapper() {
        Some([program, rest @ ..]) => {
            let mut cmd = base_command(program);
            cmd.args(rest).arg(force_bind_bin());
            cmd
        }
        None => base_command(force_bind_bin()),
    };
    cmd.args(engine.args()).args(args);
    cmd
}

/// `force-bind ARGS...` without an engine option, for command-line tests.
pub fn force_bind_plain(args: &[&str]) -> Command {
    let mut cmd = base_command(force_bind_bin());
    cmd.args(args);
    cmd
}

/// `systemd-socket-activate -l LISTEN SA_ARGS... force-bind <engine> ARGS...`.
///
/// systemd-socket-activate waits for the first connection on LISTEN, then sets
/// LISTEN_PID to its own PID and execs force-bind, so force-bind's PID is the PID
/// of the returned command's child.
pub fn socket_activate(
    listen: SocketAddr,
    sa_args: &[&str],
    engine: Engine,
    args: &[&str],
) -> Command {
    let mut cmd = base_command("systemd-socket-activate");
    cmd.arg("-l")
        .arg(listen.to_string())
        .args(sa_args)
        .args(engine.wrapper().iter().flatten())
        .arg(force_bind_bin())
        .args(engine.args())
        .args(args);
    cmd
}

/// Any program with the harness's usual setup (process group, piped output, tmp cwd).
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = base_command(program);
    cmd.args(args);
    cmd
}

/// `python3 -c CODE ARGS...` as a force-bind target.
pub fn python_args<'a>(code: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![python3(), "-c", code];
    v.extend_from_slice(args);
    v
}

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    stderr: String,
    open_streams: usize,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// A started process and everything it starts. Dropping it kills the whole tree
/// (its process group and every descendant found in /proc) with SIGKILL and reaps
/// the direct child.
pub struct Proc {
    child: Child,
    desc: String,
    stdin: Option<ChildStdin>,
    shared: Shared,
    status: Option<ExitStatus>,
}

/// A finished process: its status and everything it wrote.
pub struct Finished {
    pub desc: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Proc {
    /// Starts `cmd` with stdin closed (/dev/null).
    pub fn spawn(cmd: Command) -> Proc {
        Self::start(cmd, false)
    }

    /// Starts `cmd` with a pipe on stdin; see `write_stdin` and `close_stdin`.
    pub fn spawn_with_stdin(cmd: Command) -> Proc {
        Self::start(cmd, true)
    }

    fn start(mut cmd: Command, piped_stdin: bool) -> Proc {
        if piped_stdin {
            cmd.stdin(Stdio::piped());
        }
        let desc = describe(&cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let shared: Shared = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        shared.0.lock().unwrap().open_streams = 2;
        let s = Arc::clone(&shared);
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                let (m, cv) = &*s;
                m.lock()
                    .unwrap()
                    .lines
                    .push(line.trim_end_matches('\n').to_string());
                cv.notify_all();
                line.clear();
            }
            let (m, cv) = &*s;
            m.lock().unwrap().open_streams -= 1;
            cv.notify_all();
        });
        let s = Arc::clone(&shared);
        thread::spawn(move || {
            let mut reader = stderr;
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (m, cv) = &*s;
                m.lock()
                    .unwrap()
                    .stderr
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
                cv.notify_all();
            }
            let (m, cv) = &*s;
            m.lock().unwrap().open_streams -= 1;
            cv.notify_all();
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            desc,
            stdin,
            shared,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn desc(&self) -> &str {
        &self.desc
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.shared.0.lock().unwrap().lines.clone()
    }

    pub fn stderr(&self) -> String {
        self.shared.0.lock().unwrap().stderr.clone()
    }

    /// Waits until a stdout line satisfies `pred`; returns it, or None after `timeout`.
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut out = m.lock().unwrap();
        loop {
            if let Some(l) = out.lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || out.open_streams == 0 {
                return None;
            }
            out = cv
                .wait_timeout(out, left.min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
    }

    /// Waits until stderr contains `needle`, at most `timeout`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut out = m.lock().unwrap();
        loop {
            if out.stderr.contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || out.open_streams == 0 {
                return false;
            }
            out = cv
                .wait_timeout(out, left.min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
    }

    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("spawned with spawn_with_stdin");
        stdin
            .write_all(text.as_bytes())
            .expect("write to child's stdin");
        stdin.flush().expect("flush child's stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `sig` to the direct child (force-bind) only.
    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// Polls for exit for at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.status = Some(st);
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Still running (not exited, not reaped)?
    pub fn is_running(&mut self) -> bool {
        self.wait_timeout(Duration::ZERO).is_none()
    }

    /// Waits for the process to exit by itself within `timeout`; panics (after killing
    /// the tree) with its output if it doesn't.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        self.close_stdin();
        if self.wait_timeout(timeout).is_none() {
            self.kill_tree();
            let _ = self.wait_timeout(WAIT);
            let f = self.collect();
            panic!("timed out after {timeout:?}:\n{f}");
        }
        self.collect()
    }

    /// Kills the whole tree and returns what it wrote.
    pub fn kill(mut self) -> Finished {
        self.kill_tree();
        self.collect()
    }

    /// Every process started by this one (recursively), from /proc.
    pub fn descendants(&self) -> Vec<i32> {
        descendants(self.pid())
    }

    fn kill_tree(&mut self) {
        let pid = self.pid();
        let mut strays = Vec::new();
        if self.status.is_none() {
            // Descendants that left the process group still get killed by PID.
            strays = descendants(pid);
            for &p in &strays {
                send_signal(p, libc::SIGKILL);
            }
            send_signal(pid, libc::SIGKILL);
        }
        // SAFETY: kill(2) on the process group this harness created for its child
        // (process_group(0) makes the group ID the child's PID); it also reaches
        // grandchildren that outlived the child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        reap_orphans(pid, &strays);
    }

    /// The command and what it wrote so far, for assertion messages.
    pub fn context(&self) -> String {
        let out = self.shared.0.lock().unwrap();
        format!(
            "command: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.desc,
            out.lines.join("\n"),
            out.stderr
        )
    }

    fn collect(&mut self) -> Finished {
        let status = match self.status {
            Some(s) => s,
            None => self.child.wait().expect("wait"),
        };
        self.status = Some(status);
        // Output ends when every writer is gone; a stray holder of the pipes must not
        // hang the test, so wait a bounded time only.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (m, cv) = &*self.shared;
        let mut out = m.lock().unwrap();
        while out.open_streams > 0 && Instant::now() < deadline {
            out = cv.wait_timeout(out, Duration::from_millis(50)).unwrap().0;
        }
        let mut stdout = out.lines.join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        Finished {
            desc: self.desc.clone(),
            status,
            stdout,
            stderr: out.stderr.clone(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill_tree();
    }
}

/// Runs `cmd` to completion (at most 20 s) and returns its status and output.
pub fn run(cmd: Command) -> Finished {
    Proc::spawn(cmd).finish(Duration::from_secs(20))
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The probe's report, parsed.
    pub fn probe(&self) -> Vec<Probe> {
        parse_probe(&self.stdout)
    }

    /// The addresses the probe reported as bound, in order.
    pub fn bound(&self) -> Vec<SocketAddr> {
        bound_addrs(&self.stdout)
    }

    /// Asserts a zero exit status.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code(), Some(0), "expected exit 0:\n{self}");
        self
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.desc)?;
        writeln!(f, "status: {:?}", self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!("'{a}'"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Makes this test process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER),
/// so a program left behind by a killed force-bind is reparented here and reaped by
/// `reap_orphans` instead of lingering as a zombie under a PID 1 that may not reap.
fn become_subreaper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// Reaps (by PID, never waitpid(-1), which would steal other tests' children) the
/// processes of group `pgid`, or listed in `strays`, that were reparented to us.
fn reap_orphans(pgid: i32, strays: &[i32]) {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let orphans: Vec<i32> = proc_table()
            .into_iter()
            .filter(|e| e.ppid == me && (e.pgrp == pgid || strays.contains(&e.pid)))
            .map(|e| e.pid)
            .collect();
        if orphans.is_empty() || Instant::now() >= deadline {
            return;
        }
        for p in orphans {
            send_signal(p, libc::SIGKILL);
            let mut status = 0;
            // SAFETY: waitpid(2) on a specific PID that is our own (adopted) child.
            unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
        }
        thread::sleep(Duration::from_millis(5));
    }
}

pub fn send_signal(pid: i32, sig: i32) {
    assert!(pid > 0, "refusing to signal pid {pid}");
    // SAFETY: kill(2) with a positive PID of a process this harness started.
    unsafe { libc::kill(pid, sig) };
}

// ---------------------------------------------------------------------------
// /proc/<pid>
// ---------------------------------------------------------------------------

/// One process as /proc/PID/stat describes it.
#[derive(Clone, Copy, Debug)]
pub struct ProcEntry {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// /proc/PID/stat; None once the process is gone.
pub fn proc_entry(pid: i32) -> Option<ProcEntry> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may contain spaces and parentheses, so split
    // after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcEntry {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// (state, ppid) from /proc/PID/stat; None once the process is gone.
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    proc_entry(pid).map(|e| (e.state, e.ppid))
}

/// Every process in /proc.
pub fn proc_table() -> Vec<ProcEntry> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_entry)
        .collect()
}

/// The process state letter (R, S, D, T, t, Z, ...), None once the process is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    proc_stat(pid).map(|(s, _)| s)
}

/// Direct children of `pid`. Uses /proc/PID/task/TID/children when the kernel has it
/// (CONFIG_PROC_CHILDREN), else scans every /proc/N/stat for the parent PID.
pub fn children_of(pid: i32) -> Vec<i32> {
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        let mut found = None;
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                let v: &mut Vec<i32> = found.get_or_insert_with(Vec::new);
                v.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
        if let Some(v) = found {
            return v;
        }
    }
    parents()
        .into_iter()
        .filter(|&(_, pp)| pp == pid)
        .map(|(p, _)| p)
        .collect()
}

fn parents() -> Vec<(i32, i32)> {
    proc_table().into_iter().map(|e| (e.pid, e.ppid)).collect()
}

/// Every descendant of `root`, from one scan of /proc.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut by_parent: HashMap<i32, Vec<i32>> = HashMap::new();
    for (p, pp) in parents() {
        by_parent.entry(pp).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    let mut seen = HashSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p) || seen.len() > 10_000 {
            continue;
        }
        for &c in by_parent.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// The command name of `pid` (/proc/PID/comm), None once it is gone.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// Waits (bounded) until `pid` has a child whose command name is `name` (so a
/// short-lived helper child of force-bind is never mistaken for the program).
pub fn wait_for_child(pid: i32, name: &str, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = children_of(pid)
            .into_iter()
            .find(|&c| comm(c).as_deref() == Some(name));
        if found.is_some() {
            return found;
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(STEP);
    }
}

/// Waits (bounded) until `pred` holds.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(STEP);
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports come from below the kernel's ephemeral range (ip_local_port_range starts at
/// 32768 by default), so no connect() or bind(:0) elsewhere can take one between the
/// check and the test's use. Each test process starts at its own PID-derived offset.
const PORT_LOW: u16 = 20000;
const PORT_HIGH: u16 = 32000;

/// A loopback TCP+UDP port nobody uses, unique within this test process.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free ports.
pub fn free_ports(n: u16) -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    assert!((1..100).contains(&n));
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let start = next.get_or_insert_with(|| PORT_LOW + (std::process::id() % 997) as u16 * 11);
    for _ in 0..2000 {
        if *start + n >= PORT_HIGH {
            *start = PORT_LOW;
        }
        let first = *start;
        *start += n;
        if (first..first + n).all(port_is_free) {
            return first;
        }
    }
    panic!("no {n} free consecutive ports in {PORT_LOW}..{PORT_HIGH}");
}

fn port_is_free(port: u16) -> bool {
    let used = [Proto::Tcp, Proto::Udp]
        .into_iter()
        .flat_map(sockets)
        .any(|s| s.addr.port() == port);
    !used
        && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

// ---------------------------------------------------------------------------
// /proc/net
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// TCP_LISTEN in include/net/tcp_states.h.
pub const TCP_LISTEN: u8 = 0x0A;
/// TCP_CLOSE: the state of a bound, unconnected UDP socket.
pub const TCP_CLOSE: u8 = 0x07;

/// One row of /proc/net/{tcp,tcp6,udp,udp6}.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetSocket {
    pub addr: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// Decodes the kernel's `ADDR:PORT` hex pair. The address is printed as the in-memory
/// 32-bit words of `struct in_addr` / `struct in6_addr` (one or four of them), each with
/// `%08X` — so each word is in host byte order — and the port as `%04X` of the
/// host-order port (net/ipv4/tcp_ipv4.c get_tcp4_sock, net/ipv6/tcp_ipv6.c).
pub fn decode_proc_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match addr.len() {
        8 => Some(SocketAddr::new(Ipv4Addr::from(word(0)?).into(), port)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(SocketAddr::new(Ipv6Addr::from(bytes).into(), port))
        }
        _ => None,
    }
}

/// Parses the text of one /proc/net/{tcp,udp}{,6} file.
pub fn parse_proc_net(text: &str) -> Vec<NetSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(NetSocket {
                addr: decode_proc_addr(f.get(1)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// Every socket of `proto` in this network namespace, IPv4 and IPv6 files together.
pub fn sockets(proto: Proto) -> Vec<NetSocket> {
    let files: [&str; 2] = match proto {
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    };
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|t| parse_proc_net(&t))
        .collect()
}

/// Listening sockets: TCP in LISTEN, or UDP bound and unconnected.
pub fn listening(proto: Proto) -> Vec<NetSocket> {
    let state = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => TCP_CLOSE,
    };
    sockets(proto)
        .into_iter()
        .filter(|s| s.state == state)
        .collect()
}

/// Addresses of TCP listeners on `port`, any address.
pub fn tcp_listeners_on(port: u16) -> Vec<SocketAddr> {
    listening(Proto::Tcp)
        .into_iter()
        .map(|s| s.addr)
        .filter(|a| a.port() == port)
        .collect()
}

/// Is there a TCP listener at exactly `addr`?
pub fn is_listening(addr: SocketAddr) -> bool {
    listening(Proto::Tcp).iter().any(|s| s.addr == addr)
}

/// Polls /proc/net/tcp{,6} (every 20 ms) until `addr` is in LISTEN, at most `timeout`.
pub fn wait_for_listen(addr: SocketAddr, timeout: Duration) -> bool {
    wait_until(timeout, || is_listening(addr))
}

pub fn v4(a: &str, port: u16) -> SocketAddr {
    SocketAddr::new(a.parse::<Ipv4Addr>().expect("IPv4 literal").into(), port)
}

pub fn v6(a: &str, port: u16) -> SocketAddr {
    SocketAddr::new(a.parse::<Ipv6Addr>().expect("IPv6 literal").into(), port)
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// One `GET / HTTP/1.0` over a fresh TcpStream; returns the status code.
pub fn http_get(addr: SocketAddr, timeout: Duration) -> io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    s.take(64 * 1024).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(io::Error::other(format!(
            "not an HTTP response: {status_line:?}"
        ))),
    }
}

/// Retries `http_get` until it returns a status or `timeout` passes (the server may
/// still be starting). Returns the status or the last error.
pub fn http_get_retry(addr: SocketAddr, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match http_get(addr, left.max(Duration::from_millis(100))) {
            Ok(code) => return Ok(code),
            Err(e) if Instant::now() >= deadline => return Err(format!("GET {addr}: {e}")),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

// ---------------------------------------------------------------------------
// bindprobe's report
// ---------------------------------------------------------------------------

/// One line of bindprobe (or static_bind) output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Bound(SocketAddr),
    BoundUnix(String),
    Error(i32),
    Ready,
    Other(String),
}

pub fn parse_probe(stdout: &str) -> Vec<Probe> {
    stdout
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["bound", "unix", path, ..] => Probe::BoundUnix(path.to_string()),
                ["bound", _, addr, ..] => match addr.parse() {
                    Ok(a) => Probe::Bound(a),
                    Err(_) => Probe::Other(line.to_string()),
                },
                ["error", errno, ..] => match errno.parse() {
                    Ok(e) => Probe::Error(e),
                    Err(_) => Probe::Other(line.to_string()),
                },
                ["ready"] => Probe::Ready,
                _ => Probe::Other(line.to_string()),
            }
        })
        .collect()
}

pub fn bound_addrs(stdout: &str) -> Vec<SocketAddr> {
    parse_probe(stdout)
        .into_iter()
        .filter_map(|p| match p {
            Probe::Bound(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// The one address a probe run reported; panics with the run's output otherwise.
pub fn single_bound(f: &Finished) -> SocketAddr {
    match f.probe().as_slice() {
        [Probe::Bound(a)] => *a,
        _ => panic!("expected exactly one `bound` line:\n{f}"),
    }
}

/// The accept-queue limit (listen backlog) of the TCP listener at `addr`, from
/// `ss -Hltn` (its Send-Q column for listening sockets); None if absent.
pub fn listen_backlog(addr: SocketAddr) -> Option<u32> {
    let out = Command::new("ss")
        .args(["-Hltn"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_state, _recv_q, send_q, local, ..]
                if local.parse::<SocketAddr>().ok() == Some(addr) =>
            {
                send_q.parse().ok()
            }
            _ => None,
        }
    })
}

// ---------------------------------------------------------------------------
// The README's recipes (tests/recipes.rs, tests/agent.rs)
// ---------------------------------------------------------------------------

/// A file of this repository, read whole.
pub fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The fenced block that follows `<!-- recipe: NAME -->` in the README.
pub fn readme_block(name: &str) -> String {
    let readme = repo_file("README.md");
    let marker = format!("<!-- recipe: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "{marker} is not followed by a block"
    );
    let mut block = String::new();
    for line in lines.by_ref() {
        if line.starts_with("```") {
            return block;
        }
        block.push_str(line);
        block.push('\n');
    }
    panic!("{marker}: unterminated block");
}
