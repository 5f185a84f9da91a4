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
use nix::sys::socket;
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
    // Descendants that outlive their parent (daemons) are reparented to us, so we can
    // wait for the last one as the ptrace engine does.
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
        .context("PR_SET_CHILD_SUBREAPER")?;
    let bpf = filter::build::<Native>(Traps::for_policy(policy, Trap::Notify));
    let sync_wake_up = std::env::var_os("FORCE_BIND_NO_SYNC_WAKE_UP").is_none();
    // The child hands the listener over with SCM_RIGHTS and execs at once: no round
    // trip. What the supervisor needs to know comes with it.
    let (ours, theirs) = socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot create a socket pair")?;
    let handoff_fd = theirs.as_raw_fd();

    // WAIT_KILLABLE_RECV (5.19): once we have the notification, only a fatal signal
    // interrupts the target, so a bind is never done twice.
    let killable_wait = kernel.wait_killable_recv;
    let listener_flags = if killable_wait {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    } else {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    };

    // Dropped on any way out before `hand_over`, it kills and reaps the child.
    let child = spawn::spawn(program, || {
        let mut handoff = Handoff {
            errno: 0,
            add_fd: 0,
            sync_wake_up: 0,
        };
        match spawn::install_filter(&bpf, listener_flags) {
            Ok(fd) => {
                handoff.add_fd = listener::has_add_fd(fd) as i32;
                handoff.sync_wake_up = (sync_wake_up && listener::prefer_sync_wake_up(fd)) as i32;
                send_handoff(handoff_fd, &handoff, Some(fd))?;
                // Without ADDFD the supervisor falls back to ptrace: do not exec.
                // (The listener itself is close-on-exec: the program never sees it.)
                if handoff.add_fd == 0 {
                    Err(Errno::ENOSYS)
                } else {
                    Ok(())
                }
            }
            Err(e) => {
                handoff.errno = e as i32;
                send_handoff(handoff_fd, &handoff, None)?;
                Err(e)
            }
        }
    })?;
    drop(theirs);

    let Some((handoff, listener_fd)) = receive_handoff(&ours) else {
        return Err(anyhow::anyhow!("the program's process died while starting").into());
    };
    // Unavailable: the child has not exec'd, nothing of the program has run, and
    // dropping `child` kills it before another engine starts the program anew.
    let listener = match (handoff.errno, listener_fd) {
        // The program may be running already: no falling back from here on.
        (0, Some(fd)) => {
            Listener::new(fd).map_err(|e| anyhow::anyhow!("SECCOMP_GET_NOTIF_SIZES: {e}"))?
        }
        (errno, _) => {
            let errno = Errno::from_raw(errno);
            return Err(Error::Unavailable(Unavailable(format!(
                "cannot install a seccomp listener: {errno}"
            ))));
        }
    };
    if handoff.add_fd == 0 {
        return Err(Error::Unavailable(Unavailable(
            "no SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)".into(),
        )));
    }
    debug!(
        "notify engine: listener fd {}; WAIT_KILLABLE_RECV: {killable_wait}; SYNC_WAKE_UP: {}",
        listener.raw(),
        handoff.sync_wake_up != 0
    );
    Arc::new(Supervisor::new(
        Arc::new(policy.clone()),
        listener,
        killable_wait,
    ))
    .start()
    .context("cannot start the supervisor thread")?;
    crate::exit::forward_signals_to(child.pid()).context("cannot install signal handlers")?;
    // Only close+execve remain in the child: this read ends at exec or its failure
    // (the child has exited then; dropping `child` reaps it).
    if let Some(errno) = child.exec_error() {
        return Err(SpawnError::at_exec(program.name(), errno).into());
    }
    Ok(reap(child.hand_over().pid))
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

/// What the child tells the supervisor along with the listener.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Handoff {
    /// Why no listener could be installed (EBUSY in some containers), else 0.
    errno: i32,
    add_fd: i32,
    sync_wake_up: i32,
}

/// sendmsg(2) of `handoff`, with `fd` attached (SCM_RIGHTS). Raw syscalls on stack
/// memory only: this runs in the child between fork and exec.
fn send_handoff(sock: RawFd, handoff: &Handoff, fd: Option<RawFd>) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: (handoff as *const Handoff).cast_mut().cast(),
        iov_len: size_of::<Handoff>(),
    };
    // Room for one cmsghdr carrying one int, 8-aligned.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic; the buffer is large
        // enough for one cmsghdr with one int (checked by the assertion), and
        // CMSG_FIRSTHDR/CMSG_DATA point inside it.
        unsafe {
            let space = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            debug_assert!(space <= size_of_val(&control));
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: msg points at live stack memory for the whole call.
    Errno::result(unsafe { libc::sendmsg(sock, &msg, 0) }).map(drop)
}

fn receive_handoff(sock: &OwnedFd) -> Option<(Handoff, Option<OwnedFd>)> {
    let mut handoff = Handoff::default();
    // SAFETY: Handoff is plain data, filled byte for byte from the message.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(
            (&mut handoff as *mut Handoff).cast::<u8>(),
            size_of::<Handoff>(),
        )
    };
    let mut iov = [std::io::IoSliceMut::new(bytes)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = loop {
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            socket::MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(msg) => break msg,
        }
    };
    if msg.bytes != size_of::<Handoff>() {
        return None;
    }
    let fd = msg.cmsgs().ok()?.find_map(|c| match c {
        socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    });
    // SAFETY: SCM_RIGHTS gave us a fresh descriptor that we now own.
    let fd = fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    Some((handoff, fd))
}

/// Waits for every descendant (we are their subreaper) and returns how `main` ended.
fn reap(main: Pid) -> Status {
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
