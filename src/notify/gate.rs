// notify/gate.rs: the calls being answered, so that a process that stops supervising
// (the agent at SIGTERM) can let them finish first. Once closed, a call received
// later is answered ENOSYS at once (what the kernel answers when the listener is
// gone) instead of being started and cut off half done when the process exits.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// (closed, calls in flight)
static STATE: Mutex<(bool, usize)> = Mutex::new((false, 0));
static IDLE: Condvar = Condvar::new();

fn lock() -> std::sync::MutexGuard<'static, (bool, usize)> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A call starts; false once the gate is closed (the call must not be carried out).
pub fn enter() -> bool {
    let mut state = lock();
    if state.0 {
        return false;
    }
    state.1 += 1;
    true
}

/// A call that `enter` let in is answered.
pub fn leave() {
    let mut state = lock();
    state.1 = state.1.saturating_sub(1);
    if state.1 == 0 {
        IDLE.notify_all();
    }
}

/// Lets no more calls in and waits (at most `timeout`) for those in flight; false
/// if some were still running then.
pub fn close_and_wait(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut state = lock();
    state.0 = true;
    while state.1 > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        state = IDLE
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}
