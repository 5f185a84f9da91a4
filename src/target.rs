// target.rs: looking at a target process's descriptors from outside, through /proc
// and pidfd_getfd(2). Shared by both engines; every lookup is one small syscall or
// file read and fails softly (None) when the target is gone or the kernel is old.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::unistd::Pid;

/// The inode of the socket `fd` refers to in `pid`, from the "socket:[N]" link.
pub fn socket_inode(pid: Pid, fd: RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    parse_socket_link(link.to_str()?)
}

pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether descriptor `fd` is open in `pid`.
pub fn fd_exists(pid: Pid, fd: RawFd) -> bool {
    std::fs::symlink_metadata(format!("/proc/{pid}/fd/{fd}")).is_ok()
}

/// The inode of a socket force-bind itself holds.
pub fn own_socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat only inspects the descriptor.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

/// The inherited sockets force-bind holds, with their inodes, to recognise them in a
/// program's descriptor table.
pub fn inodes_of(fds: &[RawFd]) -> Vec<(RawFd, u64)> {
    fds.iter()
        .filter_map(|fd| own_socket_inode(*fd).map(|ino| (*fd, ino)))
        .collect()
}

/// Whether `fd` in `pid` has FD_CLOEXEC, from the "flags:" line of fdinfo (octal
/// open flags, O_CLOEXEC included since Linux 3.1 reports it there).
pub fn fd_cloexec(pid: Pid, fd: RawFd) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    parse_fdinfo_cloexec(&info)
}

pub fn parse_fdinfo_cloexec(info: &str) -> Option<bool> {
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    let flags = u32::from_str_radix(flags, 8).ok()?;
    Some(flags & libc::O_CLOEXEC as u32 != 0)
}

/// The short command name, for messages.
pub fn comm(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The thread group (process) a thread belongs to.
pub fn tgid(tid: Pid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()?;
    Some(Pid::from_raw(tgid))
}

/// A pidfd for the process `tid` belongs to. pidfd_open(2) refuses a thread that is
/// not a group leader (EINVAL, or ENOENT since 6.9 without PIDFD_THREAD), so retry
/// with its thread group.
pub fn pidfd(tid: Pid) -> Result<OwnedFd, Errno> {
    let open = |pid: Pid| {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        // SAFETY: on success rc is a fresh descriptor that we now own.
        Errno::result(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    match open(tid) {
        Err(Errno::EINVAL | Errno::ENOENT) => open(tgid(tid).ok_or(Errno::ESRCH)?),
        other => other,
    }
}

/// Pidfds kept for the processes that bind, so a bind costs no pidfd_open, each with
/// the thread's memory (/proc/TID/mem, opened at its first read). Kept are a
/// thread-group leader's pidfd (a leader's PID cannot be reused while its process
/// lives) and, on 6.9+, any thread's own (PIDFD_THREAD); once its task is gone a kept
/// pidfd fails with ESRCH and is replaced. Before 6.9 a non-leader thread's id could
/// be reused by another process while the first lives: those are looked up each time.
#[derive(Default)]
pub struct Pidfds {
    leaders: std::sync::Mutex<std::collections::HashMap<i32, std::sync::Arc<Kept>>>,
}

struct Kept {
    pidfd: OwnedFd,
    /// The task's memory, opened while `pidfd` showed the task alive, so it is that
    /// task's (or, after an exec, its old memory: the read then fails and is retried
    /// on a fresh descriptor).
    mem: std::sync::OnceLock<Option<std::fs::File>>,
}

/// More processes than this at once and the cache starts over: the descriptor
/// count stays bounded whatever the program does.
const MAX_KEPT_PIDFDS: usize = 256;

impl Pidfds {
    /// Our copy of descriptor `fd` of the process thread `tid` belongs to.
    pub fn getfd(&self, tid: Pid, fd: RawFd) -> Result<OwnedFd, Errno> {
        let kept = self.lock().get(&tid.as_raw()).cloned();
        if let Some(kept) = kept {
            match getfd(&kept.pidfd, fd) {
                Err(Errno::ESRCH) => {
                    self.lock().remove(&tid.as_raw());
                }
                other => return other,
            }
        }
        match self.keep(tid) {
            Ok(kept) => getfd(&kept.pidfd, fd),
            // Not a leader, before 6.9: through its thread group, keeping nothing.
            Err(Errno::EINVAL | Errno::ENOENT) => getfd(&pidfd(tid)?, fd),
            Err(e) => Err(e),
        }
    }

    /// Fills `buf` from `addr` in thread `tid`'s memory (memory.rs: never waits for
    /// a userfault). A kept descriptor is checked afterwards to be still the task
    /// `tid` names, so a recycled thread id is never read through an old one.
    pub fn read(&self, tid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.with_mem(tid, Caller::Unchecked, |mem| {
            crate::memory::read_at(mem, tid, addr, buf)
        })
    }

    /// `read`, for a thread whose socket was just taken with `getfd` in the same call,
    /// while the call still waits: whatever task is kept for `tid` is then the caller
    /// (a kept task that had died would have failed `getfd`, and one kept since was
    /// opened while the caller had the id), so the check after the read is left out.
    pub fn read_from_caller(&self, tid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.with_mem(tid, Caller::Checked, |mem| {
            crate::memory::read_at(mem, tid, addr, buf)
        })
    }

    /// Writes `data` at `addr` in thread `tid`'s memory (the ptrace engine's scratch).
    pub fn write(&self, tid: Pid, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.with_mem(tid, Caller::Unchecked, |mem| {
            crate::memory::write_at(mem, addr, data)
        })
    }

    fn with_mem(
        &self,
        tid: Pid,
        caller: Caller,
        mut access: impl FnMut(&std::fs::File) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        // (Not a `match` on the lookup: its lock would be held into `keep`.)
        let found = self.lock().get(&tid.as_raw()).cloned();
        // Kept just now: for the task that has the id now, which, while the call
        // waits, is the caller.
        let fresh = found.is_none();
        let kept = found.or_else(|| self.keep(tid).ok());
        if let Some(kept) = kept {
            let mem = kept.mem.get_or_init(|| {
                let mem = crate::memory::open(tid).ok()?;
                alive(&kept.pidfd).then_some(mem)
            });
            if let Some(mem) = mem {
                let done = access(mem);
                let current = fresh || caller == Caller::Checked || alive(&kept.pidfd);
                if done.is_ok() && current {
                    return done;
                }
            }
            // Gone, recycled, or exec'd since it was kept: start over for this one.
            self.lock().remove(&tid.as_raw());
        }
        access(&crate::memory::open(tid)?)
    }

    /// A kept pidfd for `tid`: a leader's, or (Linux 6.9+, PIDFD_THREAD) any
    /// thread's. A thread pidfd stops working with its thread, so it is as safe to
    /// keep, and it still reaches the files once the leader has exited
    /// (pthread_exit). EINVAL/ENOENT: a non-leader before 6.9.
    fn keep(&self, tid: Pid) -> Result<std::sync::Arc<Kept>, Errno> {
        let open = |flags: libc::c_long| {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
            Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, tid.as_raw(), flags) })
        };
        const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
        let raw = match open(0) {
            Err(Errno::EINVAL | Errno::ENOENT) => open(PIDFD_THREAD),
            other => other,
        }?;
        let kept = std::sync::Arc::new(Kept {
            // SAFETY: a fresh descriptor that we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(raw as RawFd) },
            mem: std::sync::OnceLock::new(),
        });
        let mut all = self.lock();
        if all.len() >= MAX_KEPT_PIDFDS {
            all.clear();
        }
        all.insert(tid.as_raw(), std::sync::Arc::clone(&kept));
        Ok(kept)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i32, std::sync::Arc<Kept>>> {
        self.leaders.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a read's thread is known to be the task kept for its id.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Its socket was just taken through the kept pidfd (`read_from_caller`).
    Checked,
    Unchecked,
}

/// Whether the task behind `pidfd` still exists (a null signal).
fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// Our own copy of descriptor `fd` of the process behind `pidfd` (Linux 5.6+).
pub fn getfd(pidfd: &OwnedFd, fd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd returns a new descriptor (with CLOEXEC) that we now own.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    // SAFETY: as above.
    Errno::result(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether an AF_INET6 socket also takes IPv4 (IPV6_V6ONLY off).
pub fn sock_dual_stack(sock: &OwnedFd) -> Result<bool, Errno> {
    use std::os::fd::AsFd;
    sockopt_int(sock.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).map(|v6only| v6only == 0)
}

/// IP_FREEBIND or IP_TRANSPARENT: the socket may bind an address that is not local.
pub fn sock_freebind(sock: &OwnedFd) -> bool {
    use std::os::fd::AsFd;
    [libc::IP_FREEBIND, libc::IP_TRANSPARENT]
        .iter()
        .any(|opt| sockopt_int(sock.as_fd(), libc::IPPROTO_IP, *opt).is_ok_and(|v| v != 0))
}

/// Sets IPV6_V6ONLY on an AF_INET6 socket (off: dual-stack).
pub fn set_dual_stack(sock: &OwnedFd, dual_stack: bool) -> Result<(), Errno> {
    let v6only: libc::c_int = (!dual_stack).into();
    // SAFETY: setsockopt reads one int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&v6only as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

/// Whether an IP socket has no local port, asked of the kernel rather than of
/// getsockname(): after a failed connect() the kernel releases the autobound port
/// but getsockname() still reports it, and listen() then binds the wildcard. A bind
/// of `wildcard` (0.0.0.0:0 or [::]:0) with IP_BIND_ADDRESS_NO_PORT set fails with
/// EINVAL on a bound socket, and on an unbound one takes no port and sets no
/// address (what it clears, the stale port and peer, listen() does not use). The
/// option is put back as it was.
pub fn has_no_port(sock: &OwnedFd, wildcard: std::net::SocketAddr) -> Result<bool, Errno> {
    const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
    let before = sockopt_int(
        std::os::fd::AsFd::as_fd(sock),
        libc::IPPROTO_IP,
        IP_BIND_ADDRESS_NO_PORT,
    )?;
    let set = |value: libc::c_int| {
        // SAFETY: setsockopt reads one int.
        Errno::result(unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                IP_BIND_ADDRESS_NO_PORT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    };
    set(1)?;
    let bound = bind_bytes(sock, crate::sockaddr::encode(&wildcard).as_bytes());
    set(before)?;
    match bound {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// net.ipv4.ip_local_port_range, where the kernel picks ephemeral ports (it applies
/// to IPv6 too); the kernel's default when it cannot be read.
pub fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut words = text.split_whitespace().map(|w| w.parse::<u16>().ok());
            Some((words.next()??, words.next()??))
        })
        .filter(|(low, high)| 0 < *low && low <= high)
        .unwrap_or((32768, 60999))
}

/// The system default for new AF_INET6 sockets (net.ipv6.bindv6only), the best
/// answer when the socket itself cannot be looked at (kernels before 5.6).
pub fn default_dual_stack() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|s| s.trim() == "0")
        .unwrap_or(true)
}

fn sockopt_int(
    sock: BorrowedFd,
    level: libc::c_int,
    name: libc::c_int,
) -> Result<libc::c_int, Errno> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the int.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    Errno::result(rc).map(|_| value)
}

/// SO_DOMAIN and SO_TYPE of a socket (ENOTSOCK for anything else).
pub fn sock_domain_type(sock: BorrowedFd) -> Result<(i32, i32), Errno> {
    Ok((sock_domain(sock)?, sock_type(sock)?))
}

/// SO_DOMAIN: the socket's family (ENOTSOCK for anything that is not a socket).
pub fn sock_domain(sock: BorrowedFd) -> Result<i32, Errno> {
    sockopt_int(sock, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// SO_TYPE: stream, datagram, ...
pub fn sock_type(sock: BorrowedFd) -> Result<i32, Errno> {
    sockopt_int(sock, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// SO_TYPE and SO_PROTOCOL, as the policy wants them (0 for what cannot be read).
pub fn sock_kind(sock: BorrowedFd) -> crate::policy::SocketKind {
    crate::policy::SocketKind {
        sock_type: sock_type(sock).unwrap_or(0),
        protocol: sockopt_int(sock, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(0),
    }
}

/// bind(2) on our copy of the target's socket, with exactly these sockaddr bytes.
pub fn bind_bytes(sock: &OwnedFd, bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: bind reads `bytes.len()` bytes from the slice.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

/// getsockname(2): the address the kernel bound.
pub fn local_addr(sock: &OwnedFd) -> Result<std::net::SocketAddr, Errno> {
    let mut buf = [0u8; crate::sockaddr::SOCKADDR_MAX_LEN];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::getsockname(sock.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) };
    Errno::result(rc)?;
    match crate::sockaddr::decode(&buf[..len as usize]) {
        crate::sockaddr::Decoded::Inet(addr) => Ok(addr),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// The address of one of force-bind's own sockets (an inherited one).
pub fn own_local_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: `fd` is one of force-bind's own open descriptors; the borrow ends here.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .ok()?;
    local_addr(&sock).ok()
}

/// CAP_NET_BIND_SERVICE in the effective set of `pid` (from /proc/PID/status), and
/// only if `pid` is in force-bind's user namespace: capabilities held in a user
/// namespace of the program's own (all of them, after unshare(CLONE_NEWUSER)) give
/// no right to a privileged port of the network namespace the socket lives in.
pub fn can_bind_privileged(pid: Pid) -> bool {
    let user_ns = |path: String| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let same_user_ns = user_ns(format!("/proc/{pid}/ns/user"))
        .is_some_and(|ns| Some(ns) == user_ns("/proc/self/ns/user".into()));
    same_user_ns
        && std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| parse_cap_eff(&s))
            .is_some_and(|caps| caps & (1 << CAP_NET_BIND_SERVICE) != 0)
}

pub fn parse_cap_eff(status: &str) -> Option<u64> {
    u64::from_str_radix(
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim(),
        16,
    )
    .ok()
}

/// net.ipv4.ip_unprivileged_port_start (4.11+); 1024 before it existed.
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// <linux/capability.h>
const CAP_NET_BIND_SERVICE: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("pipe:[12345]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
        assert_eq!(
            parse_fdinfo_cloexec("pos:\t0\nflags:\t02000002\nmnt_id:\t9\n"),
            Some(true)
        );
        assert_eq!(
            parse_fdinfo_cloexec("pos:\t0\nflags:\t02\nmnt_id:\t9\n"),
            Some(false)
        );
        assert_eq!(parse_fdinfo_cloexec("pos:\t0\n"), None);
        assert_eq!(
            parse_cap_eff("Name:\tx\nCapEff:\t0000000000000400\n"),
            Some(1 << CAP_NET_BIND_SERVICE)
        );
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }
}
