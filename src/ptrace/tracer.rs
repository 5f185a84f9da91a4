// ptrace/tracer.rs: the event loop. Every thread and child of the program is traced
// (TRACEFORK/VFORK/CLONE); only the syscalls the filter traps ever stop them. Each
// stop gets exactly one restart, with any pending signal re-injected, so no tracee is
// left stopped; the loop ends when waitpid has no child left, so none is left a zombie.

use std::collections::HashMap;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::probe::StopOrdering;
use super::stop::{Restart, Stop, event_message, restart, wait_any};
use crate::arch::Native;
use crate::arch::{Arch, read_regs, write_regs};
use crate::exit::Status;
use crate::filter::{Call, Trapped};
use crate::kernel::Kernel;
use crate::log::{debug, warn};
use crate::policy::Policy;
use crate::spawn::Child;

type Regs = <Native as Arch>::Regs;

/// What to do at the exit of a syscall we changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixup {
    /// Give the thread back every register as it left them, but the result.
    RestoreArgs,
    /// The syscall was skipped: make it return this (0 or -errno).
    Return(i64),
    /// bind became dup2/dup3: its result (the fd) becomes bind's 0; errors stay.
    ReplacedBind,
    /// bind was borrowed for getsockopt(fd, ...) into `scratch`, on kernels without
    /// pidfd_getfd: keep the answer and run the bind again.
    Asked { scratch: u64, query: Query },
}

/// A socket option a thread is made to read about its own socket, before Linux 5.6
/// (after it, pidfd_getfd gives force-bind a copy of the socket to ask directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// SO_DOMAIN: the socket's family, which the sockaddr's may not match.
    Domain,
    /// IPV6_V6ONLY: whether an AF_INET6 socket also takes IPv4.
    V6Only,
    /// SO_TYPE and SO_PROTOCOL, when a rule names a protocol or an inherited socket
    /// must be of the same kind.
    Type,
    Protocol,
}

impl Query {
    pub fn option(self) -> (i32, i32) {
        match self {
            Query::Domain => (libc::SOL_SOCKET, libc::SO_DOMAIN),
            Query::V6Only => (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            Query::Type => (libc::SOL_SOCKET, libc::SO_TYPE),
            Query::Protocol => (libc::SOL_SOCKET, libc::SO_PROTOCOL),
        }
    }
}

/// What borrowed getsockopt calls told about the socket of one thread's bind, kept
/// for that bind when it runs again. `None` in a field: not asked yet; `Some(None)`:
/// the kernel would not say (the descriptor changed under us, say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketFacts {
    pub fd: i32,
    pub domain: Option<Option<i32>>,
    pub v6only: Option<Option<bool>>,
    pub sock_type: Option<Option<i32>>,
    pub protocol: Option<Option<i32>>,
}

/// A thread stopped in a trapped syscall we are still handling.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The registers at the seccomp stop, before we changed them.
    pub original: Regs,
    pub fixup: Fixup,
    /// Before Linux 4.8 an enter-stop comes between the seccomp stop and the exit.
    pub await_enter: bool,
    /// Filled in by the handler for the -v line printed once the result is known.
    pub report: Option<crate::log::Later>,
}

pub struct Tracer<'p> {
    pub policy: &'p Policy,
    /// Learnt at the first trapped call that needs it (see `ordering`).
    ordering: Option<StopOrdering>,
    pending: HashMap<Pid, Pending>,
    main: Pid,
    main_status: Option<Status>,
    main_exec_done: bool,
    /// Inodes of the inherited sockets, to recognise them in a tracee's fd table.
    pub inherited_inodes: Vec<(RawFd, u64)>,
    /// Whether pidfd_getfd(2) can copy a tracee's socket for us to inspect (5.6+).
    pub has_pidfd_getfd: bool,
    /// Per thread: what its borrowed getsockopt calls reported, for the bind it is
    /// about to run again.
    pub facts: HashMap<Pid, SocketFacts>,
    /// Read at the first trapped call (a /proc/sys read a program that never binds
    /// does not pay for).
    limits: std::cell::OnceCell<crate::sidebind::Limits>,
    pub pidfds: crate::target::Pidfds,
    /// Tracees given every option (`complete_options`).
    full_options: std::collections::HashSet<Pid>,
}

/// What a seccomp stop is about.
enum Stopped {
    At(Trapped),
    /// A RET_TRACE of the program's own filter, for a syscall we do not trap.
    NotOurs,
    /// The data does not match the syscall (before 5.3, where only the data says
    /// which ABI the call came through): refused.
    Unsure,
}

/// How the traced program ended, or that it never started.
pub enum Outcome {
    Finished(Status),
    ExecFailed(Errno),
}

impl<'p> Tracer<'p> {
    pub fn new(policy: &'p Policy, kernel: Kernel, main: Pid) -> Self {
        let inherited_inodes = crate::target::inodes_of(&policy.inherited.fds());
        Tracer {
            policy,
            ordering: None,
            pending: HashMap::new(),
            main,
            main_status: None,
            main_exec_done: false,
            inherited_inodes,
            has_pidfd_getfd: kernel.pidfd_getfd,
            facts: HashMap::new(),
            limits: std::cell::OnceCell::new(),
            pidfds: crate::target::Pidfds::default(),
            full_options: std::collections::HashSet::new(),
        }
    }

    /// Runs until no tracee is left.
    pub fn run(mut self, child: &Child) -> anyhow::Result<Outcome> {
        loop {
            let (pid, status) = match wait_any() {
                Ok(x) => x,
                Err(Errno::ECHILD) => break,
                Err(e) => return Err(anyhow::anyhow!("waitpid: {e}")),
            };
            let Some(stop) = Stop::from_status(pid, status) else {
                continue;
            };
            debug!("ptrace stop: {stop:?}");
            self.complete_options(stop);
            if let Err(e) = self.handle(stop) {
                // ESRCH: the tracee died under us (SIGKILL, exec by another thread);
                // its exit is reported separately.
                if e != Errno::ESRCH {
                    debug!("{stop:?}: {e}");
                }
            }
        }
        if !self.main_exec_done
            && let Some(errno) = child.exec_error()
        {
            return Ok(Outcome::ExecFailed(errno));
        }
        Ok(Outcome::Finished(
            self.main_status
                .unwrap_or(Status::Exited(crate::exit::INTERNAL)),
        ))
    }

    /// A tracee's first stop: it gets every option (see ptrace::OPTIONS). New
    /// tracees inherit their parent's options at fork, which may predate that, and
    /// start with an event-stop, so none runs code of its own without them.
    fn complete_options(&mut self, stop: Stop) {
        let pid = match stop {
            Stop::Exited { pid, .. } | Stop::Killed { pid, .. } => {
                self.full_options.remove(&pid);
                return;
            }
            Stop::Seccomp { pid }
            | Stop::Syscall { pid }
            | Stop::Forked { pid }
            | Stop::Exec { pid }
            | Stop::GroupStop { pid, .. }
            | Stop::EventStop { pid }
            | Stop::OtherEvent { pid }
            | Stop::Signal { pid, .. } => pid,
        };
        if self.full_options.insert(pid) {
            // SAFETY: SETOPTIONS takes the option bits as data, no pointers.
            let rc = unsafe {
                libc::ptrace(
                    libc::PTRACE_SETOPTIONS,
                    pid.as_raw(),
                    0,
                    super::OPTIONS as usize,
                )
            };
            if rc != 0 {
                debug!("pid {pid}: PTRACE_SETOPTIONS: {}", Errno::last());
            }
        }
    }

    fn handle(&mut self, stop: Stop) -> Result<(), Errno> {
        match stop {
            Stop::Exited { pid, code } => {
                self.gone(pid, Status::Exited(code));
                Ok(())
            }
            Stop::Killed { pid, signal } => {
                self.gone(pid, Status::from_signal(signal));
                Ok(())
            }
            Stop::Seccomp { pid } => {
                let decided = match self.trapped_at(pid)? {
                    Stopped::At(t) => match t.call {
                        Call::Bind | Call::Listen => self.on_call(pid, t),
                        Call::IoUringSetup => self.on_io_uring_setup(pid),
                    },
                    Stopped::NotOurs => Ok(Restart::Continue(0)),
                    Stopped::Unsure => {
                        warn!(
                            "pid {pid}: a seccomp stop whose data does not match its syscall; refusing it"
                        );
                        self.refuse(pid)
                    }
                };
                match decided {
                    Ok(how) => restart(pid, how),
                    Err(Errno::ESRCH) => Err(Errno::ESRCH),
                    Err(e) => {
                        // Fail closed: a trapped call we could not carry the policy out
                        // on must not run as asked, and the thread cannot be left stopped.
                        warn!("pid {pid}: cannot handle a trapped call ({e}); killing the process");
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        Err(e)
                    }
                }
            }
            Stop::Syscall { pid } => {
                let how = self.on_syscall_stop(pid)?;
                restart(pid, how)
            }
            Stop::Exec { pid } => {
                // A non-leader thread that execs takes the leader's id; the message
                // is its former id, whose state (if any) is gone with it.
                // Its socket facts are gone too: after exec the same descriptor
                // number may name another socket.
                if let Ok(former) = event_message(pid) {
                    self.pending.remove(&Pid::from_raw(former as i32));
                    self.facts.remove(&Pid::from_raw(former as i32));
                }
                self.pending.remove(&pid);
                self.facts.remove(&pid);
                if pid == self.main {
                    self.main_exec_done = true;
                }
                restart(pid, Restart::Continue(0))
            }
            Stop::GroupStop { pid, signal } => {
                debug!("pid {pid}: group-stop ({signal})");
                restart(pid, Restart::Listen)
            }
            Stop::Forked { pid } | Stop::EventStop { pid } | Stop::OtherEvent { pid } => {
                restart(pid, Restart::Continue(0))
            }
            Stop::Signal { pid, signal } => restart(pid, Restart::Continue(signal)),
        }
    }

    /// Which trapped call a seccomp stop is. The RET_TRACE data names it, but a
    /// program may stack a filter of its own that returns SECCOMP_RET_TRACE with any
    /// data for any syscall (among equal actions the newest filter's data wins), so
    /// the syscall itself decides: from PTRACE_GET_SYSCALL_INFO (5.3+), or else the
    /// data checked against the syscall number.
    fn trapped_at(&mut self, pid: Pid) -> Result<Stopped, Errno> {
        if let Some((arch, nr, arg0)) = super::probe::seccomp_syscall(pid) {
            return Ok(match Trapped::classify::<Native>(arch, nr, arg0) {
                Some(t) => Stopped::At(t),
                None => Stopped::NotOurs,
            });
        }
        let claimed = Trapped::from_code(event_message(pid)?);
        let nr = <Native as Arch>::get(&read_regs(pid)?, crate::arch::Reg::SyscallNr) as u32;
        let numbers = |t: Trapped| {
            let abi = super::bind::abi_of(t);
            let call_nr = match (t.call, t.via_socketcall) {
                (_, true) => abi.socketcall,
                (Call::Bind, false) => Some(abi.bind),
                (Call::Listen, false) => Some(abi.listen),
                (Call::IoUringSetup, false) => Some(abi.io_uring_setup),
            };
            call_nr.map(|n| n + abi.nr_base)
        };
        Ok(match claimed {
            Some(t) if numbers(t) == Some(nr) => Stopped::At(t),
            // Forged or foreign data: fine only if the syscall is none we trap in
            // any ABI; otherwise nobody can say which call it is.
            _ if crate::filter::traps_number::<Native>(nr) => Stopped::Unsure,
            _ => Stopped::NotOurs,
        })
    }

    fn gone(&mut self, pid: Pid, status: Status) {
        self.pending.remove(&pid);
        // A recycled thread id must not find this thread's socket facts.
        self.facts.remove(&pid);
        if pid == self.main {
            self.main_status = Some(status);
            crate::exit::program_gone();
        }
    }

    pub fn limits(&self) -> crate::sidebind::Limits {
        // A ptrace stop cannot be interrupted by a signal: no retried binds.
        *self
            .limits
            .get_or_init(|| crate::sidebind::Limits::read(false))
    }

    /// Records what to do at the syscall's exit, and asks to stop there.
    pub fn expect_exit(
        &mut self,
        pid: Pid,
        original: Regs,
        fixup: Fixup,
        report: Option<crate::log::Later>,
    ) -> Restart {
        let await_enter = self.ordering(pid) == StopOrdering::SeccompThenEnterThenExit;
        self.pending.insert(
            pid,
            Pending {
                original,
                fixup,
                await_enter,
                report,
            },
        );
        Restart::Syscall
    }

    fn on_syscall_stop(&mut self, pid: Pid) -> Result<Restart, Errno> {
        let Some(pending) = self.pending.get_mut(&pid) else {
            // Not one of ours (cannot happen with PTRACE_CONT elsewhere): let it run.
            return Ok(Restart::Continue(0));
        };
        if pending.await_enter {
            pending.await_enter = false;
            return Ok(Restart::Syscall);
        }
        let pending = self.pending.remove(&pid).expect("checked above");
        let result = <Native as Arch>::get(&read_regs(pid)?, crate::arch::Reg::Result) as i64;
        if let Fixup::Asked { scratch, query } = pending.fixup {
            let mut value = [0u8; 4];
            let answer = match (result, self.pidfds.read(pid, scratch, &mut value)) {
                (0, Ok(())) => Some(i32::from_ne_bytes(value)),
                _ => None,
            };
            let facts = self.facts.entry(pid).or_default();
            match query {
                Query::Domain => facts.domain = Some(answer),
                Query::V6Only => facts.v6only = Some(answer.map(|v| v != 0)),
                Query::Type => facts.sock_type = Some(answer),
                Query::Protocol => facts.protocol = Some(answer),
            }
            let mut again = pending.original;
            <Native as Arch>::rewind_to_syscall(&mut again);
            write_regs(pid, &again)?;
            return Ok(Restart::Continue(0));
        }
        // The kernel preserves every register but the result across a syscall (x86_64
        // also rcx and r11, which hold the same values at both stops); compiled code
        // relies on that, so the thread gets back its own registers, whatever we
        // changed to carry the call out, with only the result set.
        let mut regs = pending.original;
        let result = match pending.fixup {
            Fixup::RestoreArgs => result,
            Fixup::Return(value) => value,
            Fixup::ReplacedBind if result >= 0 => 0,
            Fixup::ReplacedBind => result,
            Fixup::Asked { .. } => unreachable!("handled above"),
        };
        <Native as Arch>::set(&mut regs, crate::arch::Reg::Result, result as u64);
        write_regs(pid, &regs)?;
        if let Some(report) = pending.report {
            report.emit(pid, result);
        }
        Ok(Restart::Continue(0))
    }

    /// Whether a skipped syscall returns what the tracer put in the result register
    /// at the seccomp stop (Linux 4.8+, where the seccomp stop comes after the
    /// syscall-enter-stop); before, the result is set at the exit stop.
    pub fn skip_sets_result(&mut self, pid: Pid) -> bool {
        self.ordering(pid) == StopOrdering::SeccompThenExit
    }

    /// The kernel's seccomp-stop ordering (it changed in 4.8). `pid` is stopped at a
    /// seccomp stop: PTRACE_GET_SYSCALL_INFO (5.3+) answers there, and a kernel that
    /// has it has the new ordering. Only older kernels pay for the probe, once.
    fn ordering(&mut self, pid: Pid) -> StopOrdering {
        if let Some(ordering) = self.ordering {
            return ordering;
        }
        let ordering = if super::probe::has_syscall_info(pid) {
            StopOrdering::SeccompThenExit
        } else {
            super::probe::seccomp_stop_ordering().unwrap_or_else(|e| {
                warn!("cannot probe the seccomp stop ordering ({e:#}); assuming Linux 4.8+");
                StopOrdering::SeccompThenExit
            })
        };
        debug!("seccomp stop ordering: {ordering:?}");
        self.ordering = Some(ordering);
        ordering
    }

    /// Sets the registers and arranges the exit fixup; on failure the thread is left
    /// as it was, which is safe only for an allowed bind: callers deny otherwise.
    pub fn apply(
        &mut self,
        pid: Pid,
        original: Regs,
        changed: &Regs,
        fixup: Fixup,
        report: Option<crate::log::Later>,
    ) -> Result<Restart, Errno> {
        if let Err(e) = write_regs(pid, changed) {
            warn!("pid {pid}: cannot change registers: {e}");
            return Err(e);
        }
        Ok(self.expect_exit(pid, original, fixup, report))
    }
}
