// as_target.rs: a bind that is not IP (AF_UNIX, netlink, packet, ...), made by
// force-bind as the program's own thread would make it. Letting the kernel run such
// a call as the program made it (notify's FLAG_CONTINUE, ptrace's restart on a copy
// in scratch memory) makes it read the descriptor and the sockaddr again, and in that
// instant another thread can dup2 an IP socket onto the descriptor and write IP bytes:
// a bind nobody judged (issue 12). Here the bind runs on force-bind's own
// pidfd_getfd copy of the socket, whose family is fixed, with the bytes read once.
// So that the outcome is the program's own, it runs in a short-lived helper process
// that takes on the calling thread's filesystem context (root, cwd, umask) and
// credentials (ids, groups, capabilities) first.
//
// Why a helper process and not a thread of force-bind: a path walk through /proc
// reaches /proc/self, /proc/thread-self and /proc/<force-bind's pid>, and the kernel
// resolves them for the *caller*: "self" names the caller's thread group, and
// ptrace_may_access() lets any task into its own thread group whatever its
// credentials. A thread of force-bind binding "/proc/self/root/tmp/x" for a program
// in a chroot with /proc inside would make a socket outside that root, and
// "/proc/self/fd/N/x" would go through force-bind's descriptor N. The helper is a
// process of its own: its /proc/self has the program's root and cwd and no
// descriptor but the socket; force-bind itself is not dumpable, so the helper, with
// the program's credentials, cannot look into it either.
//
// The helper is a copy of force-bind made with a raw clone() (fork semantics) that
// has no exit signal. A child with no exit signal is a "clone child" (clone(2)): only
// waits with __WALL or __WCLONE see it, so the notify engine's reaper
// (waitpid(-1, 0)) never takes it; the ptrace tracer (waitpid(-1, __WALL)) is the
// thread that calls this, and the helper is reaped before it returns. In the copy
// only raw syscalls run: force-bind has other threads, whose locks (malloc's) may be
// held in the copy, and glibc's set*id() would try to signal threads the copy does
// not have. It ends with _exit(), its credentials and filesystem context with it.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::stat::{Mode, fstat, fstatat, stat};
use nix::unistd::Pid;

use crate::sockaddr::SOCKADDR_MAX_LEN;
use crate::target;

/// Binds `sock` (force-bind's pidfd_getfd copy of a socket of thread `pid` that is not
/// AF_INET/AF_INET6) to `bytes` as `pid` itself would: an AF_UNIX path name is
/// resolved in that thread's root and cwd and created with its umask, and the bind
/// runs with its uids, gids (the fs ones for file access), supplementary groups and,
/// when it is in force-bind's user namespace, its effective capabilities (none
/// otherwise: capabilities in a user namespace of the program's own are worth nothing
/// in force-bind's). A netlink bind that leaves the port id to the kernel gets the
/// one the kernel would give the program (its pid, else a random negative one).
///
/// Returns the bind's own errno; EPERM when force-bind cannot take on the thread's
/// identity (its /proc entries cannot be read, it is gone, dropping to its
/// credentials fails, or it has a root of its own that force-bind, without
/// CAP_SYS_CHROOT, cannot enter for a path name), and for an IP socket, which the
/// policy must judge (sidebind.rs), AF_SMC included.
///
/// `pid` must name the thread while this runs (the caller has just checked that it
/// is still in the bind): everything about it is read through one open /proc/PID
/// directory, which fails rather than show another process if it dies meanwhile.
/// The calling thread must be the one that waits for any clone children of
/// force-bind with __WALL, if one does (the ptrace tracer).
pub fn bind_as_target(pid: Pid, sock: &OwnedFd, bytes: &[u8]) -> Result<(), Errno> {
    let domain = target::sock_domain(sock.as_fd())?;
    if [libc::AF_INET, libc::AF_INET6, AF_SMC].contains(&domain) {
        return Err(Errno::EPERM);
    }
    let proc_dir = open_proc_dir(pid)?;
    let who = read_identity(&proc_dir)?;
    // Opened before the helper drops to the program's credentials, which may not
    // allow looking into /proc/PID.
    let fs = match unix_path_name(domain, bytes) {
        Some(kind) => Some(FsContext::open(&proc_dir, kind)?),
        None => None,
    };
    let caps = if same_user_ns(&proc_dir) {
        who.cap_eff
    } else {
        0
    };
    let autobind = netlink_leaves_port_to_kernel(domain, sock, bytes).then(|| Autobind {
        own_pid: who.tgid,
        rover: random_rover(),
    });
    let mut plan = Plan {
        sock: sock.as_raw_fd(),
        bytes,
        who: &who,
        caps,
        fs: fs.as_ref().map(FsContext::raw),
        autobind,
        nofile: open_file_limit(),
        groups_seen: vec![0; who.groups.len() + 1],
    };
    run_helper(&mut plan)
}

/// <linux/socket.h>. An AF_SMC socket takes AF_INET and AF_INET6 addresses and binds
/// them on a TCP socket of its own (net/smc/af_smc.c, smc_bind()): an IP bind in all
/// but name, for the policy to judge, never for this module.
const AF_SMC: i32 = 43;

/// What is known of the thread that made the bind, from /proc/PID/status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    /// Real, effective, saved and filesystem uid, as seen from force-bind's user
    /// namespace (proc translates ids into the reader's).
    uid: [u32; 4],
    /// The same four gids.
    gid: [u32; 4],
    groups: Vec<u32>,
    cap_eff: u64,
    umask: u32,
    /// Its pid in its own pid namespace, the port id netlink's autobind tries first.
    tgid: i32,
}

/// setgroups(2)'s limit (NGROUPS_MAX in <linux/limits.h>).
const NGROUPS_MAX: usize = 65_536;

/// The fields of /proc/PID/status we need; None if any is missing or malformed. The
/// Umask line exists since Linux 4.7, before pidfd_getfd (5.6), so before any caller.
fn parse_status(status: &str) -> Option<Identity> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let ids = |name: &str| -> Option<[u32; 4]> {
        let mut words = field(name)?.split_whitespace().map(|w| w.parse().ok());
        let ids = [
            words.next()??,
            words.next()??,
            words.next()??,
            words.next()??,
        ];
        words.next().is_none().then_some(ids)
    };
    let groups = field("Groups:")?
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    let umask = u32::from_str_radix(field("Umask:")?, 8)
        .ok()
        .filter(|m| *m <= 0o777)?;
    // NStgid (Linux 4.1+) lists the pid in every pid namespace, the process's own last.
    let tgid = field("NStgid:")
        .and_then(|f| f.split_whitespace().last())
        .or_else(|| field("Tgid:"))?
        .parse()
        .ok()?;
    Some(Identity {
        uid: ids("Uid:")?,
        gid: ids("Gid:")?,
        groups: (groups.len() <= NGROUPS_MAX).then_some(groups)?,
        cap_eff: target::parse_cap_eff(status)?,
        umask,
        tgid,
    })
}

/// /proc/PID, held open: an open /proc/PID directory stays with the task it was
/// opened for, and lookups in it fail once that task is gone, even if its number is
/// reused. It is looked at per thread (a thread's /proc/TID is there though not
/// listed): credentials and the filesystem context belong to threads.
fn open_proc_dir(pid: Pid) -> Result<OwnedFd, Errno> {
    openat(
        nix::fcntl::AT_FDCWD,
        format!("/proc/{pid}").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| Errno::EPERM)
}

fn read_identity(proc_dir: &OwnedFd) -> Result<Identity, Errno> {
    let file = openat(
        proc_dir,
        "status",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| Errno::EPERM)?;
    let mut status = String::new();
    // A few kilobytes; the longest line, Groups, at most 65,536 numbers.
    std::fs::File::from(file)
        .take(1 << 20)
        .read_to_string(&mut status)
        .map_err(|_| Errno::EPERM)?;
    parse_status(&status).ok_or(Errno::EPERM)
}

/// Whether the thread is in force-bind's user namespace (the namespace files are the
/// same nsfs inode).
fn same_user_ns(proc_dir: &OwnedFd) -> bool {
    let theirs = fstatat(proc_dir, "ns/user", AtFlags::empty());
    let ours = stat("/proc/self/ns/user");
    matches!((theirs, ours), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

/// Where an AF_UNIX path name starts its lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    /// From the thread's root.
    Absolute,
    /// From its cwd (its root still bounds "..", and absolute symlinks start there).
    Relative,
}

/// sizeof(struct sockaddr_un).
const SOCKADDR_UN_LEN: usize = 110;

fn family(bytes: &[u8]) -> Option<i32> {
    let family = bytes.get(..2)?;
    Some(u16::from_ne_bytes([family[0], family[1]]).into())
}

/// A path name, for which the filesystem context matters, as unix_bind() tells one:
/// a valid AF_UNIX address (longer than the family, no longer than sockaddr_un) whose
/// sun_path does not start with NUL. Abstract names, autobind (the family alone) and
/// bytes the kernel refuses (EINVAL) need no filesystem context.
fn unix_path_name(domain: i32, bytes: &[u8]) -> Option<PathKind> {
    if domain != libc::AF_UNIX
        || family(bytes) != Some(libc::AF_UNIX)
        || bytes.len() > SOCKADDR_UN_LEN
    {
        return None;
    }
    match bytes.get(2)? {
        0 => None,
        b'/' => Some(PathKind::Absolute),
        _ => Some(PathKind::Relative),
    }
}

/// The thread's root and cwd, opened O_PATH through /proc/PID/root and /proc/PID/cwd
/// (whose links reach the very directories, in the thread's mount namespace). An
/// absolute name needs the cwd too: through /proc/self/cwd it can name a place below
/// it, and the helper's /proc/self is the helper.
struct FsContext {
    root: OwnedFd,
    /// None only for an absolute name, when it cannot be opened.
    cwd: Option<OwnedFd>,
    kind: PathKind,
    /// The thread's root is force-bind's: the same directory on the same mount. When
    /// the helper cannot chroot (no CAP_SYS_CHROOT), a path name can only be resolved
    /// as the thread would if this holds.
    same_root: bool,
}

/// Raw descriptors of an FsContext, for the helper (the FsContext outlives it).
#[derive(Debug, Clone, Copy)]
struct RawFsContext {
    root: RawFd,
    cwd: Option<RawFd>,
    kind: PathKind,
    same_root: bool,
}

impl FsContext {
    fn open(proc_dir: &OwnedFd, kind: PathKind) -> Result<FsContext, Errno> {
        let dir = |name: &str| {
            openat(
                proc_dir,
                name,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|_| Errno::EPERM)
        };
        let root = dir("root")?;
        let cwd = match kind {
            PathKind::Relative => Some(dir("cwd")?),
            PathKind::Absolute => dir("cwd").ok(),
        };
        let ours = openat(
            nix::fcntl::AT_FDCWD,
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let same_root = ours.is_ok_and(|ours| same_directory(&root, &ours));
        Ok(FsContext {
            root,
            cwd,
            kind,
            same_root,
        })
    }

    fn raw(&self) -> RawFsContext {
        RawFsContext {
            root: self.root.as_raw_fd(),
            cwd: self.cwd.as_ref().map(AsRawFd::as_raw_fd),
            kind: self.kind,
            same_root: self.same_root,
        }
    }
}

/// The same directory on the same mount: the same device and inode, and the same
/// mount id (fdinfo's mnt_id, Linux 3.15+). The mount matters: a bind mount of / or a
/// copy in another mount namespace has the same root inode but other mounts below.
fn same_directory(a: &OwnedFd, b: &OwnedFd) -> bool {
    let id = |fd: &OwnedFd| {
        let st = fstat(fd).ok()?;
        Some((st.st_dev, st.st_ino, mount_id(fd)?))
    };
    matches!((id(a), id(b)), (Some(a), Some(b)) if a == b)
}

fn mount_id(fd: &OwnedFd) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .parse()
        .ok()
}

/// sizeof(struct sockaddr_nl).
const SOCKADDR_NL_LEN: usize = 12;

/// A netlink bind with nl_pid 0 on a socket not yet bound: the kernel picks the port
/// id from the *caller* (netlink_autobind(): task_tgid_vnr(current) first, then a
/// random negative one), which would be the helper's pid. Programs that compare
/// nlmsg_pid with getpid() rely on the first choice being theirs, so the helper asks
/// for it explicitly (netlink_bind() takes any unused nonzero nl_pid).
fn netlink_leaves_port_to_kernel(domain: i32, sock: &OwnedFd, bytes: &[u8]) -> bool {
    domain == libc::AF_NETLINK
        && (SOCKADDR_NL_LEN..=SOCKADDR_MAX_LEN).contains(&bytes.len())
        && family(bytes) == Some(libc::AF_NETLINK)
        && bytes.get(4..8) == Some(&[0; 4][..])
        // netlink_bind() on a bound socket wants nl_pid equal to its port id.
        && bound_port_id(sock) == Some(0)
}

/// getsockname()'s nl_pid: the socket's port id, 0 while it is not bound.
fn bound_port_id(sock: &OwnedFd) -> Option<u32> {
    let mut addr = [0u8; SOCKADDR_MAX_LEN];
    let mut len = addr.len() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::getsockname(sock.as_raw_fd(), addr.as_mut_ptr().cast(), &mut len) };
    if rc != 0 || (len as usize) < SOCKADDR_NL_LEN {
        return None;
    }
    Some(u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]))
}

/// Where netlink_autobind() starts its search of negative port ids: at random in
/// [i32::MIN, -4097].
fn random_rover() -> i32 {
    let mut buf = [0u8; 4];
    // SAFETY: getrandom writes at most 4 bytes into the buffer.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    let random = if got == 4 {
        u32::from_ne_bytes(buf)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    };
    let span = (-4096i64 - i64::from(i32::MIN)) as u32;
    (i64::from(i32::MIN) + i64::from(random % span)) as i32
}

/// Descriptors the helper closes one by one when close_range(2) (Linux 5.9) is
/// missing: RLIMIT_NOFILE's soft limit (no descriptor is opened above it), bounded.
fn open_file_limit() -> u32 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft.min(1 << 20) as u32)
}

/// netlink_autobind()'s choices, asked for explicitly.
#[derive(Debug, Clone, Copy)]
struct Autobind {
    own_pid: i32,
    rover: i32,
}

/// Negative port ids tried after the pid before the kernel is left to choose.
const ROVER_TRIES: usize = 64;

/// Everything the helper needs, prepared before it starts: it allocates nothing.
struct Plan<'a> {
    sock: RawFd,
    bytes: &'a [u8],
    who: &'a Identity,
    /// The effective (and permitted) capabilities to end with.
    caps: u64,
    fs: Option<RawFsContext>,
    autobind: Option<Autobind>,
    nofile: u32,
    /// Room to read back the supplementary groups (one more than wanted, to see a
    /// longer list).
    groups_seen: Vec<libc::gid_t>,
}

/// Runs the helper and waits for it: its exit code is the bind's errno (0: bound).
fn run_helper(plan: &mut Plan) -> Result<(), Errno> {
    // Every signal blocked while the copy is made, and so in the copy for its whole
    // life: none of force-bind's handlers may run there, and a signal meant for
    // force-bind (its process group's, say) is not lost to it. SIGKILL still works.
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .map_err(|_| Errno::EPERM)?;
    // SAFETY: clone with no flags and no exit signal: a copy of this process (fork
    // semantics, on a copy of this stack), reported to no wait but __WALL/__WCLONE.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        let code = helper(plan);
        // SAFETY: _exit ends the helper at once: no destructor, no atexit handler,
        // nothing of force-bind's state runs in the copy.
        unsafe { libc::_exit(code) };
    }
    let clone_errno = Errno::last();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    if rc < 0 {
        return Err(match clone_errno {
            Errno::ENOMEM => Errno::ENOMEM,
            _ => Errno::EPERM,
        });
    }
    let child = rc as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local.
        let waited = unsafe { libc::waitpid(child, &mut status, libc::__WALL) };
        match Errno::result(waited) {
            Err(Errno::EINTR) => continue,
            Ok(_) if libc::WIFEXITED(status) => {
                return match libc::WEXITSTATUS(status) {
                    0 => Ok(()),
                    errno => Err(Errno::from_raw(errno)),
                };
            }
            // Killed (by the program itself, which may signal a process with its own
            // credentials), or reaped by someone else: the outcome is unknown.
            _ => return Err(Errno::EPERM),
        }
    }
}

// ----- The helper: raw syscalls only, no allocation, no panic. -----

/// A raw syscall's result, or its errno.
fn sys(rc: libc::c_long) -> Result<libc::c_long, i32> {
    if rc < 0 {
        Err(Errno::last_raw())
    } else {
        Ok(rc)
    }
}

/// What the helper does: takes on the thread's filesystem context and credentials,
/// then binds. Returns 0 or an errno.
fn helper(plan: &mut Plan) -> i32 {
    // The copy has its own filesystem context (no CLONE_FS): changing it here changes
    // nothing in force-bind.
    // SAFETY: umask takes an integer and cannot fail.
    unsafe { libc::syscall(libc::SYS_umask, plan.who.umask as libc::c_long) };
    if let Some(fs) = plan.fs
        && let Err(errno) = enter_fs_context(fs)
    {
        return errno;
    }
    close_all_but(plan.sock, plan.nofile);
    if let Err(errno) = take_credentials(plan.who, plan.caps, &mut plan.groups_seen) {
        return errno;
    }
    // The id change made the copy dumpable again as suid_dumpable says (commit_creds()),
    // and it runs with the program's credentials: the program must not trace it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    bind(plan)
}

/// The thread's root and cwd, entered while the helper still has force-bind's
/// credentials (the directories are the thread's; the lookup of the name below them
/// is made with its credentials, and checks search permission from the first
/// directory on, as the thread's own would). Order: into the root, chroot(".") so
/// that the root is the very directory (not a path looked up again), then into the
/// cwd, which chroot() leaves alone. fchdir() takes O_PATH descriptors (Linux 3.5+).
fn enter_fs_context(fs: RawFsContext) -> Result<(), i32> {
    // SAFETY: fchdir on a descriptor the helper holds.
    sys(unsafe { libc::syscall(libc::SYS_fchdir, fs.root) })?;
    // SAFETY: chroot reads a NUL-terminated path.
    let rooted = sys(unsafe { libc::syscall(libc::SYS_chroot, c".".as_ptr()) });
    // Without CAP_SYS_CHROOT the helper keeps force-bind's root. That is the thread's
    // own only if they are the same directory on the same mount; otherwise an
    // absolute name, ".." above the thread's root, or an absolute symlink would be
    // resolved outside the thread's root, where it cannot reach: refuse.
    if rooted.is_err() && !fs.same_root {
        return Err(libc::EPERM);
    }
    // SAFETY: fchdir on a descriptor the helper holds (or on -1: EBADF).
    let entered = sys(unsafe { libc::syscall(libc::SYS_fchdir, fs.cwd.unwrap_or(-1)) });
    match (entered, fs.kind) {
        (Err(errno), PathKind::Relative) => Err(errno),
        // An absolute name reaches the cwd only through /proc/self/cwd; staying in the
        // root then resolves that to a place the program can name itself.
        _ => Ok(()),
    }
}

/// Closes every descriptor but the socket: the copy of force-bind's table must not be
/// reachable through /proc/self/fd while the name is resolved.
fn close_all_but(keep: RawFd, nofile: u32) {
    let keep = keep as u32;
    let range = |first: u32, last: u32| {
        // SAFETY: close_range closes descriptors of the helper's own table.
        sys(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).is_ok()
    };
    let closed = (keep == 0 || range(0, keep - 1)) && range(keep.saturating_add(1), u32::MAX);
    if !closed {
        for fd in (0..nofile).filter(|fd| *fd != keep) {
            // SAFETY: close on a descriptor number of the helper's own table.
            unsafe { libc::syscall(libc::SYS_close, fd as libc::c_long) };
        }
    }
}

/// <linux/capability.h>: _LINUX_CAPABILITY_VERSION_3, 64-bit sets in two halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's (effective, permitted) capabilities.
fn capget() -> Result<(u64, u64), i32> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two CapData (version 3) for the calling thread.
    sys(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// Sets the calling thread's effective and permitted sets, and empties the
/// inheritable one (which also empties the ambient set).
fn capset(effective: u64, permitted: u64) -> Result<(), i32> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |set: u64, high: bool| (if high { set >> 32 } else { set }) as u32;
    let data = [false, true].map(|high| CapData {
        effective: half(effective, high),
        permitted: half(permitted, high),
        inheritable: 0,
    });
    // SAFETY: capset reads two CapData (version 3) for the calling thread.
    sys(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) }).map(drop)
}

/// Takes on the thread's groups, gids, uids and (kept from force-bind's own, never
/// more) `caps`, with per-thread syscalls. Each step may fail when force-bind is not
/// root (it then already has the program's ids, or fewer rights): what counts is
/// what the helper ends with, read back at the end; anything but the thread's ids and
/// at most `caps` is EPERM.
fn take_credentials(who: &Identity, caps: u64, groups_seen: &mut [libc::gid_t]) -> Result<(), i32> {
    let [ruid, euid, suid, fsuid] = who.uid.map(libc::c_long::from);
    let [rgid, egid, sgid, fsgid] = who.gid.map(libc::c_long::from);
    // SAFETY: credential syscalls with integer arguments, or a pointer to the group
    // list and its length; they change the helper's credentials only.
    unsafe {
        // Keep the permitted set through the uid change (capabilities(7): all of it is
        // cleared when no uid stays 0), so the program's capabilities can be kept.
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        libc::syscall(
            libc::SYS_setgroups,
            who.groups.len() as libc::c_long,
            who.groups.as_ptr(),
        );
        libc::syscall(libc::SYS_setresgid, rgid, egid, sgid);
        // setresgid() set the fs gid to the effective one; CAP_SETGID is still there.
        libc::syscall(libc::SYS_setfsgid, fsgid);
        libc::syscall(libc::SYS_setresuid, ruid, euid, suid);
    }
    // The uid change emptied the effective set (euid 0 to nonzero) and set the fs uid
    // to the effective one; another fs uid needs CAP_SETUID back for a moment.
    if let Ok((_, permitted)) = capget() {
        let _ = capset(permitted, permitted);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_setfsuid, fsuid) };
    // Last, after every id change (an fs uid going to 0 raises capabilities): the
    // program's, of those force-bind has.
    let (_, permitted) = capget()?;
    let keep = caps & permitted;
    capset(keep, keep)?;
    if held_credentials(groups_seen).is_some_and(|held| {
        held.uid == who.uid
            && held.gid == who.gid
            && held.groups == who.groups.as_slice()
            && (held.effective | held.permitted) & !caps == 0
    }) {
        Ok(())
    } else {
        Err(libc::EPERM)
    }
}

/// What the helper holds, read back.
struct Held<'a> {
    uid: [u32; 4],
    gid: [u32; 4],
    groups: &'a [libc::gid_t],
    effective: u64,
    permitted: u64,
}

fn held_credentials(groups_seen: &mut [libc::gid_t]) -> Option<Held<'_>> {
    let (mut ruid, mut euid, mut suid): (libc::uid_t, libc::uid_t, libc::uid_t) = (0, 0, 0);
    let (mut rgid, mut egid, mut sgid): (libc::gid_t, libc::gid_t, libc::gid_t) = (0, 0, 0);
    // SAFETY: getresuid/getresgid write three ids through the pointers; getgroups
    // writes at most `groups_seen.len()` gids into it; setfsuid/setfsgid(-1) change
    // nothing (-1 is no id) and return the current fs id.
    let (fsuid, fsgid, count) = unsafe {
        sys(libc::syscall(
            libc::SYS_getresuid,
            &mut ruid,
            &mut euid,
            &mut suid,
        ))
        .ok()?;
        sys(libc::syscall(
            libc::SYS_getresgid,
            &mut rgid,
            &mut egid,
            &mut sgid,
        ))
        .ok()?;
        let fsuid = libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) as u32;
        let fsgid = libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) as u32;
        let count = sys(libc::syscall(
            libc::SYS_getgroups,
            groups_seen.len() as libc::c_long,
            groups_seen.as_mut_ptr(),
        ))
        .ok()?;
        (fsuid, fsgid, count)
    };
    let (effective, permitted) = capget().ok()?;
    // The kernel keeps the groups sorted (setgroups() sorts them) and /proc shows them
    // in that order, so the lists compare as they are.
    Some(Held {
        uid: [ruid, euid, suid, fsuid],
        gid: [rgid, egid, sgid, fsgid],
        groups: groups_seen.get(..count as usize)?,
        effective,
        permitted,
    })
}

/// bind(2) on the socket; for a netlink autobind, with the port ids the kernel would
/// have tried for the program (ROVER_TRIES of them), then as asked.
fn bind(plan: &Plan) -> i32 {
    let bind_bytes = |bytes: &[u8]| {
        // SAFETY: bind reads `bytes.len()` bytes from the slice.
        let rc = unsafe {
            libc::bind(
                plan.sock,
                bytes.as_ptr().cast(),
                bytes.len() as libc::socklen_t,
            )
        };
        if rc == 0 { 0 } else { Errno::last_raw() }
    };
    if let Some(autobind) = plan.autobind {
        let mut addr = [0u8; SOCKADDR_MAX_LEN];
        for (to, from) in addr.iter_mut().zip(plan.bytes) {
            *to = *from;
        }
        let len = plan.bytes.len().min(addr.len());
        // The kernel's order: the pid, then down from a random negative start,
        // wrapping to -4097 below i32::MIN.
        let rover = std::iter::successors(Some(autobind.rover), |r| {
            Some(r.checked_sub(1).unwrap_or(-4097))
        });
        let ports = std::iter::once(autobind.own_pid)
            .filter(|p| *p > 0)
            .chain(rover.take(ROVER_TRIES));
        for port in ports {
            for (to, from) in addr.iter_mut().skip(4).zip(port.to_ne_bytes()) {
                *to = from;
            }
            match bind_bytes(addr.get(..len).unwrap_or(plan.bytes)) {
                libc::EADDRINUSE => continue,
                // Bound meanwhile by another thread: the call as asked says what then.
                libc::EBUSY => break,
                errno => return errno,
            }
        }
    }
    bind_bytes(plan.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    use nix::unistd::ForkResult;

    const STATUS: &str = "Name:\tsleep\nUmask:\t0027\nState:\tS (sleeping)\nTgid:\t4242\n\
        NStgid:\t4242\t7\nPid:\t4243\nUid:\t1000\t1001\t1002\t1003\n\
        Gid:\t100\t101\t102\t103\nFDSize:\t64\nGroups:\t4 24 27 \n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n";

    #[test]
    fn reads_the_identity_from_status() {
        assert_eq!(
            parse_status(STATUS),
            Some(Identity {
                uid: [1000, 1001, 1002, 1003],
                gid: [100, 101, 102, 103],
                groups: vec![4, 24, 27],
                cap_eff: 0x400,
                umask: 0o027,
                tgid: 7,
            })
        );
        let edit = |from: &str, to: &str| parse_status(&STATUS.replace(from, to));
        // Table: an edit of the status text, and what it gives (None: refused).
        type Expect = Option<fn(&Identity) -> bool>;
        let cases: [(&str, &str, Expect); 8] = [
            (
                "Groups:\t4 24 27 ",
                "Groups:\t",
                Some(|i| i.groups.is_empty()),
            ),
            ("NStgid:\t4242\t7\n", "", Some(|i| i.tgid == 4242)),
            ("Umask:\t0027", "Umask:\t0000", Some(|i| i.umask == 0)),
            ("Umask:\t0027\n", "", None),
            ("Umask:\t0027", "Umask:\t01777", None),
            (
                "Uid:\t1000\t1001\t1002\t1003",
                "Uid:\t1000\t1001\t1002",
                None,
            ),
            (
                "Gid:\t100\t101\t102\t103",
                "Gid:\t100\t101\t102\t103\t104",
                None,
            ),
            ("Groups:\t4 24 27 ", "Groups:\t4 x 27", None),
        ];
        for (from, to, expect) in cases {
            let got = edit(from, to);
            match expect {
                Some(check) => assert!(got.as_ref().is_some_and(check), "{to:?}: {got:?}"),
                None => assert_eq!(got, None, "{to:?}"),
            }
        }
    }

    #[test]
    fn tells_path_names_from_the_rest() {
        let unix = |path: &[u8]| [&(libc::AF_UNIX as u16).to_ne_bytes()[..], path].concat();
        let cases: [(i32, Vec<u8>, Option<PathKind>); 8] = [
            (libc::AF_UNIX, unix(b"/run/x"), Some(PathKind::Absolute)),
            (libc::AF_UNIX, unix(b"x"), Some(PathKind::Relative)),
            (libc::AF_UNIX, unix(b"./x\0"), Some(PathKind::Relative)),
            (libc::AF_UNIX, unix(b"\0abstract"), None),
            // Autobind: the family alone.
            (libc::AF_UNIX, unix(b""), None),
            // Longer than sockaddr_un, or another family: EINVAL from the kernel.
            (libc::AF_UNIX, unix(&[b'x'; 109]), None),
            (libc::AF_UNIX, [&[2u8, 0][..], b"/x"].concat(), None),
            // Not an AF_UNIX socket.
            (libc::AF_NETLINK, unix(b"/run/x"), None),
        ];
        for (domain, bytes, expect) in cases {
            assert_eq!(unix_path_name(domain, &bytes), expect, "{bytes:?}");
        }
    }

    #[test]
    fn rover_starts_where_the_kernel_would() {
        for _ in 0..1000 {
            let r = random_rover();
            assert!((i32::MIN..=-4097).contains(&r), "{r}");
        }
    }

    // ----- Against real processes (root only). -----

    fn is_root() -> bool {
        // SAFETY: geteuid has no arguments and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        eprintln!("SKIP: needs root (real credentials and chroot)");
        false
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str, mode: u32) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "force-bind-as-target-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What a test target does before it waits to be looked at.
    #[derive(Default)]
    struct Setup<'a> {
        /// chroot() into this first.
        root: Option<&'a Path>,
        /// Then chdir() here (inside the new root, if any).
        cwd: Option<&'a Path>,
        umask: u32,
        /// unshare(CLONE_NEWUSER): a user namespace of its own (it keeps uid 0 as seen
        /// from outside, and has every capability inside).
        own_user_ns: bool,
        /// Then become 65534 (nobody), with no supplementary group.
        nobody: bool,
    }

    /// A forked process set up as asked, paused until dropped (killed by its pid).
    struct Target(Pid);

    impl Target {
        fn start(setup: Setup) -> Target {
            let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
            let root = setup.root.map(c);
            let cwd = setup.cwd.map(c);
            let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
            // SAFETY: the child runs raw syscalls only (the test process has threads),
            // and never returns.
            match unsafe { nix::unistd::fork() }.unwrap() {
                ForkResult::Child => {
                    let nobody = 65534 as libc::c_long;
                    // SAFETY: plain syscalls on arguments prepared before the fork.
                    unsafe {
                        let ok = root.as_ref().is_none_or(|r| libc::chroot(r.as_ptr()) == 0)
                            && cwd.as_ref().is_none_or(|d| libc::chdir(d.as_ptr()) == 0)
                            && {
                                libc::umask(setup.umask);
                                true
                            }
                            && (!setup.own_user_ns
                                || libc::syscall(
                                    libc::SYS_unshare,
                                    libc::CLONE_NEWUSER as libc::c_long,
                                ) == 0)
                            && (!setup.nobody
                                || (libc::syscall(
                                    libc::SYS_setgroups,
                                    0 as libc::c_long,
                                    std::ptr::null::<libc::gid_t>(),
                                ) == 0
                                    && libc::syscall(libc::SYS_setresgid, nobody, nobody, nobody)
                                        == 0
                                    && libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody)
                                        == 0));
                        if !ok {
                            libc::_exit(1);
                        }
                        libc::write(ready_w.as_raw_fd(), b"r".as_ptr().cast(), 1);
                        loop {
                            libc::pause();
                        }
                    }
                }
                ForkResult::Parent { child } => {
                    drop(ready_w);
                    let mut byte = [0u8; 1];
                    let target = Target(child);
                    let n = std::fs::File::from(ready_r).read(&mut byte).unwrap();
                    assert_eq!(n, 1, "the test target could not set itself up");
                    target
                }
            }
        }
    }

    impl Drop for Target {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.0, None);
        }
    }

    fn unix_socket() -> OwnedFd {
        socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap()
    }

    fn unix_name(path: &[u8]) -> Vec<u8> {
        [&(libc::AF_UNIX as u16).to_ne_bytes()[..], path].concat()
    }

    /// A name no other test or run uses, so that a wrong resolution cannot hit (or
    /// leave) anything real.
    fn unique(name: &str) -> String {
        format!("fb-as-target-{}-{name}", std::process::id())
    }

    fn bound_name(sock: &OwnedFd) -> Vec<u8> {
        let mut addr = [0u8; SOCKADDR_MAX_LEN];
        let mut len = addr.len() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into the buffer.
        let rc = unsafe { libc::getsockname(sock.as_raw_fd(), addr.as_mut_ptr().cast(), &mut len) };
        assert_eq!(rc, 0);
        addr[..len as usize].to_vec()
    }

    #[test]
    fn relative_name_lands_in_the_targets_cwd_with_its_umask_and_uid() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("cwd", 0o777);
        let target = Target::start(Setup {
            cwd: Some(&dir.0),
            umask: 0o077,
            nobody: true,
            ..Setup::default()
        });
        let name = unique("sock1");
        let sock = unix_socket();
        bind_as_target(target.0, &sock, &unix_name(name.as_bytes())).unwrap();
        let made = std::fs::symlink_metadata(dir.0.join(&name)).unwrap();
        assert!(made.file_type().is_socket());
        assert_eq!(made.mode() & 0o7777, 0o700, "umask 077 applied");
        assert_eq!((made.uid(), made.gid()), (65534, 65534));
        assert!(!Path::new(&name).exists(), "not in force-bind's cwd");
        // The socket's name is the one asked for (the kernel adds the NUL), as the
        // program's own bind gives it.
        assert_eq!(bound_name(&sock), unix_name(format!("{name}\0").as_bytes()));
    }

    #[test]
    fn root_target_keeps_its_umask() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("root-umask", 0o755);
        let target = Target::start(Setup {
            cwd: Some(&dir.0),
            umask: 0o022,
            ..Setup::default()
        });
        let name = unique("sock");
        bind_as_target(target.0, &unix_socket(), &unix_name(name.as_bytes())).unwrap();
        let made = std::fs::symlink_metadata(dir.0.join(&name)).unwrap();
        assert_eq!((made.mode() & 0o7777, made.uid()), (0o755, 0));
    }

    #[test]
    fn directory_only_root_can_write_is_eacces_for_nobody() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("rootonly", 0o755);
        let target = Target::start(Setup {
            cwd: Some(&dir.0),
            nobody: true,
            ..Setup::default()
        });
        let name = unique("denied");
        let abs = dir.0.join(&name);
        for bytes in [
            unix_name(name.as_bytes()),
            unix_name(abs.as_os_str().as_bytes()),
        ] {
            assert_eq!(
                bind_as_target(target.0, &unix_socket(), &bytes),
                Err(Errno::EACCES)
            );
        }
        assert!(!abs.exists());
    }

    #[test]
    fn absolute_name_resolves_in_the_targets_root() {
        if !is_root() {
            return;
        }
        let root = TempDir::new("chroot", 0o755);
        std::fs::create_dir(root.0.join("run")).unwrap();
        std::fs::set_permissions(root.0.join("run"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let target = Target::start(Setup {
            root: Some(&root.0),
            cwd: Some(Path::new("/run")),
            nobody: true,
            ..Setup::default()
        });
        let name = unique("abs");
        let asked = format!("/run/{name}");
        bind_as_target(target.0, &unix_socket(), &unix_name(asked.as_bytes())).unwrap();
        assert!(root.0.join("run").join(&name).exists());
        assert!(!Path::new(&asked).exists(), "not in force-bind's root");
        // ".." stops at the target's root, as in its own lookups.
        let dotdot = format!("../../../run/{}", unique("dotdot"));
        bind_as_target(target.0, &unix_socket(), &unix_name(dotdot.as_bytes())).unwrap();
        assert!(root.0.join("run").join(unique("dotdot")).exists());
    }

    #[test]
    fn magic_links_are_the_targets_not_force_binds() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("magic", 0o777);
        let target = Target::start(Setup {
            cwd: Some(&dir.0),
            nobody: true,
            ..Setup::default()
        });
        let name = unique("viaself");
        let via_self = format!("/proc/self/cwd/{name}");
        bind_as_target(target.0, &unix_socket(), &unix_name(via_self.as_bytes())).unwrap();
        assert!(dir.0.join(&name).exists(), "/proc/self is the target's");
        assert!(!Path::new(&name).exists());
        // A directory force-bind has open (opened after the target started, which
        // therefore does not have it) is not reachable through /proc/self/fd.
        let other = TempDir::new("magic-other", 0o777);
        let held = std::fs::File::open(&other.0).unwrap();
        let via_fd = format!("/proc/self/fd/{}/{}", held.as_raw_fd(), unique("viafd"));
        assert!(bind_as_target(target.0, &unix_socket(), &unix_name(via_fd.as_bytes())).is_err());
        assert!(!other.0.join(unique("viafd")).exists());
    }

    #[test]
    fn without_cap_sys_chroot_only_a_shared_root_is_used() {
        if !is_root() {
            return;
        }
        let root = TempDir::new("nochroot-root", 0o755);
        let plain = TempDir::new("nochroot-plain", 0o755);
        let chrooted = Target::start(Setup {
            root: Some(&root.0),
            cwd: Some(Path::new("/")),
            ..Setup::default()
        });
        let shared = Target::start(Setup {
            cwd: Some(&plain.0),
            ..Setup::default()
        });
        let abs = plain.0.join(unique("shared"));
        // Capabilities are per thread: this thread alone gives up CAP_SYS_CHROOT.
        let results = std::thread::spawn(move || {
            const CAP_SYS_CHROOT: u32 = 18;
            let (effective, permitted) = capget().unwrap();
            capset(effective & !(1 << CAP_SYS_CHROOT), permitted).unwrap();
            let bind =
                |t: &Target, path: &[u8]| bind_as_target(t.0, &unix_socket(), &unix_name(path));
            [
                bind(&shared, abs.as_os_str().as_bytes()),
                bind(&shared, unique("rel").as_bytes()),
                bind(&chrooted, b"/x"),
                bind(&chrooted, b"x"),
                bind(&chrooted, format!("\0{}", unique("abstract")).as_bytes()),
            ]
        })
        .join()
        .unwrap();
        assert_eq!(
            results,
            [Ok(()), Ok(()), Err(Errno::EPERM), Err(Errno::EPERM), Ok(())]
        );
        assert!(plain.0.join(unique("shared")).exists());
        assert!(plain.0.join(unique("rel")).exists());
        assert!(!root.0.join("x").exists());
    }

    #[test]
    fn abstract_name_binds() {
        if !is_root() {
            return;
        }
        let target = Target::start(Setup {
            nobody: true,
            ..Setup::default()
        });
        let name = unix_name(format!("\0{}", unique("abstract")).as_bytes());
        let sock = unix_socket();
        bind_as_target(target.0, &sock, &name).unwrap();
        assert_eq!(bound_name(&sock), name);
        // Autobind (the family alone) too.
        let auto = unix_socket();
        bind_as_target(target.0, &auto, &unix_name(b"")).unwrap();
        assert_eq!(bound_name(&auto).get(2), Some(&0));
        // The helpers were reaped: this thread's only child is the target.
        if let Ok(children) = std::fs::read_to_string("/proc/thread-self/children") {
            assert_eq!(children.trim(), target.0.to_string());
        }
    }

    fn netlink(protocol: SockProtocol) -> Option<OwnedFd> {
        socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )
        .ok()
    }

    fn netlink_name(port: u32, groups: u32) -> Vec<u8> {
        let mut addr = vec![0u8; SOCKADDR_NL_LEN];
        addr[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
        addr[4..8].copy_from_slice(&port.to_ne_bytes());
        addr[8..12].copy_from_slice(&groups.to_ne_bytes());
        addr
    }

    fn port_of(sock: &OwnedFd) -> i32 {
        let addr = bound_name(sock);
        i32::from_ne_bytes(addr[4..8].try_into().unwrap())
    }

    #[test]
    fn netlink_autobind_gets_the_targets_pid() {
        if !is_root() {
            return;
        }
        let target = Target::start(Setup {
            nobody: true,
            ..Setup::default()
        });
        let first = netlink(SockProtocol::NetlinkRoute).unwrap();
        bind_as_target(target.0, &first, &netlink_name(0, 0)).unwrap();
        assert_eq!(port_of(&first), target.0.as_raw());
        // Its pid is taken now: a negative one, as the kernel gives.
        let second = netlink(SockProtocol::NetlinkRoute).unwrap();
        bind_as_target(target.0, &second, &netlink_name(0, 0)).unwrap();
        assert!(port_of(&second) < -4096, "{}", port_of(&second));
        // An explicit port id is bound as asked; binding again must name it.
        let third = netlink(SockProtocol::NetlinkRoute).unwrap();
        let port = 0x7000_0000 | std::process::id();
        bind_as_target(target.0, &third, &netlink_name(port, 0)).unwrap();
        assert_eq!(port_of(&third), port as i32);
        assert_eq!(
            bind_as_target(target.0, &third, &netlink_name(0, 0)),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn capabilities_count_only_in_force_binds_user_namespace() {
        if !is_root() {
            return;
        }
        // The audit log multicast group needs CAP_AUDIT_READ (in the initial user
        // namespace): the target's, not force-bind's.
        const AUDIT_NLGRP_READLOG: u32 = 1;
        let Some(probe) = netlink(SockProtocol::NetlinkAudit) else {
            eprintln!("SKIP: no NETLINK_AUDIT in this kernel");
            return;
        };
        drop(probe);
        let cases = [
            (Setup::default(), Ok(())),
            (
                Setup {
                    own_user_ns: true,
                    ..Setup::default()
                },
                Err(Errno::EPERM),
            ),
            (
                Setup {
                    nobody: true,
                    ..Setup::default()
                },
                Err(Errno::EPERM),
            ),
        ];
        for (setup, expect) in cases {
            let own_ns = setup.own_user_ns;
            let target = Target::start(setup);
            let sock = netlink(SockProtocol::NetlinkAudit).unwrap();
            assert_eq!(
                bind_as_target(
                    target.0,
                    &sock,
                    &netlink_name(0, 1 << (AUDIT_NLGRP_READLOG - 1))
                ),
                expect,
                "own user namespace: {own_ns}"
            );
        }
    }

    #[test]
    fn refuses_ip_sockets_and_gone_targets() {
        if !is_root() {
            return;
        }
        let target = Target::start(Setup::default());
        let inet = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let any = [&(libc::AF_INET as u16).to_ne_bytes()[..], &[0; 14]].concat();
        assert_eq!(bind_as_target(target.0, &inet, &any), Err(Errno::EPERM));
        let pid = target.0;
        drop(target);
        let name = unix_name(format!("\0{}", unique("gone")).as_bytes());
        assert_eq!(
            bind_as_target(pid, &unix_socket(), &name),
            Err(Errno::EPERM)
        );
    }
}
