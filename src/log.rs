// log.rs: what force-bind tells the user on stderr, and how much. One global level,
// set once from -q/-v/-D before any engine runs.

use std::sync::atomic::{AtomicU8, Ordering};

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
