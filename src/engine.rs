// engine.rs: which engine runs the program. `auto` asks the kernel once, with
// syscalls that have no side effects, and says why it chose what it chose.

use nix::errno::Errno;

use crate::arch::{Arch, Native};
use crate::cli::EngineChoice;
use crate::exit::Status;
use crate::log::{verbose, warn};
use crate::policy::Policy;
use crate::spawn::Program;
use crate::{notify, ptrace};

/// What the running kernel offers the notify engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// SECCOMP_RET_USER_NOTIF and the listener (5.0).
    pub user_notif: bool,
    /// pidfd_getfd(2) (5.6); pidfd_open (5.3) comes with it.
    pub pidfd_getfd: bool,
}

pub fn probe() -> Kernel {
    // SAFETY: seccomp_notif_sizes is plain data; GET_NOTIF_SIZES writes one.
    let user_notif = unsafe {
        let mut sizes: libc::seccomp_notif_sizes = std::mem::zeroed();
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes,
        ) == 0
    };
    // An invalid pidfd: EBADF where the syscall exists, ENOSYS where it does not.
    // SAFETY: no pointers; -1 is never a descriptor.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, 0, 0) };
    let pidfd_getfd = Errno::result(rc).err() != Some(Errno::ENOSYS);
    Kernel {
        user_notif,
        pidfd_getfd,
    }
}

/// Why the notify engine cannot run on this kernel, if it cannot. NOTIF_ADDFD (5.9)
/// can only be checked on a real listener; the notify engine does that at start.
pub fn notify_missing(kernel: Kernel) -> Option<&'static str> {
    if !kernel.user_notif {
        Some("no seccomp user notification (Linux 5.0)")
    } else if !kernel.pidfd_getfd {
        Some("no pidfd_getfd (Linux 5.6)")
    } else {
        None
    }
}

/// Runs the program with the chosen engine.
pub fn run(
    choice: EngineChoice,
    policy: &'static Policy,
    program: &mut Program,
) -> anyhow::Result<Status> {
    match choice {
        EngineChoice::Ptrace => {
            verbose!("engine: ptrace (requested)");
            ptrace::run(policy, program)
        }
        EngineChoice::Notify => {
            if let Some(missing) = notify_missing(probe()) {
                anyhow::bail!("the notify engine cannot run here: {missing}; use -p");
            }
            verbose!("engine: notify (requested)");
            match notify::run(policy, program) {
                Ok(status) => Ok(status),
                Err(notify::Error::Fatal(e)) => Err(e),
                Err(notify::Error::Unavailable(why)) => {
                    anyhow::bail!("the notify engine cannot run here: {}; use -p", why.0)
                }
            }
        }
        EngineChoice::Auto => {
            let kernel = probe();
            match notify_missing(kernel) {
                // Notification without pidfd_getfd would mean patching the target's
                // memory, which a second thread can race: use ptrace, and say so.
                Some(missing) if kernel.user_notif => {
                    warn!(
                        "{missing}: using the ptrace engine, which a multi-threaded program can race"
                    );
                    return ptrace::run(policy, program);
                }
                Some(missing) => {
                    verbose!("engine: ptrace ({missing})");
                    return ptrace::run(policy, program);
                }
                None => {}
            }
            verbose!("engine: notify (this kernel has user notification and pidfd_getfd)");
            match notify::run(policy, program) {
                Ok(status) => Ok(status),
                Err(notify::Error::Fatal(e)) => Err(e),
                Err(notify::Error::Unavailable(why)) => {
                    warn!(
                        "notify engine unavailable ({}): using the ptrace engine",
                        why.0
                    );
                    ptrace::run(policy, program)
                }
            }
        }
    }
}

/// For -V: the engines this kernel and architecture support.
pub fn describe() -> String {
    let notify = match notify_missing(probe()) {
        None => "notify (seccomp user notification; NOTIF_ADDFD is checked at start)".to_string(),
        Some(missing) => format!("notify unavailable: {missing}"),
    };
    format!(
        "engines: {notify}; ptrace ({}, seccomp RET_TRACE)",
        <Native as Arch>::NAME
    )
}
