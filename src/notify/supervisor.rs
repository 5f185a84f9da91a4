// notify/supervisor.rs: the threads that answer notifications (see `Pool` for who
// receives when), and what each trapped call is.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::listener::{Listener, Notification, Response};
use crate::arch::Native;
use crate::filter::{Call, Trapped};
use crate::log::debug;
use crate::policy::Policy;

pub struct Supervisor {
    /// Shared, so that a policy lives as long as the last supervisor that uses it
    /// (the agent's policies come and go with their containers).
    pub policy: Arc<Policy>,
    pub listener: Listener,
    pub limits: crate::sidebind::Limits,
    pub pidfds: crate::target::Pidfds,
    /// Inodes of the inherited sockets, to recognise them in a target (-L).
    pub inherited_inodes: Vec<(RawFd, u64)>,
    /// The container whose processes these are (the agent), named in events.
    pub container: Option<Arc<str>>,
    pool: Mutex<Pool>,
    /// Idle workers wait here to be given the receiving turn.
    turn_free: Condvar,
    /// Per worker, since when it has been handling its request (nanoseconds after
    /// `epoch`, 0 when it is not): a request stuck that long is not counted against
    /// MAX_WORKERS, so requests that never complete cost a worker each and the
    /// others keep flowing.
    busy_since: Box<[AtomicU64]>,
    epoch: Instant,
    /// Workers at work on requests that are not stalled: one per CPU the process may
    /// run on (available_parallelism: affinity and cgroup quota), MIN_WORKERS to
    /// MAX_WORKERS.
    max_workers: usize,
}

/// Who receives. One worker at a time waits in NOTIF_RECV (the kernel wakes every
/// waiter for each notification, and each wake-up of another thread costs a
/// cross-CPU hop): the worker that received also handles, then receives again. The
/// turn passes to an idle worker (or a new one) only when notifications are
/// waiting while it works (a backlog), or when nobody has received for a while (a
/// slow request), so a program that binds one call at a time is served by one
/// thread on its own CPU, and many binds at once by several.
#[derive(Debug)]
struct Pool {
    /// A worker holds the receiving turn (in NOTIF_RECV, or about to be).
    turn_taken: bool,
    /// When the turn was last given up, to tell a slow request.
    turn_released: Instant,
    workers: usize,
    idle: usize,
    /// A turn was offered to the idle workers and not yet taken.
    offered: bool,
}

/// More concurrent binds than this wait for a free worker, stalled ones not counted;
/// fewer when the process has fewer CPUs (`Supervisor::max_workers`): a worker more
/// than there are CPUs to run it only takes the turn from another, a futex wake-up
/// and a context switch per bind (issue 15, round 3: 8 processes x 8 threads on 2
/// CPUs served 0.35x native with up to 64 workers, 0.41x with 2, in one run).
const MAX_WORKERS: usize = 64;
/// Even on one CPU, two: a worker that sleeps on the program's memory (a page read
/// in from swap, say) leaves the CPU to the other, and waiting for the watchdog's
/// SLOW instead would put milliseconds on every bind queued behind it.
const MIN_WORKERS: usize = 2;
/// Stalled or not, no more worker threads than this: past it, later binds wait
/// (bounded memory, whatever the program does).
const MAX_THREADS: usize = 512;
/// A request handled this long with notifications waiting is a slow one: the turn
/// goes to another worker.
const SLOW: Duration = Duration::from_millis(50);

impl Supervisor {
    pub fn new(policy: Arc<Policy>, listener: Listener, killable_wait: bool) -> Self {
        let inherited_inodes = crate::target::inodes_of(&policy.inherited.fds());
        Supervisor {
            policy,
            listener,
            limits: crate::sidebind::Limits::read(!killable_wait),
            pidfds: crate::target::Pidfds::default(),
            inherited_inodes,
            container: None,
            pool: Mutex::new(Pool {
                turn_taken: false,
                turn_released: Instant::now(),
                workers: 0,
                idle: 0,
                offered: false,
            }),
            turn_free: Condvar::new(),
            busy_since: (0..MAX_THREADS).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            max_workers: std::thread::available_parallelism()
                .map_or(MAX_WORKERS, |n| n.get().clamp(MIN_WORKERS, MAX_WORKERS)),
        }
    }

    /// Starts the first worker and the watchdog for slow requests.
    pub fn start(self: Arc<Self>) -> std::io::Result<()> {
        self.spawn_worker()?;
        let watched = Arc::clone(&self);
        std::thread::Builder::new()
            .name("force-bind-watchdog".into())
            .spawn(move || watched.watch())
            .map(drop)
    }

    fn spawn_worker(self: &Arc<Self>) -> std::io::Result<()> {
        let slot = {
            let mut pool = self.lock();
            pool.workers += 1;
            pool.workers - 1
        };
        let worker = Arc::clone(self);
        std::thread::Builder::new()
            .name("force-bind-worker".into())
            .spawn(move || worker.work(slot))
            .map(drop)
            .inspect_err(|_| {
                self.lock().workers -= 1;
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(self: Arc<Self>, slot: usize) {
        let busy = &self.busy_since[slot];
        crate::log::set_container(self.container.clone());
        loop {
            if !self.take_turn() {
                return;
            }
            let received = self.receive();
            self.release_turn();
            let Some(n) = received else {
                // Nobody uses the filter any more: wake the others so they see it too.
                self.turn_free.notify_all();
                return;
            };
            // Notifications already waiting: let another worker take them now. The
            // poll(2) only when there is somebody to take them (under load every
            // worker is usually busy: a syscall per bind saved).
            if self.may_offer() && self.listener.pending() {
                self.offer_turn();
            }
            if !super::gate::enter() {
                // The process stops supervising (the agent's SIGTERM).
                let _ = self.listener.respond(n.id, Err(Errno::ENOSYS));
                continue;
            }
            busy.store(self.now_ns(), Ordering::Relaxed);
            // A bug here must not leave the target hung in bind(), nor let it through.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(&n)))
                .unwrap_or(Err(Errno::EPERM));
            busy.store(0, Ordering::Relaxed);
            debug!(
                "notification {:#x} pid {} nr {}: {answer:?}",
                n.id, n.pid, n.nr
            );
            match self.listener.respond(n.id, answer) {
                // The target was interrupted or died while we worked: normal.
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => debug!("NOTIF_SEND {:#x}: {e}", n.id),
            }
            super::gate::leave();
        }
    }

    /// Waits (idle) until the receiving turn is free and takes it; false when the
    /// listener is gone.
    fn take_turn(&self) -> bool {
        let mut pool = self.lock();
        while pool.turn_taken {
            pool.idle += 1;
            pool = self.turn_free.wait(pool).unwrap_or_else(|e| e.into_inner());
            pool.idle -= 1;
            pool.offered = false;
            if self.listener.hung_up() {
                return false;
            }
        }
        pool.turn_taken = true;
        true
    }

    fn release_turn(&self) {
        let mut pool = self.lock();
        pool.turn_taken = false;
        pool.turn_released = Instant::now();
    }

    /// Gives the free turn to an idle worker, or to a new one if none is idle.
    fn offer_turn(self: &Arc<Self>) {
        let mut pool = self.lock();
        if pool.turn_taken || pool.offered {
            return;
        }
        if pool.idle > 0 {
            pool.offered = true;
            self.turn_free.notify_one();
        } else if may_add_worker(
            pool.workers,
            self.stalled_workers(pool.workers),
            self.max_workers,
        ) {
            drop(pool);
            if let Err(e) = self.spawn_worker() {
                debug!("cannot start another worker: {e}");
            }
        }
    }

    /// Whether `offer_turn` would give the turn to anybody now.
    fn may_offer(&self) -> bool {
        let pool = self.lock();
        !pool.turn_taken
            && !pool.offered
            && (pool.idle > 0
                || may_add_worker(
                    pool.workers,
                    self.stalled_workers(pool.workers),
                    self.max_workers,
                ))
    }

    /// Nanoseconds since `epoch`, never 0 (which means "not busy").
    fn now_ns(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    /// How many of the first `workers` workers have been on one request for SLOW or
    /// longer: a sockaddr on memory that takes that long to read (a page a FUSE
    /// server of the program's own does not serve, say).
    fn stalled_workers(&self, workers: usize) -> usize {
        let now = self.now_ns();
        let slow = SLOW.as_nanos() as u64;
        self.busy_since[..workers.min(MAX_THREADS)]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&since| since != 0 && now.saturating_sub(since) >= slow)
            .count()
    }

    /// Every SLOW: if nobody has been receiving for that long while notifications
    /// wait, a request is slow (a target whose memory takes long to read, say) and
    /// the turn goes to another worker.
    fn watch(self: Arc<Self>) {
        loop {
            std::thread::sleep(SLOW);
            let stalled = {
                let pool = self.lock();
                !pool.turn_taken && pool.turn_released.elapsed() >= SLOW
            };
            if self.listener.hung_up() {
                self.turn_free.notify_all();
                return;
            }
            if stalled && self.listener.pending() {
                debug!("a request is slow: another worker takes the next");
                self.offer_turn();
            }
        }
    }

    /// The next notification; None once no process uses the filter any more.
    fn receive(&self) -> Option<Notification> {
        loop {
            match self.listener.recv() {
                Ok(n) => return Some(n),
                Err(Errno::EINTR) => continue,
                // The caller died before we got it (normal), or every process using
                // the filter is gone: then RECV fails at once, forever, and the
                // listener reports POLLHUP (5.8+).
                Err(Errno::ENOENT) if !self.listener.hung_up() => continue,
                Err(e) => {
                    debug!("NOTIF_RECV: {e}; worker stops");
                    return None;
                }
            }
        }
    }
}

impl Supervisor {
    fn handle(&self, n: &Notification) -> Result<Response, Errno> {
        let Some(trapped) = Trapped::classify::<Native>(n.arch, n.nr as u32, n.args[0]) else {
            // The filter traps nothing else; refuse rather than guess.
            return Err(Errno::ENOSYS);
        };
        match trapped.call {
            Call::Bind | Call::Listen => self.on_call(n, trapped),
            Call::IoUringSetup => {
                let pid = nix::unistd::Pid::from_raw(n.pid);
                crate::log::emit_simple(
                    pid,
                    crate::event::Call::IoUringSetup,
                    None,
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
}

/// Whether the pool may start another worker: fewer than `max_workers` are at work on
/// requests that are not stalled, and fewer than MAX_THREADS exist at all.
fn may_add_worker(workers: usize, stalled: usize, max_workers: usize) -> bool {
    workers < MAX_THREADS && workers - stalled.min(workers) < max_workers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_workers_do_not_count_against_the_limit() {
        assert!(may_add_worker(0, 0, MAX_WORKERS));
        assert!(may_add_worker(MAX_WORKERS - 1, 0, MAX_WORKERS));
        assert!(!may_add_worker(MAX_WORKERS, 0, MAX_WORKERS));
        // 64 stalled requests: 64 more workers may still come for the others.
        assert!(may_add_worker(MAX_WORKERS, MAX_WORKERS, MAX_WORKERS));
        assert!(may_add_worker(
            2 * MAX_WORKERS - 1,
            MAX_WORKERS,
            MAX_WORKERS
        ));
        assert!(!may_add_worker(2 * MAX_WORKERS, MAX_WORKERS, MAX_WORKERS));
        // Never more threads than MAX_THREADS, however many are stalled.
        assert!(!may_add_worker(MAX_THREADS, MAX_THREADS, MAX_WORKERS));
        // Capped at 2 CPUs: a third worker only for a stalled request.
        assert!(may_add_worker(1, 0, 2));
        assert!(!may_add_worker(2, 0, 2));
        assert!(may_add_worker(2, 1, 2));
        assert!(!may_add_worker(3, 1, 2));
    }
}
