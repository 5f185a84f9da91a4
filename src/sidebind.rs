// sidebind.rs: a bind carried out from force-bind's side. The engine hands over the
// sockaddr bytes it read once and force-bind's own copy of the program's socket
// (pidfd_getfd); the policy decides on those bytes and bind(2) runs on the copy. What
// the program does to its memory afterwards cannot matter. Both engines use it (the
// ptrace engine where the kernel has pidfd_getfd).

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::event::Call;
use crate::log::{Announcement, warn};
use crate::policy::{BindRequest, Decision, Policy, Purpose, SocketKind};
use crate::rule::Proto;
use crate::sockaddr::{self, Decoded};
use crate::target;

/// What the engine still has to do to finish the program's call.
#[derive(Debug, Clone)]
pub enum Finish {
    /// The call is done: it returns 0 or this errno.
    Return(Result<(), Errno>),
    /// Put inherited socket `inherited` at the program's descriptor (keeping that
    /// descriptor's close-on-exec flag), then return 0, and announce the result.
    Replace {
        inherited: RawFd,
        cloexec: bool,
        announcement: Option<Announcement>,
    },
}

/// Settings both engines read once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// net.ipv4.ip_unprivileged_port_start: below it the program needs its own
    /// CAP_NET_BIND_SERVICE, whatever force-bind's credentials are.
    pub unprivileged_port_start: u16,
    /// A signal can make the program retry a bind force-bind already did (user
    /// notification without WAIT_KILLABLE_RECV, before 5.19).
    pub retries_possible: bool,
    /// The bpf engine: binds are decided by cgroup programs in the kernel and never
    /// seen here, so which sockets a deny rule let through on port 0 is not known;
    /// a bound socket's listen() is judged on its address (`judge_listen`).
    pub binds_in_kernel: bool,
}

impl Limits {
    pub fn read(retries_possible: bool) -> Self {
        Limits {
            unprivileged_port_start: target::unprivileged_port_start(),
            retries_possible,
            binds_in_kernel: false,
        }
    }
}

/// For a port-0 bind that a port-range deny could catch: the ports the rules allow
/// (force-bind picks one); None to let the kernel pick.
type PortChoice<'a> = Option<&'a dyn Fn(u16) -> bool>;

/// Our copy of the program's descriptor, checked the way bind(2) checks it before it
/// looks at the address: not open is EBADF (from pidfd_getfd), not a socket ENOTSOCK.
pub struct Socket {
    pub sock: OwnedFd,
    /// SO_DOMAIN.
    pub domain: i32,
    /// SO_TYPE and SO_PROTOCOL, read for IP sockets only.
    pub kind: SocketKind,
}

impl Socket {
    pub fn take(pidfds: &target::Pidfds, pid: Pid, fd: RawFd) -> Result<Socket, Errno> {
        let sock = pidfds.getfd(pid, fd)?;
        let domain = target::sock_domain(sock.as_fd())?;
        let kind = match domain {
            libc::AF_INET | libc::AF_INET6 => target::sock_kind(sock.as_fd()),
            _ => SocketKind::default(),
        };
        Ok(Socket { sock, domain, kind })
    }

    /// AF_INET or AF_INET6: the only families the policy judges.
    pub fn is_ip(&self) -> bool {
        self.domain == libc::AF_INET || self.domain == libc::AF_INET6
    }
}

/// Sockets whose port-0 bind a deny rule let through (policy.rs), with the address
/// asked: their listen() is judged on the port the kernel gave them. By inode, which
/// names one socket for its whole life; one table for the process, since inodes are
/// the kernel's and every engine thread serves the same programs. Bounded: when
/// full, such binds are denied.
static PORT_ZERO_SOCKETS: std::sync::Mutex<std::collections::BTreeMap<u64, SocketAddr>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
const PORT_ZERO_SOCKETS_MAX: usize = 65_536;

fn port_zero_sockets() -> std::sync::MutexGuard<'static, std::collections::BTreeMap<u64, SocketAddr>>
{
    PORT_ZERO_SOCKETS.lock().unwrap_or_else(|e| e.into_inner())
}

fn inode(sock: &OwnedFd) -> Option<u64> {
    nix::sys::stat::fstat(sock).ok().map(|st| st.st_ino)
}

/// Remembers socket `inode`, bound to `asked` (port 0), as one whose listen() must be
/// judged; false when it cannot be (the table is full): the bind is then refused.
pub fn remember_port_zero(inode: u64, asked: SocketAddr) -> bool {
    let mut table = port_zero_sockets();
    table.len() < PORT_ZERO_SOCKETS_MAX && {
        table.insert(inode, asked);
        true
    }
}

/// Before Linux 5.6, where the port the kernel gave a socket cannot be read: a
/// listen() on a remembered socket is judged as the implicit bind of the address
/// its port-0 bind asked for, on any port (the deny that let the bind through
/// applies). The errno to fail the listen with, if denied.
pub fn judge_listen_by_inode(
    policy: &Policy,
    pid: Pid,
    fd: RawFd,
    inode: u64,
    kind: SocketKind,
) -> Option<Errno> {
    let asked = *port_zero_sockets().get(&inode)?;
    let verdict = policy.decide(&BindRequest {
        addr: asked,
        dual_stack: false,
        kind,
        purpose: Purpose::Listen,
    });
    match verdict.decision {
        Decision::Deny(errno) => {
            if let Some(a) = Announcement::new(pid, Call::Listen, fd, asked, kind, &verdict) {
                a.emit(Err(errno));
            }
            Some(errno)
        }
        _ => {
            port_zero_sockets().remove(&inode);
            None
        }
    }
}

/// The order in which bind(2) reports bad arguments, after the descriptor: the
/// length (EINVAL), then the memory (EFAULT). Engines read the sockaddr through this
/// so the program gets the kernel's own errno.
pub fn read_sockaddr(
    len: u64,
    read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    buf: &mut [u8; crate::sockaddr::SOCKADDR_MAX_LEN],
) -> Result<usize, Errno> {
    let len = len as u32 as i32;
    if !(0..=crate::sockaddr::SOCKADDR_MAX_LEN as i32).contains(&len) {
        return Err(Errno::EINVAL);
    }
    read(&mut buf[..len as usize]).map_err(|_| Errno::EFAULT)?;
    Ok(len as usize)
}

/// Carries out the policy for `bind(fd, bytes)` made by thread `pid`, with `socket`
/// our copy of that fd.
pub fn bind(
    policy: &Policy,
    limits: Limits,
    call: Call,
    pid: Pid,
    fd: RawFd,
    socket: &Socket,
    bytes: &[u8],
) -> Finish {
    let Socket { sock, domain, kind } = socket;
    let domain = *domain;
    if !socket.is_ip() {
        // Callers bind sockets that are not IP elsewhere (handler.rs, as_target.rs):
        // refused, should one ever get here.
        return Finish::Return(Err(Errno::EPERM));
    }
    // What the kernel would really bind, whatever the family field says (raw and
    // SCTP sockets do not all check it); bytes it refuses anyway get its errno.
    let Some((addr, own_family)) = sockaddr::judged_address(domain, bytes) else {
        return Finish::Return(target::bind_bytes(sock, bytes));
    };
    if !own_family && kind.refuses_other_families() {
        // EAFNOSUPPORT, from our copy: nothing is bound.
        return Finish::Return(target::bind_bytes(sock, bytes));
    }
    // Whether the socket is dual-stack, when the decision depends on it; the same
    // setting is pinned for the bind below (another thread could change it).
    let judged_dual_stack = policy
        .needs_dual_stack(&addr)
        .then(|| target::sock_dual_stack(sock).unwrap_or(false));
    let purpose = match call {
        Call::Listen => Purpose::Listen,
        _ => Purpose::Bind,
    };
    let verdict = policy.decide(&BindRequest {
        addr,
        dual_stack: judged_dual_stack.unwrap_or(false),
        kind: *kind,
        purpose,
    });
    crate::log::warn_skipped(pid, call, fd, addr, *kind, &verdict);
    let mut announcement = Announcement::new(pid, call, fd, addr, *kind, &verdict);
    // A port-0 bind that a port-range deny could catch: force-bind picks the port.
    let request = BindRequest {
        addr,
        dual_stack: judged_dual_stack.unwrap_or(false),
        kind: *kind,
        purpose,
    };
    let port_allowed = port_choice(policy, request);
    let choose: PortChoice = port_allowed.as_ref().map(|f| f as &dyn Fn(u16) -> bool);
    let result = match &verdict.decision {
        Decision::Allow
            if verdict.judge_listen
                && !inode(sock).is_some_and(|i| remember_port_zero(i, addr)) =>
        {
            warn!("pid {pid}: too many port-0 binds waiting for their listen(); denying");
            Err(Errno::EPERM)
        }
        // Bytes of another family are bound as given: the kernel refuses them (TCP,
        // UDP) or binds the address judged (raw, SCTP).
        Decision::Allow => bind_checked(limits, pid, sock, bytes, addr, judged_dual_stack, choose),
        Decision::Rewrite(targets) => bind_first(
            limits,
            pid,
            sock,
            targets,
            judged_dual_stack,
            choose,
            &mut announcement,
        ),
        Decision::Deny(errno) => Err(*errno),
        Decision::ReplaceWithFd(inherited) => {
            match replace(pid, fd, *inherited, (domain, kind.sock_type)) {
                Ok(cloexec) => {
                    return Finish::Replace {
                        inherited: *inherited,
                        cloexec,
                        announcement,
                    };
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Some(a) = &announcement {
        a.emit(result.map(|()| target::local_addr(sock).ok()));
    }
    Finish::Return(result)
}

/// Errors that make a rewrite to several addresses (a host name's) try the next.
fn try_next(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::EADDRNOTAVAIL | Errno::EADDRINUSE | Errno::EAFNOSUPPORT
    )
}

/// Binds to the first of `targets` the kernel takes, in order; the event says which,
/// and what the ones before it gave.
fn bind_first(
    limits: Limits,
    pid: Pid,
    sock: &OwnedFd,
    targets: &[SocketAddr],
    judged_dual_stack: Option<bool>,
    choose: PortChoice,
    announcement: &mut Option<Announcement>,
) -> Result<(), Errno> {
    let mut failed = Vec::new();
    let mut result = Err(Errno::EADDRNOTAVAIL);
    for (i, to) in targets.iter().enumerate() {
        result = bind_checked(
            limits,
            pid,
            sock,
            sockaddr::encode(to).as_bytes(),
            *to,
            judged_dual_stack,
            choose,
        );
        match result {
            Err(e) if try_next(e) && i + 1 < targets.len() => failed.push(format!("{to}: {e:?}")),
            _ => {
                if let Some(a) = announcement.as_mut() {
                    a.rewritten_to(*to);
                    if !failed.is_empty() {
                        a.note(&format!("tried {}", failed.join(", ")));
                    }
                }
                break;
            }
        }
    }
    result
}

/// Binds as the program could: a privileged port needs its CAP_NET_BIND_SERVICE.
/// With `judged_dual_stack`, the decision was made for that IPV6_V6ONLY setting: it is
/// set again just before the bind and checked just after (it cannot change once the
/// socket is bound). A mismatch means another thread of the program changed it in
/// that instant to bind what was not judged: the process is killed.
fn bind_checked(
    limits: Limits,
    pid: Pid,
    sock: &OwnedFd,
    bytes: &[u8],
    to: SocketAddr,
    judged_dual_stack: Option<bool>,
    choose: PortChoice,
) -> Result<(), Errno> {
    // IPV6_V6ONLY only changes what `::` and v4-mapped addresses bind (binding any
    // other IPv6 address sets it, and binds just that address).
    let judged_dual_stack = judged_dual_stack.filter(|_| match to {
        SocketAddr::V6(v6) => v6.ip().is_unspecified() || v6.ip().to_ipv4_mapped().is_some(),
        SocketAddr::V4(_) => false,
    });
    let port = to.port();
    if port != 0 && port < limits.unprivileged_port_start && !target::can_bind_privileged(pid) {
        // The kernel checks the address before the port's privilege.
        let not_local = !to.ip().is_unspecified()
            && !target::sock_freebind(sock)
            && crate::diagnose::not_local_hint(pid, to.ip()).is_some();
        return Err(if not_local {
            Errno::EADDRNOTAVAIL
        } else {
            Errno::EACCES
        });
    }
    if let Some(dual_stack) = judged_dual_stack {
        target::set_dual_stack(sock, dual_stack)?;
    }
    let bound = match bind_on_allowed_port(sock, bytes, to, choose) {
        Err(Errno::EINVAL) if limits.retries_possible && already_bound_as(sock, to) => Ok(()),
        other => other,
    };
    if let Some(dual_stack) = judged_dual_stack
        && bound.is_ok()
        && target::sock_dual_stack(sock).ok() != Some(dual_stack)
    {
        warn!("pid {pid}: IPV6_V6ONLY changed during the bind; killing the process");
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        return Err(Errno::EPERM);
    }
    bound
}

/// Binds `bytes` (the address `to`); for a port-0 bind whose ports some rule denies
/// (`allowed` given), on a port that `allowed` accepts instead: one of
/// ip_local_port_range, as the kernel would pick it (from a varying start, the next
/// free one), or, when the rules deny that whole range, an unprivileged one outside.
fn bind_on_allowed_port(
    sock: &OwnedFd,
    bytes: &[u8],
    to: SocketAddr,
    allowed: PortChoice,
) -> Result<(), Errno> {
    let Some(allowed) = allowed.filter(|_| to.port() == 0) else {
        return target::bind_bytes(sock, bytes);
    };
    /// Binds tried before giving up as the kernel does when the range is full.
    const TRIES: usize = 64;
    let ports = candidate_ports();
    for port in ports.filter(|p| *p != 0 && allowed(*p)).take(TRIES) {
        let mut at = to;
        at.set_port(port);
        match target::bind_bytes(sock, sockaddr::encode(&at).as_bytes()) {
            Err(Errno::EADDRINUSE) => continue,
            other => return other,
        }
    }
    Err(Errno::EADDRINUSE)
}

/// The ports to try for a bind whose port force-bind picks: the kernel's range
/// first, from a varying start; when the rules deny all of it, the unprivileged ports
/// above and below it.
pub fn candidate_ports() -> impl Iterator<Item = u16> {
    let (low, high) = target::local_port_range();
    let span = u32::from(high - low) + 1;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        % span;
    (0..span)
        .map(move |i| low + ((start + i) % span) as u16)
        .chain(high.saturating_add(1)..=u16::MAX)
        .chain(1024..low)
}

/// For a port-0 bind of `request` that a port-range deny could catch: whether the
/// rules allow each port (force-bind then picks one); None to let the kernel pick.
pub fn port_choice(policy: &Policy, request: BindRequest) -> Option<impl Fn(u16) -> bool + '_> {
    let needed = request.addr.port() == 0
        && matches!(request.kind.proto(), Proto::Tcp | Proto::Udp | Proto::Sctp)
        && policy.denies_some_ports(&request);
    needed.then_some(move |port: u16| {
        let mut at = request.addr;
        at.set_port(port);
        let verdict = policy.decide(&BindRequest {
            addr: at,
            ..request
        });
        // Only a rule that names ports refuses one: a deny of any port leaves a
        // port-0 bind alone (policy.rs), whatever port it gets.
        let names_ports = verdict.rule.is_some_and(|r| r.pattern.ports.is_some());
        !(matches!(verdict.decision, Decision::Deny(_)) && names_ports)
    })
}

/// Whether inherited socket `inherited` may take the place of the program's `fd`,
/// and with which close-on-exec flag.
fn replace(pid: Pid, fd: RawFd, inherited: RawFd, kind: (i32, i32)) -> Result<bool, Errno> {
    // SAFETY: `inherited` is one of force-bind's own descriptors, open for its whole
    // life (activation.rs checked it is a socket).
    let ours = unsafe { std::os::fd::BorrowedFd::borrow_raw(inherited) };
    if target::sock_domain_type(ours).ok() != Some(kind) {
        warn!(
            "pid {pid}: inherited fd {inherited} is not the same kind of socket as fd {fd}; refusing the bind"
        );
        return Err(Errno::EINVAL);
    }
    // A pidfd_getfd copy always has CLOEXEC: the program's own flag is in fdinfo.
    Ok(target::fd_cloexec(pid, fd).unwrap_or(false))
}

/// EINVAL from bind on a socket already bound exactly as decided is the program's
/// retry of a bind force-bind did before a signal interrupted it: a success.
fn already_bound_as(sock: &OwnedFd, want: SocketAddr) -> bool {
    target::local_addr(sock)
        .is_ok_and(|got| got.ip() == want.ip() && (want.port() == 0 || got.port() == want.port()))
}

/// The address listen() would give `sock` if nobody bound it: 0.0.0.0:0 or [::]:0
/// for an IP socket with no local port, None for a bound or non-IP one. A port that
/// getsockname() reports is checked with the kernel (a failed connect() leaves a
/// stale one); when that cannot be asked, the socket is taken for unbound, so its
/// listen() is judged rather than let through.
pub fn unbound_wildcard(sock: &OwnedFd) -> Option<SocketAddr> {
    let local = target::local_addr(sock).ok()?;
    let wildcard: SocketAddr = match local {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("constant address"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("constant address"),
    };
    let unbound = local.port() == 0 || target::has_no_port(sock, wildcard).unwrap_or(true);
    unbound.then_some(wildcard)
}

/// For a socket that is not IP: the errno its bind to `bytes` gets if the bytes are an
/// IP address (AF_INET, AF_INET6, or AF_UNSPEC 0.0.0.0), found by binding our copy
/// (which fails, changing nothing). None for any other bytes. The kernel must never
/// run such a call as made: the descriptor could be an IP socket by then.
pub fn foreign_bytes(socket: &Socket, bytes: &[u8]) -> Option<Errno> {
    match sockaddr::decode(bytes) {
        Decoded::Inet(_) => Some(
            target::bind_bytes(&socket.sock, bytes)
                .err()
                .unwrap_or(Errno::EINVAL),
        ),
        _ => None,
    }
}

/// listen(2) on our copy of the program's socket.
pub fn listen(socket: &Socket, backlog: i32) -> Result<(), Errno> {
    // SAFETY: listen(2) on a descriptor we own.
    Errno::result(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&socket.sock), backlog) })
        .map(drop)
}

/// `judge_listen` when binds were decided in the kernel: a socket bound to an address
/// where a deny rule lets port-0 binds through may have been bound on port 0, so its
/// listen() is judged on the port it has, as the other engines judge a remembered
/// one. A socket bound there on purpose was allowed there by the rules, or sent
/// there by a rewrite rule (`-d -m '[::]:80/0=[::1]:8080'`): those listen.
fn judge_listen_on_address(
    policy: &Policy,
    pid: Pid,
    fd: RawFd,
    socket: &Socket,
) -> Option<Finish> {
    let addr = target::local_addr(&socket.sock).ok()?;
    let dual_stack = addr.is_ipv6() && target::sock_dual_stack(&socket.sock).unwrap_or(false);
    let mut port_zero = addr;
    port_zero.set_port(0);
    let request = |addr, purpose| BindRequest {
        addr,
        dual_stack,
        kind: socket.kind,
        purpose,
    };
    if !policy
        .decide(&request(port_zero, Purpose::Bind))
        .judge_listen
    {
        return None;
    }
    let verdict = policy.decide(&request(addr, Purpose::Listen));
    let Decision::Deny(errno) = verdict.decision else {
        return None;
    };
    if policy.rewrites_to(&addr) {
        return None;
    }
    if let Some(a) = Announcement::new(pid, Call::Listen, fd, addr, socket.kind, &verdict) {
        a.emit(Err(errno));
    }
    Some(Finish::Return(Err(errno)))
}

/// What listen() on `socket` must be judged as, done like a bind: the implicit bind
/// of a socket nobody bound (0.0.0.0:0 or [::]:0), or, for a socket whose port-0
/// bind a deny rule let through, the address the kernel gave it (denied: EPERM).
/// None when there is nothing to judge (not an IP socket, or bound as the rules said).
pub fn judge_listen(
    policy: &Policy,
    limits: Limits,
    pid: Pid,
    fd: RawFd,
    socket: &Socket,
) -> Option<Finish> {
    if !socket.is_ip() {
        return None;
    }
    if let Some(wildcard) = unbound_wildcard(&socket.sock) {
        return Some(bind(
            policy,
            limits,
            Call::Listen,
            pid,
            fd,
            socket,
            sockaddr::encode(&wildcard).as_bytes(),
        ));
    }
    if limits.binds_in_kernel {
        return judge_listen_on_address(policy, pid, fd, socket);
    }
    let inode = inode(&socket.sock)?;
    if !port_zero_sockets().contains_key(&inode) {
        return None;
    }
    let addr = target::local_addr(&socket.sock).ok()?;
    let dual_stack = addr.is_ipv6() && target::sock_dual_stack(&socket.sock).unwrap_or(false);
    let verdict = policy.decide(&BindRequest {
        addr,
        dual_stack,
        kind: socket.kind,
        purpose: Purpose::Listen,
    });
    if let Decision::Deny(errno) = verdict.decision {
        // Kept in the set: a second listen() is judged again.
        if let Some(a) = Announcement::new(pid, Call::Listen, fd, addr, socket.kind, &verdict) {
            a.emit(Err(errno));
        }
        return Some(Finish::Return(Err(errno)));
    }
    port_zero_sockets().remove(&inode);
    None
}
