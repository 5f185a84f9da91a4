// notify/supervisor.rs: the threads that answer notifications. Each worker blocks in
// NOTIF_RECV; when every worker is busy another is started (up to a bound), so one
// slow request (a target whose memory is slow to read) never holds up the others.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;

use super::listener::{Listener, Notification, Response};
use crate::arch::Native;
use crate::filter::{Call, Trapped};
use crate::log::debug;
use crate::rule::Policy;

/// More concurrent binds than this wait for a free worker.
const MAX_WORKERS: usize = 64;

pub struct Supervisor<'p> {
    pub policy: &'p Policy,
    pub listener: Listener,
    pub limits: crate::sidebind::Limits,
    pub pidfds: crate::target::Pidfds,
    /// Inodes of the inherited sockets, to recognise them in a target (-L).
    pub inherited_inodes: Vec<(RawFd, u64)>,
    workers: AtomicUsize,
    busy: AtomicUsize,
}

impl Supervisor<'static> {
    pub fn new(policy: &'static Policy, listener: Listener, killable_wait: bool) -> Self {
        let inherited_inodes = crate::target::inodes_of(&policy.inherited.sockets);
        Supervisor {
            policy,
            listener,
            limits: crate::sidebind::Limits::read(!killable_wait),
            pidfds: crate::target::Pidfds::default(),
            inherited_inodes,
            workers: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    /// Starts the first worker; more follow on demand.
    pub fn start(self: Arc<Self>) -> std::io::Result<()> {
        self.workers.fetch_add(1, Ordering::SeqCst);
        std::thread::Builder::new()
            .name("force-bind-worker".into())
            .spawn(move || self.work())
            .map(drop)
    }

    fn work(self: Arc<Self>) {
        loop {
            let n = match self.listener.recv() {
                Ok(n) => n,
                // The target died before we got it, or a signal: both normal.
                Err(Errno::ENOENT | Errno::EINTR) => continue,
                Err(e) => {
                    debug!("NOTIF_RECV: {e}; worker stops");
                    return;
                }
            };
            let busy = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
            let total = self.workers.load(Ordering::SeqCst);
            if busy >= total
                && total < MAX_WORKERS
                && self
                    .workers
                    .compare_exchange(total, total + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                let next = Arc::clone(&self);
                if let Err(e) = std::thread::Builder::new()
                    .name("force-bind-worker".into())
                    .spawn(move || next.work())
                {
                    self.workers.fetch_sub(1, Ordering::SeqCst);
                    debug!("cannot start another worker: {e}");
                }
            }
            // A bug here must not leave the target hung in bind(), nor let it through.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(&n)))
                .unwrap_or(Err(Errno::EPERM));
            debug!(
                "notification {:#x} pid {} nr {}: {answer:?}",
                n.id, n.pid, n.nr
            );
            match self.listener.respond(n.id, answer) {
                // The target was interrupted or died while we worked: normal.
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => debug!("NOTIF_SEND {:#x}: {e}", n.id),
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Supervisor<'_> {
    fn handle(&self, n: &Notification) -> Result<Response, Errno> {
        let Some(trapped) = Trapped::classify::<Native>(n.arch, n.nr as u32, n.args[0]) else {
            // The filter traps nothing else; refuse rather than guess.
            return Err(Errno::ENOSYS);
        };
        match trapped.call {
            Call::Bind => self.on_bind(n, trapped),
            Call::Listen => self.on_listen(n, trapped),
            Call::IoUringSetup => {
                let pid = nix::unistd::Pid::from_raw(n.pid);
                crate::log::emit_simple(
                    pid,
                    crate::event::Call::IoUringSetup,
                    None,
                    crate::event::Action::Refused,
                    Err(Errno::ENOSYS),
                );
                Err(Errno::ENOSYS)
            }
        }
    }

    /// Installs inherited socket `inherited` at the target's `fd` in place of its own
    /// (NOTIF_ADDFD with SETFD), announces it, and answers the call with 0.
    pub fn install(
        &self,
        n: &Notification,
        fd: i32,
        inherited: i32,
        cloexec: bool,
        announcement: Option<crate::log::Announcement>,
    ) -> Result<Response, Errno> {
        let added = self.listener.add_fd(n.id, inherited, fd, cloexec);
        if let Some(a) = announcement {
            a.emit(added.map(|_| crate::target::own_local_addr(inherited)));
        }
        added.map(|_| Response::Return(0))
    }

    /// The first three arguments of a trapped call: as the kernel reported them, or
    /// from the u32 array socketcall(2) points at (read once).
    pub fn call_args(&self, n: &Notification, trapped: Trapped) -> Result<[u64; 3], Errno> {
        if !trapped.via_socketcall {
            return Ok([n.args[0], n.args[1], n.args[2]]);
        }
        let mut words = [0u8; 12];
        crate::memory::read(nix::unistd::Pid::from_raw(n.pid), n.args[1], &mut words)
            .map_err(|_| Errno::EFAULT)?;
        let word =
            |i: usize| u32::from_ne_bytes(words[i * 4..i * 4 + 4].try_into().unwrap()) as u64;
        Ok([word(0), word(1), word(2)])
    }
}
