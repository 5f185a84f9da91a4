// notify/bind.rs: one trapped bind(), handled in the supervisor. The sockaddr is read
// once; the supervisor binds its own copy of the target's socket (pidfd_getfd) to
// the decided address, so no later change to the target's memory can matter.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::listener::{Notification, Response, let_kernel_continue};
use super::supervisor::Supervisor;
use crate::log::{self, Level, verbose};
use crate::memory;
use crate::rule::{BindRequest, Decision};
use crate::sockaddr::{self, Decoded, SOCKADDR_MAX_LEN};
use crate::target;

impl Supervisor<'_> {
    pub fn on_bind(&self, n: &Notification) -> Result<Response, Errno> {
        let pid = Pid::from_raw(n.pid);
        let fd = n.args[0] as i32;
        // The kernel takes addrlen as an int and refuses < 0 or > sockaddr_storage.
        let len = n.args[2] as u32 as i32;
        if !(0..=SOCKADDR_MAX_LEN as i32).contains(&len) {
            return Err(Errno::EINVAL);
        }
        // The pidfd first: from here on it names this process even if the pid is
        // reused; ID_VALID below proves the process was still the caller then.
        let pidfd = target::pidfd(pid)?;
        let mut buf = [0u8; SOCKADDR_MAX_LEN];
        let bytes = &mut buf[..len as usize];
        memory::read(pid, n.args[1], bytes).map_err(|_| Errno::EFAULT)?;
        self.listener.id_valid(n.id)?;
        let sock = target::getfd(&pidfd, fd)?;
        let (domain, sock_type) = target::sock_domain_type(sock.as_fd())?;
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            // SAFETY: the socket's own family is fixed at creation and is not IP, so
            // whatever address the kernel re-reads it can only bind within that
            // family (AF_UNIX paths depend on the target's cwd and root: the kernel
            // must resolve them in the target, not here).
            return Ok(unsafe { let_kernel_continue() });
        }
        let addr = match sockaddr::decode(bytes) {
            Decoded::Inet(addr) => addr,
            // Malformed or foreign to the socket: the kernel refuses it, with the
            // errno it would give the target.
            _ => return bind_as(&sock, bytes, None).map(|_| Response::Return(0)),
        };
        let dual_stack =
            self.policy.needs_dual_stack(&addr) && target::sock_dual_stack(&sock).unwrap_or(false);
        let verdict = self.policy.decide(&BindRequest { addr, dual_stack });
        let result = match verdict.decision {
            Decision::Allow => self.bind_checked(pid, &sock, bytes, addr),
            Decision::Rewrite(to) => {
                self.bind_checked(pid, &sock, sockaddr::encode(&to).as_bytes(), to)
            }
            Decision::Deny(errno) => Err(errno),
            Decision::ReplaceWithFd(inherited) => {
                self.replace(n, pid, fd, inherited, (domain, sock_type))
            }
        };
        if log::enabled(Level::Verbose) {
            let line = log::describe_bind(fd, &addr, &verdict);
            let code = match &result {
                Ok(_) => 0,
                Err(e) => -(*e as i64),
            };
            verbose!(
                "pid {pid} ({}): {line}: {}",
                target::comm(pid),
                log::outcome(code)
            );
        }
        result.map(|_| Response::Return(0))
    }

    /// Binds as the target could: a privileged port needs CAP_NET_BIND_SERVICE in
    /// the target, not just in force-bind.
    fn bind_checked(
        &self,
        pid: Pid,
        sock: &OwnedFd,
        bytes: &[u8],
        to: SocketAddr,
    ) -> Result<(), Errno> {
        let port = to.port();
        if port != 0 && port < self.unprivileged_port_start && !target::can_bind_privileged(pid) {
            return Err(Errno::EACCES);
        }
        bind_as(sock, bytes, Some(to))
    }

    fn replace(
        &self,
        n: &Notification,
        pid: Pid,
        fd: i32,
        inherited: i32,
        kind: (i32, i32),
    ) -> Result<(), Errno> {
        // SAFETY: `inherited` is one of force-bind's own descriptors, open for its
        // whole life (activation.rs checked it is a socket).
        let ours = unsafe { std::os::fd::BorrowedFd::borrow_raw(inherited) };
        if target::sock_domain_type(ours)? != kind {
            crate::log::warn!(
                "pid {pid}: inherited fd {inherited} is not the same kind of socket as fd {fd}; refusing the bind"
            );
            return Err(Errno::EINVAL);
        }
        // A pidfd_getfd copy always has CLOEXEC: the target's own flag is in fdinfo.
        let cloexec = target::fd_cloexec(pid, fd).unwrap_or(false);
        self.listener.add_fd(n.id, inherited, fd, cloexec).map(drop)
    }
}

/// bind(2) on our copy. A signal may have made the target retry a bind the
/// supervisor already did (no WAIT_KILLABLE_RECV before 5.19): EINVAL from a socket
/// already bound exactly as decided is that retry, and succeeds.
fn bind_as(sock: &OwnedFd, bytes: &[u8], decided: Option<SocketAddr>) -> Result<(), Errno> {
    match target::bind_bytes(sock, bytes) {
        Err(Errno::EINVAL) => match (decided, target::local_addr(sock)) {
            (Some(want), Ok(got))
                if got.ip() == want.ip() && (want.port() == 0 || got.port() == want.port()) =>
            {
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        },
        other => other,
    }
}
