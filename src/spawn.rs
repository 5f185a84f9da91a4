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
use crate::kernel::{CLONE_INTO_CGROUP, CloneArgs};

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
pub struct Starting(Option<Child>);

impl Starting {
    pub fn pid(&self) -> Pid {
        self.child().pid
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

/// How the child gets its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// clone(CLONE_VM | CLONE_FILES | CLONE_VFORK), as posix_spawn(3) does but
    /// for the descriptor table: no page tables are copied and none of our pages
    /// turns copy-on-write, and we are suspended until the child has exec'd or
    /// exited. The child runs on a stack of its own in our memory and shares our
    /// descriptors, so a descriptor it opens is ours too (execve gives the program
    /// its own copy of the table, without the close-on-exec ones). `before_exec`
    /// must not wait for us (we cannot answer), must write nothing of ours but what
    /// its closure was given for that, must not close or replace our descriptors,
    /// and must not change the process's dumpability (the flag lives in the memory
    /// descriptor we share until exec).
    SharedMemory,
    /// fork(2): the child has a copy of our memory and runs alongside us, so
    /// `before_exec` may wait for us (the ptrace engine seizes it first). It is forked
    /// dumpable, so it can be seized at once.
    Copy,
}

/// The cgroup a child starts in (the bpf engine's): its directory and its
/// cgroup.procs, both open in force-bind.
#[derive(Debug, Clone, Copy)]
pub struct IntoCgroup {
    pub dir: RawFd,
    pub procs: RawFd,
}

/// The child's own stack under `Start::SharedMemory`, in our own stack frame, as
/// musl's posix_spawn does: we are suspended while the child runs, so nothing else
/// uses it, and it costs no mapping and no page faults beyond what the child
/// touches. The child only makes raw syscalls on a few locals (well under 4 KiB).
#[repr(C, align(16))]
struct ChildStack([u8; 32 * 1024]);

/// What the child needs, prepared before it exists.
struct ChildWork<'a, F> {
    before_exec: &'a mut F,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    listen_pid: Option<*mut u8>,
    old_mask: SigSet,
    status_write: RawFd,
    make_dumpable: bool,
    /// cgroup.procs of the cgroup the child must move itself into before anything
    /// else, because clone3 could not start it there (before Linux 5.7).
    move_into: Option<RawFd>,
}

/// Starts `program`. `before_exec` runs in the child first; it must be
/// async-signal-safe (no allocation, no locks): the parent may have threads. See
/// `Start` for what else each way allows.
pub fn spawn<F: FnMut() -> Result<(), Errno>>(
    program: &mut Program,
    start: Start,
    before_exec: F,
) -> anyhow::Result<Starting> {
    spawn_with(program, start, None, before_exec)
}

/// As `spawn` with `Start::SharedMemory`, the child in `cgroup` before any of its
/// own code runs: started there by clone3(CLONE_INTO_CGROUP) (5.7), which saves
/// the migration's RCU grace period (several ms on every cgroup.procs write), or
/// else moving itself there first (the write of "0" to cgroup.procs moves the
/// writer). Either way it is there before `before_exec`, and it execs only once it
/// is.
pub fn spawn_into<F: FnMut() -> Result<(), Errno>>(
    program: &mut Program,
    cgroup: IntoCgroup,
    before_exec: F,
) -> anyhow::Result<Starting> {
    spawn_with(program, Start::SharedMemory, Some(cgroup), before_exec)
}

fn spawn_with<F: FnMut() -> Result<(), Errno>>(
    program: &mut Program,
    start: Start,
    cgroup: Option<IntoCgroup>,
    mut before_exec: F,
) -> anyhow::Result<Starting> {
    let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let mut argv: Vec<*const libc::c_char> = program.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = program.env.iter().map(|e| e.as_ptr()).collect();
    let listen_pid = program.listen_pid.as_mut().map(|buf| buf.as_mut_ptr());
    if let Some(p) = listen_pid {
        envp.push(p as *const libc::c_char);
    }
    envp.push(std::ptr::null());
    // Left uninitialised: the child writes before it reads, like any stack.
    let mut stack = std::mem::MaybeUninit::<ChildStack>::uninit();

    let mut old_mask = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&forwarded_signals()),
        Some(&mut old_mask),
    )
    .context("sigprocmask")?;
    let mut work = ChildWork {
        before_exec: &mut before_exec,
        path: program.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        listen_pid,
        old_mask,
        status_write: status_write.as_raw_fd(),
        make_dumpable: start == Start::Copy,
        move_into: None,
    };
    let started = match start {
        Start::SharedMemory => clone_shared(&mut work, &mut stack, cgroup),
        Start::Copy => fork_child(&mut work),
    };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    drop(status_write);
    let started = Starting(Some(Child {
        pid: started?,
        exec_status: status_read,
    }));
    Ok(started)
}

/// The clone for `Start::SharedMemory`: into `cgroup` with clone3 where the kernel
/// can, else clone(2) and the child moves itself (`ChildWork::move_into`).
fn clone_shared<F: FnMut() -> Result<(), Errno>>(
    work: &mut ChildWork<'_, F>,
    stack: &mut std::mem::MaybeUninit<ChildStack>,
    cgroup: Option<IntoCgroup>,
) -> anyhow::Result<Pid> {
    let flags = libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_VFORK;
    if let Some(cgroup) = cgroup {
        let mut args = CloneArgs {
            flags: flags as u64 | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            // clone3 takes the lowest address and the size (the kernel computes the
            // top, 16-aligned like `ChildStack`).
            stack: stack.as_mut_ptr() as u64,
            stack_size: size_of::<ChildStack>() as u64,
            cgroup: cgroup.dir as u64,
            ..CloneArgs::default()
        };
        // SAFETY: `args` is a valid clone_args of the size passed, naming our
        // `stack`; the child runs `child_entry` there and makes only raw syscalls on
        // `work`, as under clone(2) below (see there).
        let rc = unsafe {
            crate::arch::clone3_on_stack(
                (&mut args as *mut CloneArgs).cast(),
                size_of::<CloneArgs>(),
                child_entry::<F>,
                (work as *mut ChildWork<'_, F>).cast(),
            )
        };
        if rc >= 0 {
            return Ok(Pid::from_raw(rc as i32));
        }
        match Errno::from_raw(-rc as i32) {
            // No clone3 (5.3), or none with CLONE_INTO_CGROUP (5.7), or a seccomp
            // profile that refuses clone3 (Docker's answers ENOSYS).
            Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL => {
                crate::log::debug!("clone3(CLONE_INTO_CGROUP) unavailable: the child moves itself");
                work.move_into = Some(cgroup.procs);
            }
            e => return Err(e).context("cannot start the program's process (clone3)"),
        }
    }
    // SAFETY: one past the end of `stack`, 16-aligned like it.
    let stack_top = unsafe { stack.as_mut_ptr().add(1) }.cast::<libc::c_void>();
    // SAFETY: the child runs `child_entry` on its own stack (the top of it is
    // passed: stacks grow down on every architecture we build for) and makes only
    // raw syscalls on `work`, which lives in the caller's frame until clone returns;
    // CLONE_VFORK keeps us suspended until then, so nothing of ours changes under
    // it. SIGCHLD: it is waited for like a forked child.
    let pid = unsafe {
        libc::clone(
            child_entry::<F>,
            stack_top,
            flags | libc::SIGCHLD,
            (work as *mut ChildWork<'_, F>).cast(),
        )
    };
    Errno::result(pid)
        .map(Pid::from_raw)
        .context("cannot start the program's process (clone)")
}

/// fork(2) for `Start::Copy`. force-bind is not dumpable (lib.rs), and a child
/// forked from it would not be either until its first steps: the ptrace engine's
/// PTRACE_SEIZE would fail with EPERM and have to wait. So we are dumpable just
/// across the fork: the child inherits that, and we drop it again at once, before
/// any of the program runs (the child waits for its go-ahead or is about to exec).
fn fork_child<F: FnMut() -> Result<(), Errno>>(work: &mut ChildWork<'_, F>) -> anyhow::Result<Pid> {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    // SAFETY: the child only makes raw syscalls (see `in_child`) on memory prepared
    // before the fork.
    let forked = unsafe { fork() };
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    match forked.context("cannot fork")? {
        ForkResult::Child => in_child(work),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// The child's entry point under `Start::SharedMemory`.
extern "C" fn child_entry<F: FnMut() -> Result<(), Errno>>(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildWork that `spawn` keeps alive until we exec or exit.
    let work = unsafe { &mut *arg.cast::<ChildWork<'_, F>>() };
    in_child(work)
}

/// The child between its start and exec: restores the signal mask, moves into its
/// cgroup if clone3 could not start it there, runs `before_exec`, execs, and on
/// failure reports the errno on the status pipe.
fn in_child<F: FnMut() -> Result<(), Errno>>(work: &mut ChildWork<'_, F>) -> ! {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&work.old_mask), None);
    if work.make_dumpable {
        // The ptrace engine must be able to seize this child (fork_child made it so
        // already; this keeps it true whatever force-bind's state was), and execve
        // sets the program's own dumpability anyway.
        // SAFETY: prctl with integer arguments, async-signal-safe.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    if let Some(p) = work.listen_pid {
        // SAFETY: the buffer is "LISTEN_PID=" plus 10 spaces and a NUL, owned by
        // the `Program`, which outlives this child's use of it.
        unsafe { write_pid(p.add(LISTEN_PID.len() + 1)) };
    }
    let moved = match work.move_into {
        // SAFETY: a one-byte write from a constant; "0" names the writer
        // (cgroup_procs_write_start). Failing, we do not exec.
        Some(procs) => {
            Errno::result(unsafe { libc::write(procs, c"0".as_ptr().cast(), 1) }).map(drop)
        }
        None => Ok(()),
    };
    let errno = match moved.and_then(|()| (work.before_exec)()) {
        Ok(()) => {
            // SAFETY: path, argv and envp are NUL-terminated strings and
            // NULL-terminated arrays that live until exec replaces us.
            unsafe { libc::execve(work.path, work.argv, work.envp) };
            Errno::last()
        }
        Err(e) => e,
    };
    let bytes = (errno as i32).to_ne_bytes();
    // SAFETY: write and _exit are async-signal-safe; nothing else runs here.
    unsafe {
        libc::write(work.status_write, bytes.as_ptr().cast(), 4);
        libc::_exit(crate::exit::NOT_FOUND)
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
