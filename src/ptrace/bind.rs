// ptrace/bind.rs: a thread stopped at a trapped bind(), listen() or io_uring_setup(),
// in the native or the 32-bit ABI, directly or through socketcall(2). Where the kernel
// has pidfd_getfd (5.6+) the bind is done from force-bind's side on a copy of the
// socket (sidebind.rs), as in the notify engine, and the syscall is skipped with its
// result: nothing the program's other threads do to its memory can matter. Before
// 5.6 the decision is carried out with registers: the new sockaddr goes to scratch
// memory below the stack pointer (a second thread can still race that; see README).

use nix::errno::Errno;
use nix::unistd::Pid;

use super::stop::Restart;
use super::tracer::{Fixup, Query, SocketFacts, Tracer};
use crate::arch::{AbiKind, Arch, Native, Reg};
use crate::event::{Action, Call};
use crate::filter::Trapped;
use crate::handler::{self, Answer, Context, Trap};
use crate::log::{self, Announcement, Later, debug, warn};
use crate::policy::{BindRequest, Decision, Purpose, SocketKind};
use crate::sidebind;
use crate::sockaddr::{self, Decoded, SOCKADDR_MAX_LEN};
use crate::target;

type Regs = <Native as Arch>::Regs;

/// The scratch a rewritten bind uses below the stack pointer: the sockaddr (up to
/// sockaddr_storage's 128 bytes), then socketcall's three u32 arguments.
const SOCKETCALL_ARGS_AT: usize = crate::sockaddr::SOCKADDR_MAX_LEN;
const BIND_SCRATCH_LEN: usize = SOCKETCALL_ARGS_AT + 3 * 4 + 4;
/// What is reserved for it: the bytes, rounded up to keep the 16-byte alignment.
const BIND_SCRATCH_SPAN: u64 = (BIND_SCRATCH_LEN as u64 + 32 + 15) & !15;
/// getsockopt's int and socklen_t, for `ask`.
const ASK_SCRATCH_SPAN: u64 = 16;

/// The 16-byte aligned start of `span` bytes below `sp` and the red zone (the
/// ABI's area under the stack pointer that leaf code may use without moving it);
/// None when the program's stack pointer leaves no room (its own garbage).
fn scratch_below(sp: u64, span: u64) -> Option<u64> {
    sp.checked_sub(<Native as Arch>::RED_ZONE)?
        .checked_sub(span)
        .map(|at| at & !15)
}

fn get(regs: &Regs, reg: Reg) -> u64 {
    <Native as Arch>::get(regs, reg)
}

fn set(regs: &mut Regs, reg: Reg, value: u64) {
    <Native as Arch>::set(regs, reg, value)
}

/// The ABI description the trapped call was made through.
pub fn abi_of(t: Trapped) -> &'static crate::arch::Abi {
    match t.abi {
        AbiKind::Compat => <Native as Arch>::FOREIGN
            .iter()
            .find(|abi| abi.kind == AbiKind::Compat)
            .expect("the filter traps compat calls only where the arch has them"),
        _ => &<Native as Arch>::NATIVE,
    }
}

impl Tracer<'_> {
    /// The first three arguments of the trapped call: from registers, or from the
    /// u32 array socketcall(2) points at (read once).
    fn call_args(&self, pid: Pid, regs: &Regs, t: Trapped) -> Result<[u64; 3], Errno> {
        if t.via_socketcall {
            let mut words = [0u8; 12];
            self.pidfds
                .read(pid, get(regs, Reg::CompatArg(1)), &mut words)?;
            let word =
                |i: usize| u32::from_ne_bytes(words[i * 4..i * 4 + 4].try_into().unwrap()) as u64;
            return Ok([word(0), word(1), word(2)]);
        }
        Ok([0, 1, 2].map(|i| get(regs, Reg::arg(t.abi, i))))
    }

    /// A trapped bind or listen. Where the kernel has pidfd_getfd (5.6+) the
    /// engine-neutral handler does it on force-bind's copy of the socket and the
    /// syscall is skipped with its result; before, the registers carry it out.
    pub fn on_call(&mut self, pid: Pid, t: Trapped) -> Result<Restart, Errno> {
        if !self.has_pidfd_getfd {
            return match t.call {
                Call::Listen => self.on_listen_before_5_6(pid, t),
                _ => self.on_bind_before_5_6(pid, t),
            };
        }
        let regs = crate::arch::read_regs(pid)?;
        let ctx = Context {
            policy: self.policy,
            limits: self.limits(),
            pidfds: &self.pidfds,
            inherited_inodes: &self.inherited_inodes,
        };
        // A thread in a ptrace stop cannot go away from under us.
        let still_waiting = || Ok(());
        let trap = Trap {
            pid,
            trapped: t,
            args: [0, 1, 2].map(|i| get(&regs, Reg::arg(t.abi, i))),
            still_waiting: &still_waiting,
        };
        match handler::handle(&ctx, &trap) {
            Answer::Return(Ok(())) => self.skip_with(pid, regs, 0, None),
            Answer::Return(Err(e)) => self.skip(pid, regs, e, None),
            Answer::Replace {
                fd,
                inherited,
                cloexec,
                announcement,
            } => self.replace(
                pid,
                regs,
                t,
                fd,
                inherited,
                cloexec,
                announcement.map(Later::Bind),
            ),
        }
    }

    /// bind() before 5.6, without a copy of the socket.
    fn on_bind_before_5_6(&mut self, pid: Pid, t: Trapped) -> Result<Restart, Errno> {
        let regs = crate::arch::read_regs(pid)?;
        let [fd, addr_ptr, len] = match self.call_args(pid, &regs, t) {
            Ok(args) => args,
            Err(e) => return self.skip(pid, regs, e, None),
        };
        let fd = fd as i32;
        let mut buf = [0u8; SOCKADDR_MAX_LEN];
        let read = |b: &mut [u8]| self.pidfds.read(pid, addr_ptr, b);
        // bind(2)'s own order: a descriptor that is not an open socket fails first,
        // whatever the address. Answered here, not by letting the call run: another
        // thread could put a socket at that number in between.
        if target::socket_inode(pid, fd).is_none() {
            let errno = if target::fd_exists(pid, fd) {
                Errno::ENOTSOCK
            } else {
                Errno::EBADF
            };
            return self.skip(pid, regs, errno, None);
        }
        match sidebind::read_sockaddr(len, read, &mut buf) {
            Ok(len) => self.bind_with_registers(pid, regs, t, fd, &buf[..len]),
            Err(e) => self.skip(pid, regs, e, None),
        }
    }

    /// The pre-5.6 path: the decision carried out by changing the call's arguments.
    /// Whatever the decision, the kernel binds a copy of the bytes that were checked,
    /// never the caller's buffer, which another thread could change in between.
    fn bind_with_registers(
        &mut self,
        pid: Pid,
        regs: Regs,
        t: Trapped,
        fd: i32,
        bytes: &[u8],
    ) -> Result<Restart, Errno> {
        let mut addr = match sockaddr::decode(bytes) {
            Decoded::Inet(addr) => Some(addr),
            _ => None,
        };
        // The kind decides some rules, and events name the protocol.
        let needs_kind = self.policy.needs_kind() || log::events_wanted();
        let (dual_stack, kind) = if t.abi == AbiKind::Compat {
            // Asking the thread needs a rewind over the syscall instruction, which
            // 32-bit callers may have entered by sysenter: take the sockaddr's family
            // for the socket's, the system default for IPV6_V6ONLY, and TCP for the
            // kind (what 32-bit servers that rules hand sockets to bind).
            let dual_stack = addr.is_some_and(|a| self.policy.needs_dual_stack(&a))
                && target::default_dual_stack();
            (dual_stack, SocketKind::TCP)
        } else {
            let facts = self
                .facts
                .remove(&pid)
                .filter(|f| f.fd == fd)
                .unwrap_or(SocketFacts {
                    fd,
                    ..Default::default()
                });
            let Some(domain) = facts.domain else {
                return self.ask(pid, &regs, facts, Query::Domain);
            };
            if domain != Some(libc::AF_INET) && domain != Some(libc::AF_INET6) {
                // Not an IP socket: the policy never touches it, but the kernel
                // must get the checked bytes, and never IP ones (another thread
                // could put an IP socket at this number in between).
                return match addr {
                    Some(_) => self.skip(pid, regs, Errno::EINVAL, None),
                    None => self.bind_copy(pid, regs, t, fd, bytes, None),
                };
            }
            // What the kernel would really bind, whatever the family field says
            // (raw and SCTP sockets do not all check it); bytes it refuses anyway
            // go to it unjudged, on the checked copy below.
            let judged = domain.and_then(|d| sockaddr::judged_address(d, bytes));
            let own_family = judged.is_none_or(|(_, own)| own);
            // Bytes of another family: whether the protocol refuses them decides.
            let needs_kind = needs_kind || !own_family;
            let kind = match (needs_kind, facts.sock_type, facts.protocol) {
                (false, ..) => SocketKind::default(),
                (true, None, _) => return self.ask(pid, &regs, facts, Query::Type),
                (true, Some(_), None) => return self.ask(pid, &regs, facts, Query::Protocol),
                (true, Some(sock_type), Some(protocol)) => SocketKind {
                    sock_type: sock_type.unwrap_or(0),
                    protocol: protocol.unwrap_or(0),
                },
            };
            addr = match judged {
                // TCP and UDP refuse them (sockaddr::judged_address): the kernel's
                // errno, from the checked copy below.
                Some((_, false)) if kind.refuses_other_families() => None,
                judged => judged.map(|(a, _)| a),
            };
            let dual_stack = match (
                addr.is_some_and(|a| self.policy.needs_dual_stack(&a)),
                facts.v6only,
            ) {
                (false, _) => false,
                (true, None) => return self.ask(pid, &regs, facts, Query::V6Only),
                (true, Some(v6only)) => !v6only.unwrap_or(!target::default_dual_stack()),
            };
            (dual_stack, kind)
        };
        let Some(addr) = addr else {
            return self.bind_copy(pid, regs, t, fd, bytes, None);
        };
        let policy = self.policy;
        let request = BindRequest {
            addr,
            dual_stack,
            kind,
            purpose: Purpose::Bind,
        };
        let verdict = policy.decide(&request);
        // A port-0 bind that a port-range deny could catch: the port is picked here
        // (the kernel binds after the thread goes on, so a port in use gives the
        // program EADDRINUSE, as a full range would).
        let picked_port = match sidebind::port_choice(policy, request) {
            None => None,
            Some(allowed) => match sidebind::candidate_ports().find(|p| allowed(*p)) {
                Some(port) => Some(port),
                // Every port denied: as the kernel says of a full range.
                None => return self.skip(pid, regs, Errno::EADDRINUSE, None),
            },
        };
        let with_port = |to: std::net::SocketAddr| {
            let mut to = to;
            if let (0, Some(port)) = (to.port(), picked_port) {
                to.set_port(port);
            }
            to
        };
        log::warn_skipped(pid, Call::Bind, fd, addr, kind, &verdict);
        let mut announcement = Announcement::new(pid, Call::Bind, fd, addr, kind, &verdict);
        match verdict.decision {
            Decision::Deny(errno) => self.skip(pid, regs, errno, announcement.map(Later::Bind)),
            Decision::ReplaceWithFd(inherited) => {
                let cloexec = target::fd_cloexec(pid, fd).unwrap_or(false);
                let report = announcement.map(Later::Bind);
                self.replace(pid, regs, t, fd, inherited, cloexec, report)
            }
            Decision::Allow if verdict.judge_listen => {
                // Its listen() is judged by inode (there is no copy to read its port
                // from before 5.6); refused when that cannot be remembered.
                let remembered = target::socket_inode(pid, fd)
                    .is_some_and(|inode| sidebind::remember_port_zero(inode, addr));
                let report = announcement.map(Later::Bind);
                let to = sockaddr::encode(&with_port(addr));
                let bytes = if picked_port.is_some() {
                    to.as_bytes()
                } else {
                    bytes
                };
                match remembered {
                    true => self.bind_copy(pid, regs, t, fd, bytes, report),
                    false => self.skip(pid, regs, Errno::EPERM, report),
                }
            }
            Decision::Allow if picked_port.is_some() => {
                let to = sockaddr::encode(&with_port(addr));
                let report = announcement.map(Later::Bind);
                self.bind_copy(pid, regs, t, fd, to.as_bytes(), report)
            }
            Decision::Allow => {
                self.bind_copy(pid, regs, t, fd, bytes, announcement.map(Later::Bind))
            }
            Decision::Rewrite(targets) => {
                // The kernel binds after we let the thread go, so only one address
                // can be tried: the first that is local in the program's network
                // namespace (a host name's others are for the kernel to refuse).
                let to = targets
                    .iter()
                    .find(|to| crate::diagnose::not_local_hint(pid, to.ip()).is_none())
                    .unwrap_or(&targets[0]);
                let to = &with_port(*to);
                if let Some(a) = announcement.as_mut() {
                    a.rewritten_to(*to);
                }
                let report = announcement.map(Later::Bind);
                self.bind_copy(pid, regs, t, fd, sockaddr::encode(to).as_bytes(), report)
            }
        }
    }

    /// Points the call at a copy of `to_bind` in fresh memory below the stack
    /// pointer, past the red zone, never the caller's own buffer (it may be const,
    /// shared, or rewritten by another thread). A socketcall also gets a fresh
    /// argument array next to it.
    fn bind_copy(
        &mut self,
        pid: Pid,
        regs: Regs,
        t: Trapped,
        fd: i32,
        to_bind: &[u8],
        report: Option<Later>,
    ) -> Result<Restart, Errno> {
        let Some(scratch) = scratch_below(get(&regs, Reg::StackPointer), BIND_SCRATCH_SPAN) else {
            // A stack pointer at the bottom of the address space is the program's
            // own garbage: it gets EFAULT, as any bad pointer would.
            return self.skip(pid, regs, Errno::EFAULT, report);
        };
        if t.abi == AbiKind::Compat && scratch + BIND_SCRATCH_SPAN > u32::MAX as u64 {
            // A 64-bit program using int $0x80: its stack is out of a 32-bit
            // pointer's reach. Refuse rather than let the bind through unchecked.
            warn!("pid {pid}: no 32-bit scratch memory for the address; denying the bind");
            return self.skip(pid, regs, Errno::EPERM, report);
        }
        let mut scratch_bytes = [0u8; BIND_SCRATCH_LEN];
        scratch_bytes[..to_bind.len()].copy_from_slice(to_bind);
        let array = [fd as u32, scratch as u32, to_bind.len() as u32];
        for (i, word) in array.iter().enumerate() {
            let at = SOCKETCALL_ARGS_AT + i * 4;
            scratch_bytes[at..at + 4].copy_from_slice(&word.to_ne_bytes());
        }
        if let Err(e) = self.pidfds.write(pid, scratch, &scratch_bytes) {
            warn!("pid {pid}: cannot write the address to bind: {e}; denying the bind");
            return self.skip(pid, regs, Errno::EFAULT, report);
        }
        let mut changed = regs;
        if t.via_socketcall {
            set(
                &mut changed,
                Reg::CompatArg(1),
                scratch + SOCKETCALL_ARGS_AT as u64,
            );
        } else {
            set(&mut changed, Reg::arg(t.abi, 1), scratch);
            set(&mut changed, Reg::arg(t.abi, 2), to_bind.len() as u64);
        }
        self.apply(pid, regs, &changed, Fixup::RestoreArgs, report)
    }

    /// Turns the call into dup2(inherited, fd) (dup3 where there is no dup2 or the
    /// descriptor must keep FD_CLOEXEC), which runs in the program, so the program
    /// must still have our inherited socket at that number.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        pid: Pid,
        regs: Regs,
        t: Trapped,
        fd: i32,
        inherited: i32,
        cloexec: bool,
        report: Option<Later>,
    ) -> Result<Restart, Errno> {
        let expected = self
            .inherited_inodes
            .iter()
            .find(|(n, _)| *n == inherited)
            .map(|(_, ino)| *ino);
        if expected.is_none() || target::socket_inode(pid, inherited) != expected {
            // The program closed or reused the inherited descriptor (dnsmasq closes
            // every descriptor above 2 at start): a traced program can only be given
            // a descriptor it still has. Refused, never run as made: the kernel would
            // re-read an address another thread can change after the check (the
            // notify engine installs the socket itself and has no such limit).
            warn!(
                "pid {pid}: cannot hand the program inherited fd {inherited}: it closed or reused that descriptor (the ptrace engine can only dup2 one the program still has; the notify engine can); denying the bind"
            );
            let mut report = report;
            if let Some(Later::Bind(r)) = report.as_mut() {
                r.note(&format!("fd {inherited} is no longer the inherited socket"));
            }
            return self.skip(pid, regs, Errno::EPERM, report);
        }
        if inherited == fd {
            return self.skip_with(pid, regs, 0, report);
        }
        let abi = abi_of(t);
        let (nr, flags) = match (abi.dup2, cloexec) {
            (Some(dup2), false) => (dup2, 0),
            _ => (abi.dup3, if cloexec { libc::O_CLOEXEC as u64 } else { 0 }),
        };
        let mut changed = regs;
        set(&mut changed, Reg::SyscallNr, nr as u64);
        set(&mut changed, Reg::arg(t.abi, 0), inherited as u64);
        set(&mut changed, Reg::arg(t.abi, 1), fd as u64);
        set(&mut changed, Reg::arg(t.abi, 2), flags);
        self.apply(pid, regs, &changed, Fixup::ReplacedBind, report)
    }

    /// listen() before 5.6: with -L, a socket that is one of the inherited ones
    /// already listens and the call is skipped (followed by inode, so a new socket
    /// that reuses the number is listened normally); a socket whose port-0 bind a
    /// deny rule let through is judged by inode; anything else runs, watched.
    fn on_listen_before_5_6(&mut self, pid: Pid, t: Trapped) -> Result<Restart, Errno> {
        let regs = crate::arch::read_regs(pid)?;
        let fd = match self.call_args(pid, &regs, t) {
            Ok([fd, ..]) => fd as i32,
            Err(e) => return self.skip(pid, regs, e, None),
        };
        let inode = target::socket_inode(pid, fd);
        if let Some((inherited, _)) = self
            .inherited_inodes
            .iter()
            .find(|(_, ino)| Some(*ino) == inode)
        {
            debug!("pid {pid}: listen fd {fd} is inherited fd {inherited}");
            let local = crate::target::own_local_addr(*inherited);
            let proto = local.map(|_| crate::rule::Proto::Tcp);
            log::emit_simple(
                pid,
                Call::Listen,
                Some(fd),
                proto,
                Action::Skipped,
                Ok(local),
            );
            return self.skip_with(pid, regs, 0, None);
        }
        if self.policy.judges_listen()
            && let Some(inode) = inode
            && let Some(errno) =
                sidebind::judge_listen_by_inode(self.policy, pid, fd, inode, SocketKind::TCP)
        {
            return self.skip(pid, regs, errno, None);
        }
        // Watched, not judged: the event waits for the result.
        let watched = log::events_wanted().then_some(Later::Watched {
            call: Call::Listen,
            fd,
            proto: None,
            local: None,
            inode,
        });
        Ok(match watched {
            Some(later) => self.expect_exit(pid, regs, Fixup::RestoreArgs, Some(later)),
            None => Restart::Continue(0),
        })
    }

    /// Refuses the call the thread is stopped in (EPERM).
    pub fn refuse(&mut self, pid: Pid) -> Result<Restart, Errno> {
        let regs = crate::arch::read_regs(pid)?;
        self.skip(pid, regs, Errno::EPERM, None)
    }

    /// io_uring_setup(): refused, so programs fall back to plain syscalls that the
    /// filter sees (IORING_OP_BIND and IORING_OP_LISTEN never pass through seccomp).
    pub fn on_io_uring_setup(&mut self, pid: Pid) -> Result<Restart, Errno> {
        let regs = crate::arch::read_regs(pid)?;
        log::emit_simple(
            pid,
            Call::IoUringSetup,
            None,
            None,
            Action::Refused,
            Err(Errno::ENOSYS),
        );
        self.skip(pid, regs, Errno::ENOSYS, None)
    }

    /// Before 5.6 the thread itself is made to tell force-bind about its socket: this
    /// bind is borrowed for getsockopt(fd, `query`) and runs again once the answer
    /// is in.
    fn ask(
        &mut self,
        pid: Pid,
        regs: &Regs,
        facts: SocketFacts,
        query: Query,
    ) -> Result<Restart, Errno> {
        // int value; socklen_t len = 4; below the stack pointer, past the red zone.
        let scratch =
            scratch_below(get(regs, Reg::StackPointer), ASK_SCRATCH_SPAN).ok_or(Errno::EFAULT)?;
        let mut cell = [0u8; 8];
        cell[4..].copy_from_slice(&4u32.to_ne_bytes());
        self.pidfds.write(pid, scratch, &cell)?;
        let (level, option) = query.option();
        let mut changed = *regs;
        let sys = <Native as Arch>::SYSCALLS;
        set(&mut changed, Reg::SyscallNr, sys.getsockopt as u64);
        set(&mut changed, Reg::Arg(0), facts.fd as u64);
        set(&mut changed, Reg::Arg(1), level as u64);
        set(&mut changed, Reg::Arg(2), option as u64);
        set(&mut changed, Reg::Arg(3), scratch);
        set(&mut changed, Reg::Arg(4), scratch + 4);
        self.facts.insert(pid, facts);
        self.apply(pid, *regs, &changed, Fixup::Asked { scratch, query }, None)
    }

    /// Skips the syscall; it returns -errno.
    fn skip(
        &mut self,
        pid: Pid,
        regs: Regs,
        errno: Errno,
        report: Option<Later>,
    ) -> Result<Restart, Errno> {
        self.skip_with(pid, regs, -(errno as i64), report)
    }

    fn skip_with(
        &mut self,
        pid: Pid,
        regs: Regs,
        result: i64,
        report: Option<Later>,
    ) -> Result<Restart, Errno> {
        let mut changed = regs;
        // Syscall number -1: the kernel skips the call and leaves the result to us.
        set(&mut changed, Reg::SyscallNr, u64::MAX);
        if self.skip_sets_result(pid) {
            // "If the tracer asks to skip the system call, then the system call will
            // appear to return the value that the tracer puts in the return value
            // register" (Documentation/userspace-api/seccomp_filter.rst): one
            // SETREGS and no stop at the syscall's exit. Nothing else was changed.
            set(&mut changed, Reg::Result, result as u64);
            crate::arch::write_regs(pid, &changed)?;
            if let Some(report) = report {
                report.emit(pid, result);
            }
            return Ok(Restart::Continue(0));
        }
        self.apply(pid, regs, &changed, Fixup::Return(result), report)
    }
}
