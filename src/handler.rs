// handler.rs: one trapped bind() or listen(), whatever the engine. The arguments
// (socketcall's array read once), force-bind's own copy of the socket, bind(2)'s
// checks in the kernel's order, the decision and its outcome are all here; an engine
// hands over the call as it trapped it and carries out the answer (the notify engine
// as its response, the ptrace engine in the stopped thread's registers); the kernel
// never runs a trapped bind in the program. Every branch that "cannot happen" answers
// a denial.

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::event::{Action, Call as EventCall};
use crate::filter::{Call, Trapped};
use crate::log::{self, Announcement, debug};
use crate::policy::Policy;
use crate::sidebind::{self, Finish, Limits, Socket};
use crate::sockaddr::SOCKADDR_MAX_LEN;
use crate::target;

/// <linux/socket.h>; not in the libc crate.
const AF_SMC: i32 = 43;

/// What every call needs from the engine's side, the same for all of its calls.
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub limits: Limits,
    pub pidfds: &'a target::Pidfds,
    /// Inodes of the inherited sockets, to recognise them in a program (-L).
    pub inherited_inodes: &'a [(RawFd, u64)],
}

/// One trapped call as the engine saw it.
pub struct Trap<'a> {
    /// The calling thread.
    pub pid: Pid,
    pub trapped: Trapped,
    /// The syscall's first three arguments (for socketcall: its call number, its
    /// argument array's address, and a third nobody reads).
    pub args: [u64; 3],
    /// Whether the call is still waiting for us (the notify engine's NOTIF_ID_VALID:
    /// the thread id then still names the caller); always so for a stopped thread.
    pub still_waiting: &'a dyn Fn() -> Result<(), Errno>,
}

/// What the engine must make of the call.
#[derive(Debug)]
pub enum Answer {
    /// The call is done, on force-bind's copy of the socket: it returns 0 or this
    /// errno, without running in the program.
    Return(Result<(), Errno>),
    /// Put inherited socket `inherited` at the program's `fd` (keeping that
    /// descriptor's close-on-exec flag), then return 0, and announce the result.
    Replace {
        fd: RawFd,
        inherited: RawFd,
        cloexec: bool,
        announcement: Option<Announcement>,
    },
}

impl Trap<'_> {
    /// bind's or listen's three arguments: as trapped, or from the u32 array that
    /// socketcall(2) points at (read once, so no later change to it can matter).
    fn call_args(&self, pidfds: &target::Pidfds) -> Result<[u64; 3], Errno> {
        if !self.trapped.via_socketcall {
            return Ok(self.args);
        }
        let mut words = [0u8; 12];
        pidfds
            .read(self.pid, self.args[1], &mut words)
            .map_err(|_| Errno::EFAULT)?;
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&words[i * 4..i * 4 + 4]);
            u32::from_ne_bytes(w) as u64
        };
        Ok([word(0), word(1), word(2)])
    }
}

/// The call `trap` is, carried out.
pub fn handle(ctx: &Context, trap: &Trap) -> Answer {
    match trap.trapped.call {
        Call::Bind => bind(ctx, trap),
        Call::Listen => listen(ctx, trap),
        // Refused elsewhere (the engine's io_uring_setup answer); never run here.
        Call::IoUringSetup => Answer::Return(Err(Errno::ENOSYS)),
    }
}

/// bind(fd, addr, len), in bind(2)'s own order: the descriptor (EBADF, ENOTSOCK),
/// then the length (EINVAL), then the memory (EFAULT), then the policy.
fn bind(ctx: &Context, trap: &Trap) -> Answer {
    let pid = trap.pid;
    let [fd, addr_ptr, len] = match trap.call_args(ctx.pidfds) {
        Ok(args) => args,
        Err(e) => return Answer::Return(Err(e)),
    };
    let fd = fd as i32;
    // Taken before `still_waiting`, which proves the caller was alive then, so the
    // thread id named the caller's process when the socket was taken.
    let socket = match Socket::take(ctx.pidfds, pid, fd) {
        Ok(socket) => socket,
        Err(e) => return Answer::Return(Err(e)),
    };
    let mut buf = [0u8; SOCKADDR_MAX_LEN];
    let read = |b: &mut [u8]| ctx.pidfds.read_from_caller(pid, addr_ptr, b);
    let len = match sidebind::read_sockaddr(len, read, &mut buf) {
        Ok(len) => len,
        Err(e) => return Answer::Return(Err(e)),
    };
    let bytes = &buf[..len];
    if let Err(e) = (trap.still_waiting)() {
        return Answer::Return(Err(e));
    }
    if socket.domain == AF_SMC {
        // smc_bind() binds IPv4/IPv6 addresses on an inner TCP socket: an IP bind the
        // policy would have to judge, and any bind of our copy would already be one.
        log::warn!(
            "pid {pid}: a bind on an AF_SMC socket is refused (force-bind does not judge SMC)"
        );
        return Answer::Return(Err(Errno::EPERM));
    }
    if !socket.is_ip() {
        // IP bytes on a socket that is not IP: the kernel's errno, from our copy.
        // Anything else is bound on our copy too, as the program would bind it (its
        // root, cwd, umask, ids and capabilities: as_target.rs): the kernel never
        // runs the call in the program, where another thread could have swapped in an
        // IP socket and IP bytes by then.
        return match sidebind::foreign_bytes(&socket, bytes) {
            Some(errno) => Answer::Return(Err(errno)),
            None => Answer::Return(crate::as_target::bind_as_target(pid, &socket.sock, bytes)),
        };
    }
    let finish = sidebind::bind(
        ctx.policy,
        ctx.limits,
        EventCall::Bind,
        pid,
        fd,
        &socket,
        bytes,
    );
    answer(fd, finish)
}

/// listen(fd, backlog): on an inherited socket (-L), nothing to do; otherwise the
/// implicit bind of a socket nobody bound, or the port a port-0 bind got, is judged
/// (sidebind::judge_listen), and the listen runs on our copy, so the descriptor
/// cannot be swapped for another socket between the check and the call.
fn listen(ctx: &Context, trap: &Trap) -> Answer {
    let pid = trap.pid;
    let [fd, backlog, _] = match trap.call_args(ctx.pidfds) {
        Ok(args) => args,
        Err(e) => return Answer::Return(Err(e)),
    };
    let (fd, backlog) = (fd as i32, backlog as i32);
    let socket = match Socket::take(ctx.pidfds, pid, fd) {
        Ok(socket) => socket,
        Err(e) => return Answer::Return(Err(e)),
    };
    if let Err(e) = (trap.still_waiting)() {
        return Answer::Return(Err(e));
    }
    let proto = socket.is_ip().then(|| socket.kind.proto());
    let inode = nix::sys::stat::fstat(&socket.sock).map(|st| st.st_ino);
    if let Some((inherited, _)) = ctx
        .inherited_inodes
        .iter()
        .find(|(_, ino)| inode.is_ok_and(|i| i == *ino))
    {
        debug!("pid {pid}: listen fd {fd} is inherited fd {inherited}");
        let local = target::local_addr(&socket.sock).ok();
        log::emit_simple(
            pid,
            EventCall::Listen,
            Some(fd),
            proto,
            Action::Skipped,
            Ok(local),
        );
        return Answer::Return(Ok(()));
    }
    if ctx.policy.judges_listen() {
        match sidebind::judge_listen(ctx.policy, ctx.limits, pid, fd, &socket) {
            None | Some(Finish::Return(Ok(()))) => {}
            // The inherited socket already listens: installing it is the listen.
            Some(other) => return answer(fd, other),
        }
    }
    let listened = sidebind::listen(&socket, backlog);
    let local = listened.map(|()| target::local_addr(&socket.sock).ok());
    log::emit_simple(
        pid,
        EventCall::Listen,
        Some(fd),
        proto,
        Action::Allowed,
        local,
    );
    Answer::Return(listened)
}

/// A side-bind's outcome as the engine's answer.
fn answer(fd: RawFd, finish: Finish) -> Answer {
    match finish {
        Finish::Return(result) => Answer::Return(result),
        Finish::Replace {
            inherited,
            cloexec,
            announcement,
        } => Answer::Replace {
            fd,
            inherited,
            cloexec,
            announcement,
        },
    }
}
