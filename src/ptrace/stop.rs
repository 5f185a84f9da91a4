// ptrace/stop.rs: what a waitpid(2) status means for a tracer, one variant per kind
// of stop in ptrace(2) (after pete's Stop enum), and the restart requests. Statuses
// are decoded raw: nix's Signal cannot carry real-time signals, which programs use.

use nix::errno::Errno;
use nix::unistd::Pid;

/// A signal number as the kernel reports it (real-time signals included).
pub type SigNo = i32;

// The variants keep ptrace(2)'s own names ("group-stop", "event-stop").
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The tracee is gone.
    Exited {
        pid: Pid,
        code: i32,
    },
    Killed {
        pid: Pid,
        signal: SigNo,
    },
    /// PTRACE_EVENT_SECCOMP: our filter returned SECCOMP_RET_TRACE.
    Seccomp {
        pid: Pid,
    },
    /// A syscall-enter or -exit stop (SIGTRAP|0x80 thanks to PTRACE_O_TRACESYSGOOD).
    Syscall {
        pid: Pid,
    },
    /// PTRACE_EVENT_FORK/VFORK/CLONE in the parent; the child is already traced.
    Forked {
        pid: Pid,
    },
    /// PTRACE_EVENT_EXEC: `pid` is the thread group leader's id after exec.
    Exec {
        pid: Pid,
    },
    /// "If the tracee was attached using PTRACE_SEIZE, group-stop is indicated by
    /// PTRACE_EVENT_STOP: status>>16 == PTRACE_EVENT_STOP", with a stopping signal.
    GroupStop {
        pid: Pid,
        signal: SigNo,
    },
    /// PTRACE_EVENT_STOP that is not a group-stop: a new child's first stop or a
    /// PTRACE_INTERRUPT.
    EventStop {
        pid: Pid,
    },
    /// Any other PTRACE_EVENT_* (VFORK_DONE, EXIT) that needs nothing but a restart.
    OtherEvent {
        pid: Pid,
    },
    /// Signal-delivery-stop: the signal must be injected on restart, or it is lost.
    Signal {
        pid: Pid,
        signal: SigNo,
    },
}

const PTRACE_EVENT_STOP: i32 = 128;

impl Stop {
    pub fn from_status(pid: Pid, status: i32) -> Option<Stop> {
        if libc::WIFEXITED(status) {
            return Some(Stop::Exited {
                pid,
                code: libc::WEXITSTATUS(status),
            });
        }
        if libc::WIFSIGNALED(status) {
            return Some(Stop::Killed {
                pid,
                signal: libc::WTERMSIG(status),
            });
        }
        if !libc::WIFSTOPPED(status) {
            return None;
        }
        let signal = libc::WSTOPSIG(status);
        let event = status >> 16;
        Some(match (event, signal) {
            (0, s) if s == libc::SIGTRAP | 0x80 => Stop::Syscall { pid },
            (0, s) => Stop::Signal { pid, signal: s },
            (libc::PTRACE_EVENT_SECCOMP, _) => Stop::Seccomp { pid },
            (libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE, _) => {
                Stop::Forked { pid }
            }
            (libc::PTRACE_EVENT_EXEC, _) => Stop::Exec { pid },
            (PTRACE_EVENT_STOP, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) => {
                Stop::GroupStop { pid, signal }
            }
            (PTRACE_EVENT_STOP, _) => Stop::EventStop { pid },
            _ => Stop::OtherEvent { pid },
        })
    }
}

/// How a stopped tracee is set going again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// PTRACE_CONT: run until the next event we asked for.
    Continue(SigNo),
    /// PTRACE_SYSCALL: also stop at the next syscall boundary (the exit of the
    /// trapped syscall, where the result is fixed up).
    Syscall,
    /// PTRACE_LISTEN: stay in group-stop but report the SIGCONT that ends it.
    Listen,
}

pub fn restart(pid: Pid, how: Restart) -> Result<(), Errno> {
    let (request, data) = match how {
        Restart::Continue(sig) => (libc::PTRACE_CONT, sig),
        Restart::Syscall => (libc::PTRACE_SYSCALL, 0),
        Restart::Listen => (libc::PTRACE_LISTEN, 0),
    };
    // SAFETY: these requests take no pointers; data is a signal number.
    let rc = unsafe {
        libc::ptrace(
            request,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            data as usize,
        )
    };
    Errno::result(rc).map(drop)
}

/// PTRACE_GETEVENTMSG: the RET_TRACE data, a new child's pid, a former thread id.
pub fn event_message(pid: Pid) -> Result<u64, Errno> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: GETEVENTMSG writes one unsigned long into `msg`.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            &mut msg,
        )
    };
    Errno::result(rc).map(|_| msg as u64)
}

/// How long the tracer polls for the next stop before it sleeps in waitpid. A
/// program that binds in a loop stops again within microseconds; an idle CPU takes
/// far longer than that to wake (tens of microseconds in a VM), on every stop. The
/// cost is at most this much CPU per stop.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// waitpid(-1, __WALL), retried on EINTR (a forwarded signal's handler ran); polls
/// for SPIN first.
pub fn wait_any() -> Result<(Pid, i32), Errno> {
    let spin_until = std::time::Instant::now() + SPIN;
    loop {
        let mut status = 0;
        let spinning = std::time::Instant::now() < spin_until;
        let flags = libc::__WALL | if spinning { libc::WNOHANG } else { 0 };
        // SAFETY: waitpid writes the status into a local.
        let rc = unsafe { libc::waitpid(-1, &mut status, flags) };
        match Errno::result(rc) {
            // Nothing yet: let anything else runnable here (the tracee itself, when
            // it shares this CPU) go first.
            // SAFETY: sched_yield has no arguments and cannot fail.
            Ok(0) => unsafe {
                libc::sched_yield();
            },
            Ok(pid) => return Ok((Pid::from_raw(pid), status)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(sig: i32, event: i32) -> i32 {
        (event << 16) | (sig << 8) | 0x7f
    }

    #[test]
    fn decodes_statuses() {
        let p = Pid::from_raw(7);
        let cases = [
            (0, Stop::Exited { pid: p, code: 0 }),
            (3 << 8, Stop::Exited { pid: p, code: 3 }),
            (
                libc::SIGKILL,
                Stop::Killed {
                    pid: p,
                    signal: libc::SIGKILL,
                },
            ),
            (stopped(libc::SIGTRAP | 0x80, 0), Stop::Syscall { pid: p }),
            (
                stopped(libc::SIGUSR1, 0),
                Stop::Signal {
                    pid: p,
                    signal: libc::SIGUSR1,
                },
            ),
            (stopped(34, 0), Stop::Signal { pid: p, signal: 34 }),
            (
                stopped(libc::SIGTRAP, libc::PTRACE_EVENT_SECCOMP),
                Stop::Seccomp { pid: p },
            ),
            (
                stopped(libc::SIGTRAP, libc::PTRACE_EVENT_CLONE),
                Stop::Forked { pid: p },
            ),
            (
                stopped(libc::SIGTRAP, libc::PTRACE_EVENT_EXEC),
                Stop::Exec { pid: p },
            ),
            (
                stopped(libc::SIGSTOP, 128),
                Stop::GroupStop {
                    pid: p,
                    signal: libc::SIGSTOP,
                },
            ),
            (
                stopped(libc::SIGTTOU, 128),
                Stop::GroupStop {
                    pid: p,
                    signal: libc::SIGTTOU,
                },
            ),
            (stopped(libc::SIGTRAP, 128), Stop::EventStop { pid: p }),
            (
                stopped(libc::SIGTRAP, libc::PTRACE_EVENT_VFORK_DONE),
                Stop::OtherEvent { pid: p },
            ),
        ];
        for (status, want) in cases {
            assert_eq!(Stop::from_status(p, status), Some(want), "{status:#x}");
        }
        assert_eq!(Stop::from_status(p, 0xffff), None); // WIFCONTINUED
    }
}
