// ptrace/probe.rs: which way round this kernel reports a RET_TRACE syscall. Linux 4.8
// moved the seccomp stop after the syscall-enter-stop: since then PTRACE_SYSCALL from
// a seccomp stop leads straight to the syscall-exit-stop; before, to the enter-stop
// first. Not guessed from uname: a kernel with PTRACE_GET_SYSCALL_INFO (5.3+) is new
// enough; older ones are probed once on a throw-away child, as strace does. Learnt by
// the engine, not in kernel.rs: the answer needs a tracee at a seccomp stop, and only
// kernels before 5.3 ever pay for the throw-away child, at the first call that needs it.

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid, fork};

use super::stop::{Restart, Stop, event_message, restart};
use crate::arch::{Arch, Native, Reg, read_regs};
use crate::filter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOrdering {
    /// Linux 4.8+: seccomp stop, then the syscall-exit-stop.
    SeccompThenExit,
    /// Before 4.8: seccomp stop, syscall-enter-stop, syscall-exit-stop.
    SeccompThenEnterThenExit,
}

/// What PTRACE_GET_SYSCALL_INFO (Linux 5.3+) says of a thread at a seccomp stop:
/// the ABI (seccomp_data.arch), the syscall number and its first argument. None
/// before 5.3, or at another kind of stop.
pub fn seccomp_syscall(pid: Pid) -> Option<(u32, u32, u64)> {
    // SAFETY: ptrace_syscall_info is plain data; all-zero is valid.
    let mut info: libc::ptrace_syscall_info = unsafe { std::mem::zeroed() };
    // SAFETY: GET_SYSCALL_INFO writes at most `size` bytes into `info`.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid.as_raw(),
            std::mem::size_of_val(&info),
            &mut info as *mut libc::ptrace_syscall_info,
        )
    };
    if rc <= 0 || info.op != libc::PTRACE_SYSCALL_INFO_SECCOMP {
        return None;
    }
    // SAFETY: op SECCOMP says the seccomp member of the union is the one filled in.
    let seccomp = unsafe { info.u.seccomp };
    Some((info.arch, seccomp.nr as u32, seccomp.args[0]))
}

/// Whether PTRACE_GET_SYSCALL_INFO (Linux 5.3) works on `pid`, a stopped tracee.
pub fn has_syscall_info(pid: Pid) -> bool {
    seccomp_syscall(pid).is_some()
}

pub fn seccomp_stop_ordering() -> anyhow::Result<StopOrdering> {
    let nr = <Native as Arch>::SYSCALLS;
    let program = filter::trace_only::<Native>(nr.getppid);
    // SAFETY: the child makes only raw syscalls on memory prepared before fork.
    match unsafe { fork() }.context("cannot fork the ptrace probe")? {
        ForkResult::Child => {
            // SAFETY: raw syscalls only; _exit never returns.
            unsafe {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
                if crate::spawn::install_filter(&program, 0).is_ok() {
                    libc::syscall(libc::SYS_getppid);
                }
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => {
            let result = observe(child, nr.getppid, nr.exit_group);
            // The probe must not leave a zombie behind.
            crate::spawn::kill_and_reap(child);
            result
        }
    }
}

fn wait_child(child: Pid) -> anyhow::Result<Stop> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a local.
        let rc = unsafe { libc::waitpid(child.as_raw(), &mut status, libc::__WALL) };
        match Errno::result(rc) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waitpid on the ptrace probe"),
        }
    }
    Stop::from_status(child, status).context("unexpected status from the ptrace probe")
}

fn observe(child: Pid, getppid: u32, exit_group: u32) -> anyhow::Result<StopOrdering> {
    match wait_child(child)? {
        Stop::Signal {
            signal: libc::SIGSTOP,
            ..
        } => {}
        other => bail!("ptrace probe: expected the child's SIGSTOP, got {other:?}"),
    }
    let options =
        libc::PTRACE_O_TRACESECCOMP | libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL;
    // SAFETY: SETOPTIONS takes the option bits as data, no pointers.
    Errno::result(unsafe {
        libc::ptrace(libc::PTRACE_SETOPTIONS, child.as_raw(), 0, options as usize)
    })
    .context("PTRACE_SETOPTIONS on the probe")?;
    restart(child, Restart::Continue(0))?;
    match wait_child(child)? {
        Stop::Seccomp { .. } => {}
        other => bail!(
            "ptrace probe: seccomp RET_TRACE did not stop the child ({other:?}); is seccomp filtering enabled?"
        ),
    }
    let _ = event_message(child);
    // Two syscall stops follow. New ordering: exit of getppid, then the enter-stop of
    // exit_group. Old ordering: enter and exit of getppid. The second tells them apart.
    restart(child, Restart::Syscall)?;
    wait_child(child)?;
    restart(child, Restart::Syscall)?;
    match wait_child(child)? {
        Stop::Syscall { pid } => {
            let nr = <Native as Arch>::get(&read_regs(pid)?, Reg::SyscallNr) as u32;
            if nr == exit_group {
                Ok(StopOrdering::SeccompThenExit)
            } else if nr == getppid {
                Ok(StopOrdering::SeccompThenEnterThenExit)
            } else {
                bail!("ptrace probe: unexpected syscall {nr} at the second stop")
            }
        }
        other => bail!("ptrace probe: expected a syscall stop, got {other:?}"),
    }
}
