// notify/mod.rs: the notify engine (Linux 5.9+). The program starts with a seccomp
// filter that turns bind (and listen, for -L) into user notifications; force-bind's
// worker threads answer them, binding their own copy of the program's socket
// (pidfd_getfd) and installing inherited sockets with SECCOMP_IOCTL_NOTIF_ADDFD. The
// sockaddr is read once and never re-read by the kernel, so no thread of the program
// can swap it after the check. If force-bind dies, the listener closes and every
// trapped bind fails: nothing goes through unchecked.

mod bind;
pub mod gate;
mod listener;
mod supervisor;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use anyhow::Context;
use nix::errno::Errno;
use nix::unistd::Pid;

use crate::arch::Native;
use crate::exit::Status;
use crate::filter::{self, Trap, Traps};
use crate::kernel::Kernel;
use crate::log::debug;
use crate::policy::Policy;
use crate::spawn::{self, Program, RunError, SpawnError};
use listener::Listener;
use supervisor::Supervisor;

/// Why the notify engine could not run; with --engine auto, force-bind falls back to
/// the ptrace engine. Nothing has been executed yet when this is returned.
#[derive(Debug)]
pub struct Unavailable(pub String);

pub enum Error {
    /// Another engine may run the program instead.
    Unavailable(Unavailable),
    /// The run failed, as any engine's can.
    Run(RunError),
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Run(RunError::Engine(e))
    }
}

impl From<SpawnError> for Error {
    fn from(e: SpawnError) -> Self {
        Error::Run(RunError::Spawn(e))
    }
}

/// Runs `program` under the notify engine until it and every descendant are gone.
/// `kernel` has user notification and pidfd_getfd (engine.rs checked).
pub fn run(
    policy: &'static Policy,
    kernel: Kernel,
    program: &mut Program,
) -> Result<Status, Error> {
    let setup = Setup {
        traps: Traps::for_policy(policy, Trap::Notify),
        in_child: &|| Ok(()),
        cgroup: None,
        binds_in_kernel: false,
    };
    run_with(policy, kernel, program, &setup)
}

/// What another engine changes in the notify engine's run: the bpf engine traps only
/// listen(), starts the child in its cgroup, confines it before the filter goes in,
/// and has the kernel decide binds.
pub struct Setup<'a> {
    pub traps: Traps,
    /// In the child, before the filter is installed: raw syscalls only, under
    /// spawn::Start::SharedMemory's rules (the child shares our memory and
    /// descriptors, and we cannot answer it).
    pub in_child: &'a dyn Fn() -> Result<(), Errno>,
    /// The cgroup to start the child in (spawn::spawn_into): it is there before
    /// `in_child` runs.
    pub cgroup: Option<spawn::IntoCgroup>,
    /// Binds are decided in the kernel and never reach the supervisor
    /// (sidebind::Limits::binds_in_kernel).
    pub binds_in_kernel: bool,
}

/// As `run`, changed by `setup`.
pub fn run_with(
    policy: &'static Policy,
    kernel: Kernel,
    program: &mut Program,
    setup: &Setup,
) -> Result<Status, Error> {
    // Descendants that outlive their parent (daemons) are reparented to us, so we can
    // wait for the last one as the ptrace engine does.
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
        .context("PR_SET_CHILD_SUBREAPER")?;
    let bpf = filter::build::<Native>(setup.traps);
    let sync_wake_up = std::env::var_os("FORCE_BIND_NO_SYNC_WAKE_UP").is_none();
    // WAIT_KILLABLE_RECV (5.19): once we have the notification, only a fatal signal
    // interrupts the target, so a bind is never done twice.
    let killable_wait = kernel.wait_killable_recv;
    let listener_flags = if killable_wait {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    } else {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    };

    // Dropped on any way out before `hand_over`, it kills and reaps the child. The
    // child shares our memory and descriptor table until it execs (no wait for us,
    // no allocation; spawn::Start::SharedMemory), and we resume once it has exec'd
    // or exited: its listener is in our table by then (exec gives the program its
    // own copy, without the close-on-exec listener), and `handoff` says the rest.
    let mut handoff = Handoff::default();
    let in_child = setup.in_child;
    let before_exec = || {
        in_child()?;
        let installed = spawn::install_filter(&bpf, listener_flags);
        match installed {
            Ok(fd) => {
                handoff.listener = fd;
                handoff.add_fd = listener::has_add_fd(fd);
                handoff.sync_wake_up = sync_wake_up && listener::prefer_sync_wake_up(fd);
            }
            Err(e) => handoff.errno = e as i32,
        }
        handoff.reported = true;
        match installed {
            // Without ADDFD the supervisor falls back to ptrace: do not exec.
            Ok(_) if !handoff.add_fd => Err(Errno::ENOSYS),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    };
    let child = match setup.cgroup {
        Some(cgroup) => spawn::spawn_into(program, cgroup, before_exec),
        None => spawn::spawn(program, spawn::Start::SharedMemory, before_exec),
    }?;
    if !handoff.reported {
        return Err(anyhow::anyhow!("the program's process died while starting").into());
    }
    // Unavailable: the child has not exec'd, nothing of the program has run, and
    // dropping `child` kills it before another engine starts the program anew.
    let listener = match handoff.errno {
        // The program may be running already: no falling back from here on.
        // SAFETY: the child put this fresh listener in our descriptor table, and
        // nothing else refers to it.
        0 => Listener::new(unsafe { OwnedFd::from_raw_fd(handoff.listener) })
            .map_err(|e| anyhow::anyhow!("SECCOMP_GET_NOTIF_SIZES: {e}"))?,
        errno => {
            let errno = Errno::from_raw(errno);
            return Err(Error::Unavailable(Unavailable(format!(
                "cannot install a seccomp listener: {errno}"
            ))));
        }
    };
    if !handoff.add_fd {
        return Err(Error::Unavailable(Unavailable(
            "no SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)".into(),
        )));
    }
    debug!(
        "notify engine: listener fd {}; WAIT_KILLABLE_RECV: {killable_wait}; SYNC_WAKE_UP: {}",
        listener.raw(),
        handoff.sync_wake_up
    );
    crate::exit::forward_signals_to(child.pid()).context("cannot install signal handlers")?;
    // The child has exec'd or exited (we were suspended until then): this read
    // returns at once (and on failure, dropping `child` reaps it).
    if let Some(errno) = child.exec_error() {
        return Err(SpawnError::at_exec(program.name(), errno).into());
    }
    // The supervisor and its threads start at the program's first trapped call: a
    // program that never makes one (most short commands) costs no thread. Until
    // then a bind waits in the kernel, as it would for a busy worker.
    if main_exit_or_first_call(&listener, child.pid()) != listener::First::NobodyLeft {
        let mut supervisor = Supervisor::new(Arc::new(policy.clone()), listener, killable_wait);
        supervisor.limits.binds_in_kernel = setup.binds_in_kernel;
        Arc::new(supervisor)
            .start()
            .context("cannot start the supervisor thread")?;
    }
    Ok(reap(child.hand_over().pid))
}

/// Waits for the program's first trapped call or its main process's exit, whichever
/// comes first (see `Listener::wait_first`).
fn main_exit_or_first_call(listener: &Listener, main: Pid) -> listener::First {
    // SAFETY: pidfd_open(2) takes no pointers; the result is a new descriptor we own.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, main.as_raw(), 0) };
    let Ok(fd) = Errno::result(rc) else {
        return listener::First::MaySend;
    };
    // SAFETY: pidfd_open returned this fresh descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    listener.wait_first(pidfd.as_raw_fd())
}

/// Supervises the processes behind seccomp listener `fd`, which another program
/// installed (an OCI runtime, for the agent), with `policy`, on threads of their own
/// that end when the last of those processes is gone. Events name `container`;
/// `unprivileged_port_start` is the ip_unprivileged_port_start of their network
/// namespace, when known (else ours). Whether the filter has WAIT_KILLABLE_RECV is
/// not known, so a signal is taken to be able to restart a bind already done.
pub fn supervise(
    policy: Arc<Policy>,
    fd: OwnedFd,
    container: Arc<str>,
    unprivileged_port_start: Option<u16>,
) -> anyhow::Result<()> {
    let listener =
        Listener::new(fd).map_err(|e| anyhow::anyhow!("SECCOMP_GET_NOTIF_SIZES: {e}"))?;
    let mut supervisor = Supervisor::new(policy, listener, false);
    supervisor.container = Some(container);
    if let Some(start) = unprivileged_port_start {
        supervisor.limits.unprivileged_port_start = start;
    }
    Arc::new(supervisor)
        .start()
        .context("cannot start the supervisor threads")
}

/// What the child tells us, written in the memory it shares with us before exec.
#[derive(Debug, Clone, Copy, Default)]
struct Handoff {
    /// The child got as far as installing the filter (or failing to).
    reported: bool,
    /// Why no listener could be installed (EBUSY in some containers), else 0.
    errno: i32,
    /// The listener's number, in the descriptor table we shared.
    listener: RawFd,
    add_fd: bool,
    sync_wake_up: bool,
}

/// Waits for every descendant (we are their subreaper) and returns how `main` ended.
pub fn reap(main: Pid) -> Status {
    let mut main_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local.
        let rc = unsafe { libc::waitpid(-1, &mut status, 0) };
        match Errno::result(rc) {
            Ok(pid) if pid == main.as_raw() => {
                main_status = crate::exit::Status::from_wait(status);
                crate::exit::program_gone();
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    main_status.unwrap_or(Status::Exited(crate::exit::INTERNAL))
}
