// notify/mod.rs: the notify engine (Linux 5.9+). The program starts with a seccomp
// filter that turns bind (and listen, for -L) into user notifications; force-bind's
// worker threads answer them, binding their own copy of the program's socket
// (pidfd_getfd) and installing inherited sockets with SECCOMP_IOCTL_NOTIF_ADDFD. The
// sockaddr is read once and never re-read by the kernel, so no thread of the program
// can swap it after the check. If force-bind dies, the listener closes and every
// trapped bind fails: nothing goes through unchecked.

mod bind;
mod listen;
mod listener;
mod supervisor;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pipe2};

use crate::arch::Native;
use crate::exit::Status;
use crate::filter::{self, Trap, Traps};
use crate::log::debug;
use crate::rule::Policy;
use crate::spawn::{self, Program, SpawnError};
use listener::Listener;
use supervisor::Supervisor;

/// Why the notify engine could not run; with --engine auto, force-bind falls back to
/// the ptrace engine. Nothing has been executed yet when this is returned.
#[derive(Debug)]
pub struct Unavailable(pub String);

pub enum Error {
    Unavailable(Unavailable),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Fatal(e)
    }
}

fn unavailable(child: Pid, reason: String) -> Error {
    // The child has not exec'd: nothing of the program has run.
    let _ = kill(child, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(child, None);
    Error::Unavailable(Unavailable(reason))
}

pub fn run(policy: &'static Policy, program: &mut Program) -> Result<Status, Error> {
    // Descendants that outlive their parent (daemons) are reparented to us, so we can
    // wait for the last one as the ptrace engine does.
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
        .context("PR_SET_CHILD_SUBREAPER")?;
    let bpf = filter::build::<Native>(Traps::for_policy(policy, Trap::Notify));
    let (handoff_read, handoff_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let (handoff_fd, go_fd) = (handoff_write.as_raw_fd(), go_read.as_raw_fd());

    let child = spawn::spawn(program, || {
        // WAIT_KILLABLE_RECV (5.19): once we have the notification, only a fatal
        // signal interrupts the target, so a bind is never done twice.
        let listener_flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        let mut killable = true;
        let all_flags = listener_flags | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        let listener = match spawn::install_filter(&bpf, all_flags) {
            Err(Errno::EINVAL) => {
                killable = false;
                spawn::install_filter(&bpf, listener_flags)
            }
            other => other,
        };
        // The listener's number and whether signals are kept from retrying binds.
        let message: [i32; 2] = match listener {
            Ok(fd) => [fd, killable as i32],
            Err(e) => [-(e as i32), 0],
        };
        // SAFETY: write(2) of 8 bytes from a local.
        unsafe { libc::write(handoff_fd, message.as_ptr().cast(), 8) };
        let listener = listener?;
        spawn::wait_for_byte(go_fd)?;
        // SAFETY: the supervisor holds its own copy; the program must not see ours.
        unsafe { libc::close(listener) };
        Ok(())
    })?;
    drop((handoff_write, go_read));

    let (listener_fd, killable_wait) = match read_handoff(&handoff_read) {
        Some([fd, killable]) if fd >= 0 => (fd, killable != 0),
        Some([errno, _]) => {
            let errno = Errno::from_raw(-errno);
            return Err(unavailable(
                child.pid,
                format!("cannot install a seccomp listener: {errno}"),
            ));
        }
        None => {
            return Err(Error::Fatal(anyhow::anyhow!(
                "the program's process died while starting"
            )));
        }
    };
    let copy =
        crate::target::pidfd(child.pid).and_then(|pidfd| crate::target::getfd(&pidfd, listener_fd));
    let listener = match copy.and_then(Listener::new) {
        Ok(listener) => listener,
        Err(e) => {
            return Err(unavailable(
                child.pid,
                format!("cannot take the listener with pidfd_getfd: {e}"),
            ));
        }
    };
    if !listener.has_add_fd() {
        return Err(unavailable(
            child.pid,
            "no SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)".into(),
        ));
    }
    debug!("notify engine: listener fd {}", listener.raw());
    let sync_wake_up =
        std::env::var_os("FORCE_BIND_NO_SYNC_WAKE_UP").is_none() && listener.prefer_sync_wake_up();
    debug!("WAIT_KILLABLE_RECV: {killable_wait}; SYNC_WAKE_UP: {sync_wake_up}");
    Arc::new(Supervisor::new(policy, listener, killable_wait))
        .start()
        .context("cannot start the supervisor thread")?;

    nix::unistd::write(&go_write, b"g").context("cannot start the program")?;
    drop(go_write);
    crate::exit::forward_signals_to(child.pid).context("cannot install signal handlers")?;
    // Only close+execve remain in the child: this read ends at exec or its failure.
    if let Some(errno) = child.exec_error() {
        let _ = nix::sys::wait::waitpid(child.pid, None);
        let name = program.name().to_owned();
        return Err(Error::Fatal(
            match errno {
                Errno::ENOENT | Errno::ENOTDIR => SpawnError::NotFound(name),
                e => SpawnError::NotExecutable(name, e),
            }
            .into(),
        ));
    }
    Ok(reap(child.pid))
}

fn read_handoff(fd: &OwnedFd) -> Option<[i32; 2]> {
    let mut buf = [0u8; 8];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(8) => {
                let word = |i: usize| i32::from_ne_bytes(buf[i..i + 4].try_into().unwrap());
                return Some([word(0), word(4)]);
            }
            Err(Errno::EINTR) => continue,
            _ => return None,
        }
    }
}

/// Waits for every descendant (we are their subreaper) and returns how `main` ended.
fn reap(main: Pid) -> Status {
    let mut main_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local.
        let rc = unsafe { libc::waitpid(-1, &mut status, 0) };
        match Errno::result(rc) {
            Ok(pid) if pid == main.as_raw() => main_status = crate::exit::Status::from_wait(status),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    main_status.unwrap_or(Status::Exited(crate::exit::INTERNAL))
}
