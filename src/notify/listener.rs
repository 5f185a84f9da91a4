// notify/listener.rs: the seccomp user-notification listener fd and its ioctls
// (seccomp_unotify(2)): receive a notification, check it is still live, answer it,
// and install a descriptor in the target.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// One trapped syscall, as the kernel describes it.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    pub id: u64,
    /// The calling thread's id (in our PID namespace).
    pub pid: i32,
    /// seccomp_data.arch: which ABI the call came through.
    pub arch: u32,
    pub nr: i32,
    pub args: [u64; 6],
}

/// The answer to a notification. There is no "continue": every trapped call is done
/// on force-bind's side (handler.rs), so the kernel never re-reads the target's
/// memory or descriptors after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The syscall returns this value (0 for bind and listen).
    Return(i64),
}

/// What the engine waits for before it starts the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// A notification is waiting, or a process that may send one is left.
    MaySend,
    /// Nobody uses the filter any more.
    NobodyLeft,
}

/// The receive buffer, in 8-byte words: the kernel's struct seccomp_notif must fit.
const RECV_WORDS: usize = 64;

pub struct Listener {
    fd: OwnedFd,
    /// The kernel's sizeof(struct seccomp_notif), which may exceed ours.
    notif_size: usize,
}

impl Listener {
    pub fn new(fd: OwnedFd) -> Result<Self, Errno> {
        // SAFETY: seccomp_notif_sizes is plain data; all-zero is valid.
        let mut sizes: libc::seccomp_notif_sizes = unsafe { std::mem::zeroed() };
        // SAFETY: GET_NOTIF_SIZES writes one seccomp_notif_sizes.
        Errno::result(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_NOTIF_SIZES,
                0,
                &mut sizes,
            )
        })?;
        let notif_size =
            (sizes.seccomp_notif as usize).max(std::mem::size_of::<libc::seccomp_notif>());
        // recv() has room for RECV_WORDS words: a kernel whose struct is larger
        // (80 bytes today) would overrun it.
        if notif_size > RECV_WORDS * 8 {
            return Err(Errno::EOVERFLOW);
        }
        Ok(Listener { fd, notif_size })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Blocks until a notification arrives. ENOENT: the target died before we got
    /// it; EINTR: a signal. Both are normal.
    pub fn recv(&self) -> Result<Notification, Errno> {
        // Room for the kernel's struct, 8-aligned, zeroed as the kernel requires.
        let mut buf = [0u64; RECV_WORDS];
        let words = self.notif_size.div_ceil(8);
        let buf = &mut buf[..words];
        // SAFETY: the buffer is at least as large as the kernel's seccomp_notif.
        Errno::result(unsafe {
            libc::ioctl(self.raw(), libc::SECCOMP_IOCTL_NOTIF_RECV, buf.as_mut_ptr())
        })?;
        // SAFETY: the kernel filled a seccomp_notif at the start of the buffer, and
        // the buffer is aligned and large enough for ours.
        let n: libc::seccomp_notif = unsafe { std::ptr::read(buf.as_ptr().cast()) };
        Ok(Notification {
            id: n.id,
            pid: n.pid as i32,
            arch: n.data.arch,
            nr: n.data.nr,
            args: n.data.args,
        })
    }

    /// The listener's state right now (poll(2) without waiting).
    fn poll_now(&self) -> libc::c_short {
        let mut pfd = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd we own, without waiting.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        if rc > 0 { pfd.revents } else { 0 }
    }

    /// Blocks until the first notification is waiting or the program's main process
    /// (`main_pidfd`) has exited, and says whether anybody may still send one.
    pub fn wait_first(&self, main_pidfd: RawFd) -> First {
        let mut pfds = [self.raw(), main_pidfd].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        loop {
            // SAFETY: poll(2) on two pollfds we own.
            let rc = unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
            if rc < 0 && Errno::last() == Errno::EINTR {
                // A forwarded signal's handler ran.
                continue;
            }
            if rc < 0 || pfds[0].revents & libc::POLLIN != 0 {
                // A notification, or a state we cannot tell.
                return First::MaySend;
            }
            // The listener hung up or the main process exited. Every process using
            // the filter gone (POLLHUP) means every descendant is gone too: they all
            // inherit it. Since Linux 6.7 a task leaves its filter when it exits;
            // before, only once reaped, so there the main process's exit comes first
            // and the supervisor starts as it always did.
            return if self.poll_now() & (libc::POLLIN | libc::POLLHUP) == libc::POLLHUP {
                First::NobodyLeft
            } else {
                First::MaySend
            };
        }
    }

    /// Whether every process using the filter is gone (POLLHUP, Linux 5.8+).
    pub fn hung_up(&self) -> bool {
        self.poll_now() & libc::POLLHUP != 0
    }

    /// Whether a notification is waiting to be received.
    pub fn pending(&self) -> bool {
        self.poll_now() & libc::POLLIN != 0
    }

    /// Whether notification `id` is still pending: the thread has not died or been
    /// interrupted, so its pid still names the same thread.
    pub fn id_valid(&self, id: u64) -> Result<(), Errno> {
        // SAFETY: ID_VALID reads one u64.
        Errno::result(unsafe { libc::ioctl(self.raw(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) })
            .map(drop)
    }

    /// Answers notification `id`. ENOENT means the target no longer waits (it was
    /// interrupted or died): normal.
    pub fn respond(&self, id: u64, answer: Result<Response, Errno>) -> Result<(), Errno> {
        let (val, error, flags) = match answer {
            Ok(Response::Return(v)) => (v, 0, 0),
            Err(e) => (0, -(e as i32), 0),
        };
        let resp = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        // SAFETY: SEND reads one seccomp_notif_resp.
        Errno::result(unsafe { libc::ioctl(self.raw(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) })
            .map(drop)
    }

    /// Installs our descriptor `src` in the target at number `target_fd`, replacing
    /// what was there (SECCOMP_ADDFD_FLAG_SETFD), without answering the notification.
    pub fn add_fd(
        &self,
        id: u64,
        src: RawFd,
        target_fd: RawFd,
        cloexec: bool,
    ) -> Result<RawFd, Errno> {
        let addfd = libc::seccomp_notif_addfd {
            id,
            flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
            srcfd: src as u32,
            newfd: target_fd as u32,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: ADDFD reads one seccomp_notif_addfd.
        Errno::result(unsafe { libc::ioctl(self.raw(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) })
    }
}

/// Whether the kernel behind listener `fd` has SECCOMP_IOCTL_NOTIF_ADDFD (5.9): for
/// a notification that does not exist it answers ENOENT; a kernel without it,
/// EINVAL. A raw ioctl: usable in the child between fork and exec.
pub fn has_add_fd(fd: RawFd) -> bool {
    let addfd = libc::seccomp_notif_addfd {
        id: u64::MAX,
        flags: 0,
        srcfd: fd as u32,
        newfd: 0,
        newfd_flags: 0,
    };
    // SAFETY: ADDFD reads one seccomp_notif_addfd.
    let rc = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) };
    rc < 0 && Errno::last() == Errno::ENOENT
}

/// Asks the kernel to wake the supervisor on the target's own CPU and switch to it at
/// once (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 6.6+) instead of a cross-CPU wake-up:
/// the target waits for the answer anyway. False on older kernels. A raw ioctl.
pub fn prefer_sync_wake_up(fd: RawFd) -> bool {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: SET_FLAGS takes the flag word as its argument.
    unsafe {
        libc::ioctl(
            fd,
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        ) == 0
    }
}
