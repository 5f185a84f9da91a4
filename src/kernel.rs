// kernel.rs: what the running kernel offers force-bind, asked once at start and
// passed down as plain facts to the engine choice and to both engines. Probed, not
// guessed from uname (strace's way): each fact comes from a syscall that has no side
// effects, so asking costs nothing and changes nothing.
//
// Not here, because only a real listener or a stopped tracee can tell: NOTIF_ADDFD
// (5.9) and SYNC_WAKE_UP (6.6), checked by the notify engine's child on the program's
// own listener (notify/listener.rs); PTRACE_GET_SYSCALL_INFO (5.3), read at every
// seccomp stop, and the seccomp-stop ordering (4.8), which the ptrace engine learns at
// the first trapped call that needs it (ptrace/probe.rs).

use nix::errno::Errno;

/// What the running kernel offers, as found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// SECCOMP_RET_USER_NOTIF and the listener (5.0).
    pub user_notif: bool,
    /// pidfd_getfd(2) (5.6); pidfd_open (5.3) comes with it.
    pub pidfd_getfd: bool,
    /// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (5.19): once the supervisor has received
    /// a notification, only a fatal signal interrupts the target.
    pub wait_killable_recv: bool,
}

impl Kernel {
    /// Asks the kernel, once, with calls that have no side effects.
    pub fn probe() -> Kernel {
        // SAFETY: seccomp_notif_sizes is plain data; GET_NOTIF_SIZES writes one.
        let user_notif = unsafe {
            let mut sizes: libc::seccomp_notif_sizes = std::mem::zeroed();
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_NOTIF_SIZES,
                0,
                &mut sizes,
            ) == 0
        };
        // An invalid pidfd: EBADF where the syscall exists, ENOSYS where it does not.
        // SAFETY: no pointers; -1 is never a descriptor.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, 0, 0) };
        let pidfd_getfd = Errno::result(rc).err() != Some(Errno::ENOSYS);
        Kernel {
            user_notif,
            pidfd_getfd,
            wait_killable_recv: filter_flag_known(
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                    | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            ),
        }
    }

    /// Why the notify engine cannot run on this kernel, if it cannot. NOTIF_ADDFD
    /// (5.9) can only be checked on a real listener; the notify engine does that at
    /// start.
    pub fn notify_missing(&self) -> Option<&'static str> {
        if !self.user_notif {
            Some("no seccomp user notification (Linux 5.0)")
        } else if !self.pidfd_getfd {
            Some("no pidfd_getfd (Linux 5.6)")
        } else {
            None
        }
    }
}

/// Whether seccomp(2) takes the filter `flags`, asked with no filter at all (the
/// check libseccomp makes): the kernel refuses flags it does not know (EINVAL) before
/// it reads the program, so a known set fails with EFAULT on the NULL pointer and
/// nothing is installed.
fn filter_flag_known(flags: libc::c_ulong) -> bool {
    // SAFETY: a NULL program: the kernel fails before it would read anything.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    Errno::result(rc).err() == Some(Errno::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_without_installing_a_filter() {
        // SAFETY: prctl with integer arguments.
        let mode = || unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
        let before = mode();
        let kernel = Kernel::probe();
        assert_eq!(
            mode(),
            before,
            "the probe changed this thread's seccomp mode"
        );
        // Both come from seccomp(2), and 5.19's flag needs 5.0's listener.
        if kernel.wait_killable_recv {
            assert!(kernel.user_notif, "{kernel:?}");
        }
    }

    #[test]
    fn says_what_the_notify_engine_lacks() {
        let all = Kernel {
            user_notif: true,
            pidfd_getfd: true,
            wait_killable_recv: false,
        };
        assert_eq!(all.notify_missing(), None);
        let no_getfd = Kernel {
            pidfd_getfd: false,
            ..all
        };
        assert_eq!(
            no_getfd.notify_missing(),
            Some("no pidfd_getfd (Linux 5.6)")
        );
        let none = Kernel {
            user_notif: false,
            ..no_getfd
        };
        assert_eq!(
            none.notify_missing(),
            Some("no seccomp user notification (Linux 5.0)")
        );
    }
}
