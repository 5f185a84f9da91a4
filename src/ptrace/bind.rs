// ptrace/bind.rs: a thread stopped at bind() (and, with -L, listen()). Reads the
// request, asks the policy, and carries the decision out with registers: rewrite
// (new sockaddr in scratch stack memory), deny (skip, -EPERM), replace (dup2/dup3).

use nix::errno::Errno;
use nix::unistd::Pid;

use super::stop::Restart;
use super::tracer::{Fixup, Tracer};
use crate::arch::{Arch, Native, Reg};
use crate::log::{self, Level, verbose, warn};
use crate::memory;
use crate::rule::{BindRequest, Decision};
use crate::sockaddr::{self, Decoded, SOCKADDR_MAX_LEN};
use crate::target;

type Regs = <Native as Arch>::Regs;

fn arg(regs: &Regs, i: usize) -> u64 {
    <Native as Arch>::get(regs, Reg::Arg(i))
}

/// The -v line for one trapped call, printed with the result once it is known.
#[derive(Debug, Clone)]
pub struct Report {
    line: String,
}

impl Report {
    fn new(pid: Pid, what: String) -> Self {
        Report {
            line: format!("pid {pid} ({}): {what}", target::comm(pid)),
        }
    }

    pub fn print(&self, _pid: Pid, result: i64) {
        verbose!("{}: {}", self.line, log::outcome(result));
    }
}

impl Tracer<'_> {
    pub fn on_bind(&mut self, pid: Pid) -> Result<Restart, Errno> {
        let regs = self.regs(pid)?;
        let fd = arg(&regs, 0) as i32;
        // bind(int, const struct sockaddr *, socklen_t): the kernel reads addrlen as
        // an int and refuses < 0 or > sizeof(sockaddr_storage) with EINVAL itself.
        let len = arg(&regs, 2) as u32 as i32;
        if !(0..=SOCKADDR_MAX_LEN as i32).contains(&len) {
            return Ok(Restart::Continue(0));
        }
        let mut buf = [0u8; SOCKADDR_MAX_LEN];
        let bytes = &mut buf[..len as usize];
        if let Err(e) = memory::read(pid, arg(&regs, 1), bytes) {
            // The kernel would fail the same read with EFAULT; failing it ourselves
            // also closes the window where another thread maps the page in between.
            return self.skip(pid, regs, e, None);
        }
        let addr = match sockaddr::decode(bytes) {
            Decoded::Inet(addr) => addr,
            // Other families are never touched; malformed ones fail in the kernel.
            _ => return Ok(Restart::Continue(0)),
        };
        let dual_stack = match self.policy.needs_dual_stack(&addr) {
            false => false,
            true => match self.dual_stack(pid, fd, &regs)? {
                Ok(dual_stack) => dual_stack,
                Err(asking) => return Ok(asking),
            },
        };
        let policy = self.policy;
        let verdict = policy.decide(&BindRequest { addr, dual_stack });
        let mut report = log::enabled(Level::Verbose)
            .then(|| Report::new(pid, log::describe_bind(fd, &addr, &verdict)));
        match verdict.decision {
            Decision::Allow => Ok(match report {
                Some(report) => self.expect_exit(pid, regs, Fixup::RestoreArgs, Some(report)),
                None => Restart::Continue(0),
            }),
            Decision::Deny(errno) => self.skip(pid, regs, errno, report),
            Decision::Rewrite(to) => {
                let raw = sockaddr::encode(&to);
                // Fresh memory below the stack pointer, past the red zone, never the
                // caller's own buffer (it may be const, shared, or read again).
                let sp = <Native as Arch>::get(&regs, Reg::StackPointer);
                let scratch = (sp - <Native as Arch>::RED_ZONE - raw.as_bytes().len() as u64) & !15;
                if let Err(e) = memory::write(pid, scratch, raw.as_bytes()) {
                    warn!("pid {pid}: cannot write the new address: {e}; denying the bind");
                    return self.skip(pid, regs, Errno::EFAULT, report);
                }
                let mut changed = regs;
                <Native as Arch>::set(&mut changed, Reg::Arg(1), scratch);
                <Native as Arch>::set(&mut changed, Reg::Arg(2), raw.as_bytes().len() as u64);
                self.apply(pid, regs, &changed, Fixup::RestoreArgs, report)
            }
            Decision::ReplaceWithFd(inherited) => {
                let expected = self
                    .inherited_inodes
                    .iter()
                    .find(|(fd, _)| *fd == inherited)
                    .map(|(_, ino)| *ino);
                if expected.is_none() || target::socket_inode(pid, inherited) != expected {
                    // The program closed or reused the inherited descriptor: nothing
                    // to put in place, so it binds on its own.
                    if let Some(r) = report.as_mut() {
                        r.line.push_str(&format!(" (fd {inherited} is no longer the inherited socket in the program: binding normally)"));
                    }
                    return Ok(match report {
                        Some(report) => {
                            self.expect_exit(pid, regs, Fixup::RestoreArgs, Some(report))
                        }
                        None => Restart::Continue(0),
                    });
                }
                if inherited == fd {
                    return self.skip_with(pid, regs, 0, report);
                }
                let sys = <Native as Arch>::SYSCALLS;
                let cloexec = target::fd_cloexec(pid, fd).unwrap_or(false);
                // dup2 clears FD_CLOEXEC on the new descriptor; dup3 can keep it.
                let (nr, flags) = match (sys.dup2, cloexec) {
                    (Some(dup2), false) => (dup2, 0),
                    _ => (sys.dup3, if cloexec { libc::O_CLOEXEC as u64 } else { 0 }),
                };
                let mut changed = regs;
                <Native as Arch>::set(&mut changed, Reg::SyscallNr, nr as u64);
                <Native as Arch>::set(&mut changed, Reg::Arg(0), inherited as u64);
                <Native as Arch>::set(&mut changed, Reg::Arg(1), fd as u64);
                <Native as Arch>::set(&mut changed, Reg::Arg(2), flags);
                self.apply(pid, regs, &changed, Fixup::ReplacedBind, report)
            }
        }
    }

    /// -L: listen() on a socket that is one of the inherited ones is skipped (it is
    /// already listening). The socket itself is followed, by inode, so a new socket
    /// that reuses the descriptor number is listened normally.
    pub fn on_listen(&mut self, pid: Pid) -> Result<Restart, Errno> {
        let regs = self.regs(pid)?;
        let fd = arg(&regs, 0) as i32;
        let Some(inode) = target::socket_inode(pid, fd) else {
            return Ok(Restart::Continue(0));
        };
        match self.inherited_inodes.iter().find(|(_, ino)| *ino == inode) {
            Some((inherited, _)) => {
                let report = log::enabled(Level::Verbose)
                    .then(|| Report::new(pid, format!("listen fd {fd}: skipped, it is inherited fd {inherited}, already listening")));
                self.skip_with(pid, regs, 0, report)
            }
            None => Ok(Restart::Continue(0)),
        }
    }

    /// Whether the program's AF_INET6 socket `fd` is dual-stack: asked of our own copy
    /// of the socket where pidfd_getfd exists (5.6+). Elsewhere the thread itself is
    /// made to ask: this bind is borrowed for getsockopt(IPV6_V6ONLY) and run again
    /// once the answer is in (the Err case: how to restart the thread now).
    fn dual_stack(
        &mut self,
        pid: Pid,
        fd: i32,
        regs: &Regs,
    ) -> Result<Result<bool, Restart>, Errno> {
        if let Some((asked_fd, v6only)) = self.v6only_answers.remove(&pid)
            && asked_fd == fd
        {
            return Ok(Ok(!v6only));
        }
        if self.has_pidfd_getfd {
            let copy = target::pidfd(pid).and_then(|pidfd| target::getfd(&pidfd, fd));
            let dual_stack = copy.and_then(|sock| target::sock_dual_stack(&sock));
            return Ok(Ok(
                dual_stack.unwrap_or_else(|_| target::default_dual_stack())
            ));
        }
        // int value; socklen_t len = 4; below the stack pointer, past the red zone.
        let sp = <Native as Arch>::get(regs, Reg::StackPointer);
        let scratch = (sp - <Native as Arch>::RED_ZONE - 16) & !15;
        let mut cell = [0u8; 8];
        cell[4..].copy_from_slice(&4u32.to_ne_bytes());
        memory::write(pid, scratch, &cell)?;
        let mut changed = *regs;
        let sys = <Native as Arch>::SYSCALLS;
        <Native as Arch>::set(&mut changed, Reg::SyscallNr, sys.getsockopt as u64);
        <Native as Arch>::set(&mut changed, Reg::Arg(1), libc::IPPROTO_IPV6 as u64);
        <Native as Arch>::set(&mut changed, Reg::Arg(2), libc::IPV6_V6ONLY as u64);
        <Native as Arch>::set(&mut changed, Reg::Arg(3), scratch);
        <Native as Arch>::set(&mut changed, Reg::Arg(4), scratch + 4);
        self.apply(
            pid,
            *regs,
            &changed,
            Fixup::AskedV6Only { fd, scratch },
            None,
        )
        .map(Err)
    }

    /// Skips the syscall; it returns -errno.
    fn skip(
        &mut self,
        pid: Pid,
        regs: Regs,
        errno: Errno,
        report: Option<Report>,
    ) -> Result<Restart, Errno> {
        self.skip_with(pid, regs, -(errno as i64), report)
    }

    fn skip_with(
        &mut self,
        pid: Pid,
        regs: Regs,
        result: i64,
        report: Option<Report>,
    ) -> Result<Restart, Errno> {
        let mut changed = regs;
        // Syscall number -1: the kernel skips the call and leaves the result to us.
        <Native as Arch>::set(&mut changed, Reg::SyscallNr, u64::MAX);
        self.apply(pid, regs, &changed, Fixup::Return(result), report)
    }
}
