// exit.rs: force-bind leaves the way its program did. An exit code is passed on; a
// death by signal is re-raised on force-bind itself, with core dumps off (the program
// already dumped its own), so a shell or supervisor sees the same death. Our own
// failures use the conventions of env(1) and timeout(1).

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};

/// Bad command line or rule.
pub const USAGE: i32 = 2;
/// force-bind's own failure.
pub const INTERNAL: i32 = 125;
/// The program exists but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The program was not found.
pub const NOT_FOUND: i32 = 127;

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(Signal),
}

/// Ends force-bind with `status`. Never returns.
pub fn leave(status: Status) -> ! {
    match status {
        Status::Exited(code) => std::process::exit(code),
        Status::Signaled(signal) => {
            let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
            let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: restoring the default disposition installs no handler code.
            let _ = unsafe { sigaction(signal, &default) };
            let mut only = SigSet::empty();
            only.add(signal);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
            let _ = nix::sys::signal::raise(signal);
            // Still here: a signal whose default action is not to terminate (SIGCHLD,
            // SIGCONT, a stop signal that resumed). 128+N is the shell's convention.
            std::process::exit(128 + signal as i32)
        }
    }
}

/// Signals sent to force-bind that are meant for the program.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

static PROGRAM_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let pid = PROGRAM_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid <= 0 {
        // The program is gone (`program_gone`): the signal acts on force-bind as
        // if no handler had been installed. It is blocked while this handler runs,
        // so it is delivered, with its default action, as soon as we return.
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        return;
    }
    // A terminal's ^C or ^\ (SI_KERNEL) already went to the whole foreground process
    // group, the program included: passing it on again would deliver it twice.
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    if unsafe { (*info).si_code } == libc::SI_KERNEL {
        return;
    }
    // SAFETY: kill is async-signal-safe.
    unsafe { libc::kill(pid, signal) };
}

/// From now on the FORWARDED signals sent to force-bind go to `pid` instead.
pub fn forward_signals_to(pid: nix::unistd::Pid) -> nix::Result<()> {
    PROGRAM_PID.store(pid.as_raw(), std::sync::atomic::Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::SigAction(forward),
        SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    for signal in FORWARDED {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

impl Status {
    /// From a waitpid(2) status; None for a stop or continue report.
    pub fn from_wait(status: i32) -> Option<Status> {
        if libc::WIFEXITED(status) {
            Some(Status::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Status::from_signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

    /// Death by signal `signo`; a real-time signal nix cannot name is passed on as
    /// the shell's 128+N.
    pub fn from_signal(signo: i32) -> Status {
        Signal::try_from(signo)
            .map(Status::Signaled)
            .unwrap_or(Status::Exited(128 + signo))
    }
}

/// The program's main process is gone (reaped): signals are no longer passed on, so
/// none can reach an unrelated process that reused its PID; they act on force-bind
/// itself again (a SIGTERM ends it while it waits for the program's daemons).
/// The handlers stay (six sigaction calls fewer on every run's way out); `forward`
/// gives each signal its default action from now on.
pub fn program_gone() {
    PROGRAM_PID.store(0, std::sync::atomic::Ordering::Relaxed);
}
