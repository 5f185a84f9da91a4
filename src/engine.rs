// engine.rs: which engine runs the program. `auto` decides on the kernel's facts
// (kernel.rs, asked once at start) and says why it chose what it chose.

use crate::arch::{Arch, Native};
use crate::cli::EngineChoice;
use crate::exit::Status;
use crate::kernel::Kernel;
use crate::log::{verbose, warn};
use crate::policy::Policy;
use crate::spawn::{Program, RunError};
use crate::{bpf, notify, ptrace};

/// Runs the program with the chosen engine.
pub fn run(
    choice: EngineChoice,
    kernel: Kernel,
    policy: &'static Policy,
    program: &mut Program,
) -> Result<Status, RunError> {
    match choice {
        EngineChoice::Bpf => run_bpf(kernel, policy, program),
        EngineChoice::Ptrace => {
            verbose!("engine: ptrace (requested)");
            ptrace::run(policy, kernel, program)
        }
        EngineChoice::Notify => {
            if let Some(missing) = kernel.notify_missing() {
                return Err(cannot_notify(missing));
            }
            verbose!("engine: notify (requested)");
            match notify::run(policy, kernel, program) {
                Ok(status) => Ok(status),
                Err(notify::Error::Run(e)) => Err(e),
                Err(notify::Error::Unavailable(why)) => Err(cannot_notify(&why.0)),
            }
        }
        EngineChoice::Auto => {
            match kernel.notify_missing() {
                // Notification without pidfd_getfd would mean patching the target's
                // memory, which a second thread can race: use ptrace, and say so.
                Some(missing) if kernel.user_notif => {
                    warn!(
                        "{missing}: using the ptrace engine, which a multi-threaded program can race"
                    );
                    return ptrace::run(policy, kernel, program);
                }
                Some(missing) => {
                    verbose!("engine: ptrace ({missing})");
                    return ptrace::run(policy, kernel, program);
                }
                None => {}
            }
            verbose!("engine: notify (this kernel has user notification and pidfd_getfd)");
            match notify::run(policy, kernel, program) {
                Ok(status) => Ok(status),
                Err(notify::Error::Run(e)) => Err(e),
                Err(notify::Error::Unavailable(why)) => {
                    warn!(
                        "notify engine unavailable ({}): using the ptrace engine",
                        why.0
                    );
                    ptrace::run(policy, kernel, program)
                }
            }
        }
    }
}

/// `--engine bpf`: a policy the programs cannot carry out is refused (exit 2), a
/// system that cannot run them is an error; never another engine in its place.
fn run_bpf(
    kernel: Kernel,
    policy: &'static Policy,
    program: &mut Program,
) -> Result<Status, RunError> {
    let refused = |why| RunError::Refused(format!("--engine bpf: {why}"));
    let cannot = |why| RunError::Engine(anyhow::anyhow!("the bpf engine cannot run here: {why}"));
    let programs = match bpf::compile(policy) {
        Ok(programs) => programs,
        Err(bpf::Error::Unsupported(why)) => return Err(refused(why)),
        Err(bpf::Error::Unavailable(why)) => return Err(cannot(why)),
        Err(bpf::Error::Run(e)) => return Err(e),
    };
    match bpf::run(policy, kernel, program, &programs) {
        Ok(status) => Ok(status),
        Err(bpf::Error::Unsupported(why)) => Err(refused(why)),
        Err(bpf::Error::Unavailable(why)) => Err(cannot(why)),
        Err(bpf::Error::Run(e)) => Err(e),
    }
}

/// `--engine notify` on a kernel or in a place where it cannot run.
fn cannot_notify(why: &str) -> RunError {
    RunError::Engine(anyhow::anyhow!(
        "the notify engine cannot run here: {why}; use -p"
    ))
}

/// For -V: the engines this kernel and architecture support.
pub fn describe(kernel: Kernel) -> String {
    let notify = match kernel.notify_missing() {
        None => "notify (seccomp user notification; NOTIF_ADDFD is checked at start)".to_string(),
        Some(missing) => format!("notify unavailable: {missing}"),
    };
    let bpf = match bpf::missing() {
        None => "bpf (cgroup bind4/bind6 programs, --engine bpf)".to_string(),
        Some(missing) => format!("bpf unavailable: {missing}"),
    };
    format!(
        "engines: {notify}; ptrace ({}, seccomp RET_TRACE); {bpf}",
        <Native as Arch>::NAME
    )
}
