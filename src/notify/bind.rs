// notify/bind.rs: a trapped bind() or listen(), answered from the supervisor. The
// engine-neutral handler (handler.rs) does the work on force-bind's own copy of the
// socket; this carries its answer out as the notification's response.

use nix::errno::Errno;
use nix::unistd::Pid;

use super::listener::{Notification, Response};
use super::supervisor::Supervisor;
use crate::filter::Trapped;
use crate::handler::{self, Answer, Context, Trap};

impl Supervisor {
    pub fn on_call(&self, n: &Notification, trapped: Trapped) -> Result<Response, Errno> {
        let ctx = Context {
            policy: &self.policy,
            limits: self.limits,
            pidfds: &self.pidfds,
            inherited_inodes: &self.inherited_inodes,
        };
        let still_waiting = || self.listener.id_valid(n.id);
        let trap = Trap {
            pid: Pid::from_raw(n.pid),
            trapped,
            args: [n.args[0], n.args[1], n.args[2]],
            still_waiting: &still_waiting,
        };
        match handler::handle(&ctx, &trap) {
            Answer::Return(result) => result.map(|()| Response::Return(0)),
            Answer::Replace {
                fd,
                inherited,
                cloexec,
                announcement,
            } => self.install(n, fd, inherited, cloexec, announcement),
        }
    }
}
