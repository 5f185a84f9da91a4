// log.rs: what force-bind tells the user on stderr, and how much. One global level,
// set once from -q/-v/-D before any engine runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;

use crate::rule::{Decision, Note, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// -q: fatal errors only.
    Quiet = 0,
    /// Warnings (the default).
    Normal = 1,
    /// -v: one line per bind and listen.
    Verbose = 2,
    /// -D: engine internals too.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// A warning: shown unless -q.
macro_rules! warning {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Normal) {
            eprintln!("force-bind: warning: {}", format_args!($($arg)*));
        }
    };
}

/// One event line with -v.
macro_rules! verbose {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Verbose) {
            eprintln!("force-bind: {}", format_args!($($arg)*));
        }
    };
}

/// Engine internals with -D.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            eprintln!("force-bind: debug: {}", format_args!($($arg)*));
        }
    };
}

pub(crate) use {debug, verbose, warning as warn};

/// The -v text for one bind decision, the same in both engines.
pub fn describe_bind(fd: i32, addr: &SocketAddr, verdict: &Verdict) -> String {
    let by = verdict
        .rule
        .map(|r| format!(" by '{}'", r.text))
        .unwrap_or_default();
    let what = match verdict.decision {
        Decision::Allow if verdict.rule.is_some() => format!("allowed{by}"),
        Decision::Allow => "no rule matched, allowed".to_string(),
        Decision::Rewrite(to) => format!("rewritten to {to}{by}"),
        Decision::ReplaceWithFd(n) => format!("replaced by inherited fd {n}{by}"),
        Decision::Deny(e) => format!("denied ({e}){by}"),
    };
    let note = match &verdict.note {
        Some(Note::NotPassed(fd_ref)) => format!(" ({fd_ref} not passed: binding normally)"),
        None => String::new(),
    };
    format!("bind fd {fd} to {addr}: {what}{note}")
}

/// "ok", or the errno a syscall's result carries.
pub fn outcome(result: i64) -> String {
    if result < 0 {
        format!("failed: {}", Errno::from_raw(-result as i32))
    } else {
        "ok".to_string()
    }
}

/// The -v line for a refused io_uring_setup(), the same in both engines.
pub fn io_uring_refused(pid: nix::unistd::Pid) {
    verbose!(
        "pid {pid} ({}): io_uring_setup refused (ENOSYS): binds through io_uring would bypass the policy (--allow-io-uring)",
        crate::target::comm(pid)
    );
}
