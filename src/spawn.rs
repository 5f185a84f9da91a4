// spawn.rs: finding the program, fork/exec, and what the child does between the two
// (wait for the supervisor, install the seccomp filter). Everything the child needs
// is prepared before fork: after it, the child only makes raw syscalls.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use seccompiler::sock_filter;

use crate::activation::LISTEN_PID;

/// The program could not be started; exits 127 or 126 like a shell would.
#[derive(Debug)]
pub enum SpawnError {
    NotFound(OsString),
    NotExecutable(OsString, Errno),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound(p) => write!(f, "{}: command not found", p.to_string_lossy()),
            SpawnError::NotExecutable(p, e) => {
                write!(f, "{}: cannot execute: {}", p.to_string_lossy(), e.desc())
            }
        }
    }
}

impl std::error::Error for SpawnError {}

impl SpawnError {
    /// Why execve(2) of `name` failed, as a shell would say it.
    pub fn at_exec(name: &OsStr, errno: Errno) -> SpawnError {
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => SpawnError::NotFound(name.to_owned()),
            e => SpawnError::NotExecutable(name.to_owned(), e),
        }
    }
}

/// Why a run ended without the program's own status: what an engine returns, decided
/// where it is known (not downcast at the top), and how force-bind leaves for it.
#[derive(Debug)]
pub enum RunError {
    /// The program could not be executed (127 or 126, like a shell).
    Spawn(SpawnError),
    /// force-bind's own failure (125), with its context.
    Engine(anyhow::Error),
    /// The chosen engine cannot carry this policy out (2, like a bad rule): one line.
    Refused(String),
}

impl From<SpawnError> for RunError {
    fn from(e: SpawnError) -> Self {
        RunError::Spawn(e)
    }
}

impl From<anyhow::Error> for RunError {
    fn from(e: anyhow::Error) -> Self {
        RunError::Engine(e)
    }
}

/// The program, resolved and encoded for execve(2).
pub struct Program {
    name: OsString,
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// "LISTEN_PID=" followed by room for the child's PID, filled in after fork.
    listen_pid: Option<Vec<u8>>,
}

impl Program {
    /// Resolves `command[0]` the way execvp(3) does (a name with a '/' is a path,
    /// otherwise the first executable match in PATH), so a missing or unusable
    /// program is reported before anything is started.
    pub fn new(
        command: &[OsString],
        env: Vec<CString>,
        set_listen_pid: bool,
    ) -> Result<Program, SpawnError> {
        let name = command[0].clone();
        let path = resolve(&name, std::env::var_os("PATH").as_deref())?;
        let cstring =
            |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| SpawnError::NotFound(name.clone()));
        let argv = command
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?;
        Ok(Program {
            path: cstring(path.as_os_str())?,
            name,
            argv,
            env,
            listen_pid: set_listen_pid.then(|| format!("{LISTEN_PID}={:<10}\0", "").into_bytes()),
        })
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }
}

fn resolve(name: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let not_found = || SpawnError::NotFound(name.to_owned());
    if name.is_empty() {
        return Err(not_found());
    }
    let check = |p: &Path| -> Result<(), Errno> {
        let meta = std::fs::metadata(p)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
        if meta.is_dir() {
            return Err(Errno::EISDIR);
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    };
    if name.as_bytes().contains(&b'/') {
        let p = PathBuf::from(name);
        return match check(&p) {
            Ok(()) => Ok(p),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Err(not_found()),
            Err(e) => Err(SpawnError::NotExecutable(name.to_owned(), e)),
        };
    }
    let dirs = path_var
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    let mut unusable = None;
    for dir in dirs.split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(name);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(e) => unusable = unusable.or(Some(e)),
        }
    }
    Err(match unusable {
        Some(e) => SpawnError::NotExecutable(name.to_owned(), e),
        None => not_found(),
    })
}

/// A started child, not yet known to have exec'd, that an engine has taken charge of:
/// from here on the engine's own wait loop reaps it.
pub struct Child {
    pub pid: Pid,
    /// Read end of a close-on-exec pipe: EOF once exec succeeded, the errno if not.
    exec_status: OwnedFd,
}

impl Child {
    /// Why exec failed, once the child has exited without exec'ing; None if it did exec.
    pub fn exec_error(&self) -> Option<Errno> {
        let mut buf = [0u8; 4];
        match nix::unistd::read(&self.exec_status, &mut buf) {
            Ok(4) => Some(Errno::from_raw(i32::from_ne_bytes(buf))),
            _ => None,
        }
    }
}

/// The child while an engine sets up around it. Every way out of the set-up but
/// `hand_over` (an error, `?`, a fallback to another engine, a panic) drops it, and
/// dropping it SIGKILLs and reaps the child: no half-started program runs on without
/// its engine, and none is left a zombie.
pub struct Starting(Option<Child>, bool);

impl Starting {
    pub fn pid(&self) -> Pid {
        self.child().pid
    }

    /// Whether the child started in the cgroup `spawn_into` asked for.
    pub fn placed(&self) -> bool {
        self.1
    }

    /// As `Child::exec_error`.
    pub fn exec_error(&self) -> Option<Errno> {
        self.child().exec_error()
    }

    /// The engine's wait loop takes over: from now on it reaps the child (and a later
    /// kill could hit an unrelated process that reused the PID).
    pub fn hand_over(mut self) -> Child {
        self.0
            .take()
            .expect("a Starting holds its child until handed over")
    }

    fn child(&self) -> &Child {
        self.0
            .as_ref()
            .expect("a Starting holds its child until handed over")
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            kill_and_reap(child.pid);
        }
    }
}

/// SIGKILLs `pid`, a child of ours not yet reaped, and waits until it is gone. Safe
/// against PID reuse only because the PID stays ours until it is reaped here.
pub fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return,
            // A ptrace stop reported before the death (a traced child): wait on.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// The signals force-bind passes on to the program (exit.rs); blocked across fork so
/// none is lost before the handlers exist or runs a handler in the child.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in crate::exit::FORWARDED {
        set.add(s);
    }
    set
}

/// Forks and execs `program`. `before_exec` runs in the child first; it must be
/// async-signal-safe (no allocation, no locks): the parent may have threads.
pub fn spawn(
    program: &mut Program,
    before_exec: impl FnOnce() -> Result<(), Errno>,
) -> anyhow::Result<Starting> {
    spawn_into(program, None, before_exec)
}

/// struct clone_args (<linux/sched.h>), up to `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(), or with `cgroup` (a cgroup2 directory) clone3(CLONE_INTO_CGROUP), which
/// starts the child in that cgroup: no migration afterwards, which costs an RCU grace
/// period (several ms) on every cgroup.procs write. True when the child was placed;
/// false when this kernel cannot (before 5.7) and it is a plain fork.
///
/// # Safety
/// As fork(2) in a process that may have threads: the child may only make
/// async-signal-safe calls. clone3 bypasses glibc's fork, so the child's thread
/// descriptor keeps the parent thread's cached TID: nothing the child runs may use it
/// (no raise, no pthread calls).
unsafe fn fork_into(cgroup: Option<RawFd>) -> nix::Result<(ForkResult, bool)> {
    if let Some(fd) = cgroup {
        let mut args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd as u64,
            ..CloneArgs::default()
        };
        // SAFETY: `args` is a valid clone_args of the size passed; without CLONE_VM
        // and with no stack the child runs on a copy of this stack, as after fork.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                size_of::<CloneArgs>(),
            )
        };
        match Errno::result(rc) {
            Ok(0) => return Ok((ForkResult::Child, true)),
            Ok(pid) => {
                return Ok((
                    ForkResult::Parent {
                        child: Pid::from_raw(pid as i32),
                    },
                    true,
                ));
            }
            // No clone3 or no CLONE_INTO_CGROUP: fork, and the caller moves the child.
            Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: the caller's contract.
    unsafe { fork() }.map(|r| (r, false))
}

/// As `spawn`, starting the child in the cgroup whose directory `cgroup` is open
/// where the kernel can (`Starting::placed`).
pub fn spawn_into(
    program: &mut Program,
    cgroup: Option<RawFd>,
    before_exec: impl FnOnce() -> Result<(), Errno>,
) -> anyhow::Result<Starting> {
    let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let mut argv: Vec<*const libc::c_char> = program.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = program.env.iter().map(|e| e.as_ptr()).collect();
    let listen_pid_ptr = program.listen_pid.as_mut().map(|buf| buf.as_mut_ptr());
    if let Some(p) = listen_pid_ptr {
        envp.push(p as *const libc::c_char);
    }
    envp.push(std::ptr::null());

    let mut old_mask = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&forwarded_signals()),
        Some(&mut old_mask),
    )
    .context("sigprocmask")?;
    // SAFETY: the child only makes raw syscalls (sigprocmask, whatever `before_exec`
    // does under its own contract, execve, write, _exit) on memory prepared above.
    let (forked, placed) = unsafe { fork_into(cgroup) }.context("cannot fork")?;
    match forked {
        ForkResult::Child => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
            // force-bind made itself non-dumpable (lib.rs) and the child inherits
            // that; the ptrace engine must be able to seize this child, and execve
            // sets the program's own dumpability anyway.
            // SAFETY: prctl with integer arguments, async-signal-safe.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            if let Some(p) = listen_pid_ptr {
                // SAFETY: the buffer is "LISTEN_PID=" plus 10 spaces and a NUL, owned by
                // `program`, which outlives this child's use of it.
                unsafe { write_pid(p.add(LISTEN_PID.len() + 1)) };
            }
            let errno = match before_exec() {
                Ok(()) => {
                    // SAFETY: path, argv and envp are NUL-terminated strings and
                    // NULL-terminated arrays that live until exec replaces us.
                    unsafe { libc::execve(program.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                    Errno::last()
                }
                Err(e) => e,
            };
            let bytes = (errno as i32).to_ne_bytes();
            // SAFETY: write and _exit are async-signal-safe; nothing else runs here.
            unsafe {
                libc::write(status_write.as_raw_fd(), bytes.as_ptr().cast(), 4);
                libc::_exit(crate::exit::NOT_FOUND)
            }
        }
        ForkResult::Parent { child } => {
            drop(status_write);
            let started = Starting(
                Some(Child {
                    pid: child,
                    exec_status: status_read,
                }),
                placed,
            );
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None).context("sigprocmask")?;
            Ok(started)
        }
    }
}

/// Writes the calling process's PID in decimal over the 10 bytes at `digits`,
/// without allocating (we are between fork and exec).
///
/// # Safety
/// `digits` must point at 10 writable bytes.
unsafe fn write_pid(digits: *mut u8) {
    // SAFETY: getpid cannot fail.
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut tmp = [b' '; 10];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (pid % 10) as u8;
        pid /= 10;
        n += 1;
        if pid == 0 || n == tmp.len() {
            break;
        }
    }
    for i in 0..10 {
        // A shorter number is NUL-terminated early; the spaces after it never show.
        let byte = if i < n { tmp[n - 1 - i] } else { 0 };
        // SAFETY: i < 10, within the caller's buffer.
        unsafe { *digits.add(i) = byte };
    }
}

/// A blocking read of one byte: the child's wait for the supervisor's go-ahead.
pub fn wait_for_byte(fd: RawFd) -> Result<(), Errno> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a local.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => return Err(Errno::EPIPE),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    }
}

/// Installs `filter` on the calling thread, setting no_new_privs first (required
/// without CAP_SYS_ADMIN; it also keeps a setuid program from shedding the filter's
/// purpose by gaining privileges). `flags` are SECCOMP_FILTER_FLAG_*; the result is
/// what seccomp(2) returns (the listener fd with FLAG_NEW_LISTENER). Falls back to
/// prctl(PR_SET_SECCOMP) on kernels before 3.17, which have no seccomp(2).
pub fn install_filter(filter: &[sock_filter], flags: libc::c_ulong) -> Result<RawFd, Errno> {
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, which the kernel copies; seccompiler's
    // sock_filter has libc's layout.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog,
        )
    };
    match Errno::result(rc) {
        Err(Errno::ENOSYS) if flags == 0 => {
            // SAFETY: as above, through the older interface.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const _ as usize,
                    0,
                    0,
                )
            };
            Errno::result(rc).map(|_| -1)
        }
        other => other.map(|fd| fd as RawFd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        let dir = std::env::temp_dir().join(format!("fb-resolve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let exe = dir.join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = OsString::from(format!("/nonexistent:{}", dir.display()));

        assert_eq!(resolve(OsStr::new("tool"), Some(&path)).unwrap(), exe);
        assert!(matches!(
            resolve(OsStr::new("nope"), Some(&path)),
            Err(SpawnError::NotFound(_))
        ));
        assert!(matches!(
            resolve(OsStr::new("plain"), Some(&path)),
            Err(SpawnError::NotExecutable(_, Errno::EACCES))
        ));
        assert!(matches!(
            resolve(OsStr::new("sub"), Some(&path)),
            Err(SpawnError::NotExecutable(_, Errno::EISDIR))
        ));
        assert!(resolve(exe.as_os_str(), None).is_ok());
        assert!(matches!(
            resolve(OsStr::new("/nonexistent/x"), None),
            Err(SpawnError::NotFound(_))
        ));
        assert!(matches!(
            resolve(plain.as_os_str(), None),
            Err(SpawnError::NotExecutable(..))
        ));
        assert!(matches!(
            resolve(OsStr::new(""), None),
            Err(SpawnError::NotFound(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_pid_without_allocating() {
        let mut buf = [b'x'; 10];
        // SAFETY: buf has 10 bytes.
        unsafe { write_pid(buf.as_mut_ptr()) };
        let s = std::ffi::CStr::from_bytes_until_nul(&buf).unwrap();
        assert_eq!(s.to_str().unwrap(), std::process::id().to_string());
    }
}
