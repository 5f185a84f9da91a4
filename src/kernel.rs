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
    /// clone3(2) with CLONE_INTO_CGROUP (5.7): a child can start in a cgroup. The bpf
    /// engine runs without it (the child writes cgroup.procs, and the move waits for
    /// an RCU grace period, ~9 ms here), but `auto` takes bpf only with it: this is
    /// also the fact that tells a real 4.19 (whose cgroup programs lack what ours
    /// need) and shared/tools/vm's `oldkernel` emulation of one (clone3 ENOSYS, though
    /// bpf(2) passes) from a kernel that runs our programs.
    pub clone_into_cgroup: bool,
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
            clone_into_cgroup: clone_into_cgroup_known(),
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

/// struct clone_args (<linux/sched.h>) up to `cgroup`: CLONE_ARGS_SIZE_VER2 (5.7).
/// The probe below and spawn.rs's clone into a cgroup use it.
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Whether clone3 takes CLONE_INTO_CGROUP, asked so that every kernel fails before
/// it would start making a process: a CLONE_ARGS_SIZE_VER2 struct whose `cgroup` is
/// above INT_MAX. 5.7 and later read `cgroup` and refuse that value (EINVAL, in
/// copy_clone_args_from_user); 5.3 to 5.6 do not know the field and refuse a struct
/// with non-zero bytes past their own (E2BIG, copy_struct_from_user); earlier
/// kernels, and seccomp profiles such as Docker's or `oldkernel`'s, have no clone3
/// (ENOSYS). (A valid-looking descriptor that cannot be open would fail later, with
/// EBADF in copy_process, after it has copied our memory map: ~2 ms, measured.)
fn clone_into_cgroup_known() -> bool {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        cgroup: i32::MAX as u64 + 1,
        ..CloneArgs::default()
    };
    // SAFETY: a valid clone_args of the size passed, which every kernel refuses
    // before any child exists (see above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if rc == 0 {
        // A child after all (cannot happen: see above): it must not run our code.
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(0) };
    }
    if rc > 0 {
        // SAFETY: reaps the child just made (exit_signal 0: __WALL finds it).
        unsafe { libc::waitpid(rc as i32, std::ptr::null_mut(), libc::__WALL) };
        return false;
    }
    Errno::result(rc).err() == Some(Errno::EINVAL)
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
        // 5.19's flag comes after 5.7's clone3 flag.
        if kernel.wait_killable_recv {
            assert!(kernel.clone_into_cgroup, "{kernel:?}");
        }
    }

    #[test]
    fn says_what_the_notify_engine_lacks() {
        let all = Kernel {
            user_notif: true,
            pidfd_getfd: true,
            wait_killable_recv: false,
            clone_into_cgroup: true,
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
