// notify/gate.rs: the calls being answered, so that a process that stops supervising
// (the agent at SIGTERM) can let them finish first. Once closed, a call received
// later is answered ENOSYS at once (what the kernel answers when the listener is
// gone) instead of being started and cut off half done when the process exits.
//
// Two atomics, no lock, on every call's path: a call counts itself in, then looks
// at the gate; closing shuts the gate, then waits for the count to fall to zero.
// With sequentially consistent order one of the two always sees the other: a call
// either sees the gate shut (and goes back out) or is counted before the closer
// looks, and so is waited for.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

static CLOSED: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// A call starts; false once the gate is closed (the call must not be carried out).
pub fn enter() -> bool {
    IN_FLIGHT.fetch_add(1, SeqCst);
    if CLOSED.load(SeqCst) {
        IN_FLIGHT.fetch_sub(1, SeqCst);
        return false;
    }
    true
}

/// A call that `enter` let in is answered.
pub fn leave() {
    IN_FLIGHT.fetch_sub(1, SeqCst);
}

/// Lets no more calls in and waits (at most `timeout`) for those in flight; false
/// if some were still running then.
pub fn close_and_wait(timeout: Duration) -> bool {
    CLOSED.store(true, SeqCst);
    let deadline = Instant::now() + timeout;
    while IN_FLIGHT.load(SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}
