// notify/listen.rs: listen() trapped for -L. A socket that is one of the inherited
// ones already listens, so the call succeeds without doing anything; any other is
// listened by the supervisor on its own copy, so the descriptor number cannot be
// swapped for another socket between the check and the call.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::listener::{Notification, Response};
use super::supervisor::Supervisor;
use crate::event::{Action, Call};
use crate::filter::Trapped;
use crate::sidebind::{self, Finish, Socket};

impl Supervisor<'_> {
    pub fn on_listen(&self, n: &Notification, trapped: Trapped) -> Result<Response, Errno> {
        let pid = Pid::from_raw(n.pid);
        let [fd, backlog, _] = self.call_args(n, trapped)?;
        let (fd, backlog) = (fd as i32, backlog as i32);
        let socket = Socket::take(&self.pidfds, pid, fd)?;
        self.listener.id_valid(n.id)?;
        let sock = &socket.sock;
        let inode = nix::sys::stat::fstat(sock)?.st_ino;
        if let Some((inherited, _)) = self.inherited_inodes.iter().find(|(_, ino)| *ino == inode) {
            crate::log::debug!("pid {pid}: listen fd {fd} is inherited fd {inherited}");
            let proto = Some(socket.kind.proto());
            let local = crate::target::local_addr(sock).ok();
            crate::log::emit_simple(
                pid,
                Call::Listen,
                Some(fd),
                proto,
                Action::Skipped,
                Ok(local),
            );
            return Ok(Response::Return(0));
        }
        // A socket nobody bound would get 0.0.0.0:0 or [::]:0 from listen itself:
        // that implicit bind is judged like an explicit one; so is the port the
        // kernel gave a socket whose port-0 bind a deny rule let through.
        if self.policy.judges_listen() {
            match sidebind::judge_listen(self.policy, self.limits, pid, fd, &socket) {
                None | Some(Finish::Return(Ok(()))) | Some(Finish::NotIp) => {}
                Some(Finish::Return(Err(e))) => return Err(e),
                // The inherited socket already listens: installing it is the listen.
                Some(Finish::Replace {
                    inherited,
                    cloexec,
                    announcement,
                }) => {
                    return self.install(n, fd, inherited, cloexec, announcement);
                }
            }
        }
        // SAFETY: listen(2) on our own copy of the target's socket.
        let listened = Errno::result(unsafe { libc::listen(sock.as_raw_fd(), backlog) }).map(drop);
        let proto = (socket.kind.sock_type != 0).then(|| socket.kind.proto());
        let local = listened.map(|()| crate::target::local_addr(sock).ok());
        crate::log::emit_simple(pid, Call::Listen, Some(fd), proto, Action::Allowed, local);
        listened.map(|()| Response::Return(0))
    }
}
