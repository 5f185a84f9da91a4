// notify/bind.rs: one trapped bind(), handled in the supervisor. The sockaddr is read
// once; the supervisor binds its own copy of the target's socket (sidebind.rs), so no
// later change to the target's memory can matter.

use nix::errno::Errno;
use nix::unistd::Pid;

use super::listener::{Notification, Response, let_kernel_continue};
use super::supervisor::Supervisor;
use crate::event::Call;
use crate::filter::Trapped;
use crate::memory;
use crate::sidebind::{self, Finish, Socket};
use crate::sockaddr::SOCKADDR_MAX_LEN;

impl Supervisor<'_> {
    pub fn on_bind(&self, n: &Notification, trapped: Trapped) -> Result<Response, Errno> {
        let pid = Pid::from_raw(n.pid);
        let [fd, addr_ptr, len] = self.call_args(n, trapped)?;
        let fd = fd as i32;
        // bind(2)'s own order: the descriptor, then the length, then the memory. The
        // socket is taken before ID_VALID below, which proves the caller was still
        // alive then, so the pid named the caller's process when it was taken.
        let socket = Socket::take(&self.pidfds, pid, fd)?;
        let mut buf = [0u8; SOCKADDR_MAX_LEN];
        if !socket.is_ip() {
            let len = sidebind::read_sockaddr(len, |b| memory::read(pid, addr_ptr, b), &mut buf)?;
            // IP bytes on a socket that is not IP: the kernel's errno, from our copy,
            // and never a continue (the descriptor could be an IP socket by then).
            if let Some(errno) = sidebind::foreign_bytes(&socket, &buf[..len]) {
                return Err(errno);
            }
            self.listener.id_valid(n.id)?;
            // SAFETY: the socket's own family is fixed at creation and is not IP, and
            // the address we read is not IP either, so the kernel binds it within that
            // family (AF_UNIX paths depend on the target's cwd and root: the kernel
            // must resolve them in the target, not here). Left open: another thread
            // that swaps both the descriptor for an IP socket and the address for an
            // IP one before the kernel reads them again (README, Security model).
            return Ok(unsafe { let_kernel_continue() });
        }
        let len = sidebind::read_sockaddr(len, |b| memory::read(pid, addr_ptr, b), &mut buf)?;
        let bytes = &buf[..len];
        self.listener.id_valid(n.id)?;
        match sidebind::bind(
            self.policy,
            self.limits,
            Call::Bind,
            pid,
            fd,
            &socket,
            bytes,
        ) {
            Finish::Return(result) => result.map(|()| Response::Return(0)),
            Finish::Replace {
                inherited,
                cloexec,
                announcement,
            } => self.install(n, fd, inherited, cloexec, announcement),
            // Not reached: non-IP sockets were answered above. A denial, never a
            // continue, should it ever be.
            Finish::NotIp => Err(Errno::EPERM),
        }
    }
}
