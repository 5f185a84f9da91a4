// bpf/confine.rs: keeping the program in its cgroup. A root program could write its
// PID to another cgroup's cgroup.procs and leave the programs behind, so before exec
// the child takes a private mount namespace (slave propagation: the host's later
// mounts still reach it) in which every cgroup2 mount is read-only, and drops from
// its bounding set what would undo that: CAP_SYS_ADMIN (remount, mount, setns, and
// BPF_PROG_GET_FD_BY_ID, without which our BPF_F_ALLOW_MULTI programs cannot be
// detached: loader.rs), CAP_SYS_PTRACE (another process's /proc/PID/root, where the
// mount is writable), CAP_DAC_READ_SEARCH (open_by_handle_at on the cgroup fs) and
// CAP_BPF (loading programs of its own). What is left is in the README's security
// model.

use std::ffi::CString;

use nix::errno::Errno;

/// CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_BPF (<linux/capability.h>).
const DROPPED: [libc::c_ulong; 4] = [2, 19, 21, 39];

/// What the child needs, prepared before fork.
pub struct Confinement {
    /// Each cgroup2 mount point, and the flags its remount keeps.
    mounts: Vec<(CString, libc::c_ulong)>,
}

impl Confinement {
    /// The cgroup2 mounts of mountinfo's text.
    pub fn new(mountinfo: &str) -> Confinement {
        let mounts = mountinfo
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                if right.split_whitespace().next()? != "cgroup2" {
                    return None;
                }
                let fields: Vec<&str> = left.split_whitespace().collect();
                let point = super::cgroup::unescape(fields.get(4)?);
                let flags = fields.get(5)?.split(',').fold(0, |f, o| {
                    f | match o {
                        "nosuid" => libc::MS_NOSUID,
                        "nodev" => libc::MS_NODEV,
                        "noexec" => libc::MS_NOEXEC,
                        "noatime" => libc::MS_NOATIME,
                        "nodiratime" => libc::MS_NODIRATIME,
                        "relatime" => libc::MS_RELATIME,
                        _ => 0,
                    }
                });
                Some((CString::new(point).ok()?, flags))
            })
            .collect();
        Confinement { mounts }
    }

    /// In the child, before exec: raw syscalls on memory prepared by `new`.
    pub fn apply(&self) -> Result<(), Errno> {
        // SAFETY: unshare, mount and prctl with NUL-terminated paths owned by `self`
        // and null pointers where the kernel takes none; async-signal-safe.
        unsafe {
            Errno::result(libc::unshare(libc::CLONE_NEWNS))?;
            Errno::result(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            for (point, flags) in &self.mounts {
                Errno::result(libc::mount(
                    std::ptr::null(),
                    point.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags,
                    std::ptr::null(),
                ))?;
            }
            for cap in DROPPED {
                // EINVAL: a kernel without that capability (CAP_BPF is 5.8).
                match Errno::result(libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0)) {
                    Ok(_) | Err(Errno::EINVAL) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cgroup2_mount_with_its_flags() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n\
                    50 23 0:38 / /mnt/a\\040b rw - cgroup2 cgroup2 rw\n";
        let c = Confinement::new(text);
        assert_eq!(
            c.mounts,
            vec![
                (
                    CString::new("/sys/fs/cgroup/unified").unwrap(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME
                ),
                (CString::new("/mnt/a b").unwrap(), 0),
            ]
        );
    }
}
