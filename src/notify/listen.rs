// notify/listen.rs: listen() trapped for -L. A socket that is one of the inherited
// ones already listens, so the call succeeds without doing anything; any other is
// listened by the supervisor on its own copy, so the descriptor number cannot be
// swapped for another socket between the check and the call.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::listener::{Notification, Response};
use super::supervisor::Supervisor;
use crate::log::verbose;
use crate::target;

impl Supervisor<'_> {
    pub fn on_listen(&self, n: &Notification) -> Result<Response, Errno> {
        let pid = Pid::from_raw(n.pid);
        let fd = n.args[0] as i32;
        let backlog = n.args[1] as i32;
        let pidfd = target::pidfd(pid)?;
        self.listener.id_valid(n.id)?;
        let sock = target::getfd(&pidfd, fd)?;
        let inode = nix::sys::stat::fstat(&sock)?.st_ino;
        if let Some((inherited, _)) = self.inherited_inodes.iter().find(|(_, ino)| *ino == inode) {
            verbose!(
                "pid {pid} ({}): listen fd {fd}: skipped, it is inherited fd {inherited}, already listening: ok",
                target::comm(pid)
            );
            return Ok(Response::Return(0));
        }
        // SAFETY: listen(2) on our own copy of the target's socket.
        Errno::result(unsafe { libc::listen(sock.as_raw_fd(), backlog) })?;
        Ok(Response::Return(0))
    }
}
