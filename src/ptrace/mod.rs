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
use nix::unistd::pipe2;

use crate::arch::Native;
use crate::exit::Status;
use crate::filter::{self, Trap, Traps};
use crate::kernel::Kernel;
use crate::policy::Policy;
use crate::spawn::{self, Program, RunError, SpawnError};

/// PTRACE_O_*: follow every thread and child, see exec, and (EXITKILL) take the
/// program down with us if force-bind dies: no bind then escapes the policy. The
/// child is seized with `AT_SEIZE`, and each tracee gets the rest at its first
/// stop (tracer.rs).
pub const OPTIONS: libc::c_int = AT_SEIZE | libc::PTRACE_O_TRACEEXEC;

/// OPTIONS but TRACEEXEC: the program's own first exec would otherwise stop it once
/// more before it starts (a round trip every run pays). Nothing needs to see an
/// exec before a tracee's first stop: the per-thread state an exec ends starts at a
/// stop, and a failed exec is told by the child's status pipe. Every other option
/// must be there from the start: a child forked before the first stop is attached
/// only with TRACEFORK, and EXITKILL and TRACESECCOMP are the policy's guarantee.
const AT_SEIZE: libc::c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_EXITKILL;

/// Runs `program` under the ptrace engine until it and every descendant are gone.
pub fn run(policy: &Policy, kernel: Kernel, program: &mut Program) -> Result<Status, RunError> {
    let bpf = filter::build::<Native>(Traps::for_policy(policy, Trap::Trace));

    // The child waits on `go` until it is seized: a RET_TRACE with no tracer attached
    // fails the syscall with ENOSYS instead of stopping.
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let go_fd = go_read.as_raw_fd();
    // Dropped on any way out before `hand_over`, it kills and reaps the child.
    let child = spawn::spawn(program, spawn::Start::Copy, || {
        spawn::wait_for_byte(go_fd)?;
        spawn::install_filter(&bpf, 0).map(drop)
    })?;
    drop(go_read);
    seize(child.pid())
        .context("cannot trace the program (PTRACE_SEIZE); is ptrace forbidden here (Yama, a container's seccomp profile)?")?;
    nix::unistd::write(&go_write, b"g").context("cannot start the program")?;
    drop(go_write);
    crate::exit::forward_signals_to(child.pid()).context("cannot install signal handlers")?;

    // The tracer's wait loop reaps every tracee, the child too.
    let child = child.hand_over();
    match tracer::Tracer::new(policy, kernel, child.pid).run(&child)? {
        tracer::Outcome::Finished(status) => Ok(status),
        tracer::Outcome::ExecFailed(errno) => {
            Err(SpawnError::at_exec(program.name(), errno).into())
        }
    }
}

/// PTRACE_SEIZE on the child. The child is forked dumpable (spawn.rs), so the first
/// try succeeds; should force-bind have been unable to make it so, its first step
/// after fork does it, and until then a seize by a force-bind without CAP_SYS_PTRACE
/// fails with EPERM. So EPERM is tried again, for a bounded time.
fn seize(pid: nix::unistd::Pid) -> Result<(), Errno> {
    const TRIES: u32 = 1000;
    let mut tries = 0;
    loop {
        // SAFETY: PTRACE_SEIZE takes the options as data, no pointers.
        let seized = Errno::result(unsafe {
            libc::ptrace(libc::PTRACE_SEIZE, pid.as_raw(), 0, AT_SEIZE as usize)
        });
        match seized {
            Err(Errno::EPERM) if tries < TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            other => return other.map(drop),
        }
    }
}
