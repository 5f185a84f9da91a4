// ptrace/mod.rs: the ptrace engine. A SECCOMP_RET_TRACE filter stops the program only
// at the syscalls the policy needs; the tracer (force-bind, the program's parent)
// carries each decision out through registers. Works on any kernel with seccomp
// filters (3.5+); racy against a second thread that rewrites the sockaddr the kernel
// has yet to read, which the notify engine is not.

mod bind;
mod probe;
mod stop;
mod tracer;

use std::os::fd::AsRawFd;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::pipe2;

use crate::arch::Native;
use crate::exit::Status;
use crate::filter::{self, Trap, Traps};
use crate::policy::Policy;
use crate::spawn::{self, Program, SpawnError};

/// PTRACE_O_*: follow every thread and child, see exec, and (EXITKILL) take the
/// program down with us if force-bind dies: no bind then escapes the policy.
const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_EXITKILL;

/// Runs `program` under the ptrace engine until it and every descendant are gone.
pub fn run(policy: &Policy, program: &mut Program) -> anyhow::Result<Status> {
    let bpf = filter::build::<Native>(Traps::for_policy(policy, Trap::Trace));

    // The child waits on `go` until it is seized: a RET_TRACE with no tracer attached
    // fails the syscall with ENOSYS instead of stopping.
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let go_fd = go_read.as_raw_fd();
    let child = spawn::spawn(program, || {
        spawn::wait_for_byte(go_fd)?;
        spawn::install_filter(&bpf, 0).map(drop)
    })?;
    drop(go_read);
    // SAFETY: PTRACE_SEIZE takes the options as data, no pointers.
    let seized = Errno::result(unsafe {
        libc::ptrace(libc::PTRACE_SEIZE, child.pid.as_raw(), 0, OPTIONS as usize)
    });
    if let Err(e) = seized {
        let _ = kill(child.pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child.pid, None);
        return Err(e).context("cannot trace the program (PTRACE_SEIZE); is ptrace forbidden here (Yama, a container's seccomp profile)?");
    }
    nix::unistd::write(&go_write, b"g").context("cannot start the program")?;
    drop(go_write);
    crate::exit::forward_signals_to(child.pid).context("cannot install signal handlers")?;

    match tracer::Tracer::new(policy, child.pid).run(&child)? {
        tracer::Outcome::Finished(status) => Ok(status),
        tracer::Outcome::ExecFailed(errno) => Err(match errno {
            Errno::ENOENT | Errno::ENOTDIR => SpawnError::NotFound(program.name().to_owned()),
            e => SpawnError::NotExecutable(program.name().to_owned(), e),
        }
        .into()),
    }
}
