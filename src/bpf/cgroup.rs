// bpf/cgroup.rs: the program's cgroup. Found under force-bind's own cgroup on the
// cgroup2 mount (wherever /proc/self/mountinfo says it is: /sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid system), named force-bind-PID, removed when the
// run ends. A run that was killed leaves its cgroup behind, with its programs
// attached (so a program that outlives force-bind stays policed); the next run
// removes those whose force-bind is gone and that no process uses any more.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::log::{debug, warn};

const PREFIX: &str = "force-bind-";

/// The cgroup2 mount point and the root it shows, from mountinfo's text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        Some((
            PathBuf::from(unescape(fields.get(4)?)),
            fields.get(3)?.to_string(),
        ))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The unified-hierarchy path of this process ("0::/PATH" in /proc/self/cgroup).
pub fn own_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The directory of `path` under a mount of `mount_root` at `mount_point`.
pub fn directory(mount_point: &Path, mount_root: &str, path: &str) -> PathBuf {
    let relative = match mount_root {
        "/" => path,
        root => path.strip_prefix(root).unwrap_or(path),
    };
    mount_point.join(relative.trim_start_matches('/'))
}

/// force-bind's own cgroup directory.
pub fn own_directory() -> anyhow::Result<PathBuf> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let (point, root) = cgroup2_mount(&mountinfo).ok_or_else(|| anyhow!("no cgroup2 mount"))?;
    let cgroup =
        fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    let path =
        own_path(&cgroup).ok_or_else(|| anyhow!("/proc/self/cgroup has no cgroup2 (0::) entry"))?;
    Ok(directory(&point, &root, &path))
}

/// The program's cgroup, removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
    /// The directory, for BPF_PROG_ATTACH.
    pub dir: OwnedFd,
    /// cgroup.procs, opened before fork: the child writes "0" (itself) to it.
    pub procs: OwnedFd,
}

impl Cgroup {
    /// Creates force-bind-PID under `parent`, after removing what killed runs left.
    pub fn create(parent: &Path) -> anyhow::Result<Cgroup> {
        remove_leftovers(parent);
        let path = parent.join(format!("{PREFIX}{}", std::process::id()));
        fs::create_dir(&path)
            .with_context(|| format!("cannot create cgroup {}", path.display()))?;
        let opened = (|| {
            let dir = open(
                &path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let procs = open(
                &path.join("cgroup.procs"),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            Ok::<_, Errno>((dir, procs))
        })();
        match opened {
            Ok((dir, procs)) => Ok(Cgroup { path, dir, procs }),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(anyhow!("cannot open cgroup {}: {e}", path.display()))
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The last process may still be leaving it right after its parent reaped it.
        for attempt in 0..50 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => {
                    warn!(
                        "cannot remove cgroup {}: {e} (processes still in it stay under its programs; a later run removes it once empty)",
                        self.path.display()
                    );
                    return;
                }
            }
        }
    }
}

/// Whether process `pid` exists and is not a zombie (a killed force-bind its parent
/// has not reaped yet is gone for this purpose).
fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => {
            // SAFETY: signal 0 only checks that the process exists.
            unsafe { libc::kill(pid, 0) == 0 || Errno::last() != Errno::ESRCH }
        }
    }
}

/// Removes force-bind-PID cgroups under `parent` whose force-bind is gone; rmdir
/// refuses those that processes still use, which keep their programs.
fn remove_leftovers(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 0 || is_alive(pid) {
            continue;
        }
        let path = entry.path();
        match fs::remove_dir(&path) {
            Ok(()) => debug!("removed cgroup {} left by a killed run", path.display()),
            Err(e) => debug!("cgroup {} left by a killed run stays: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_pure_or_hybrid() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
        let pure =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(pure),
            Some((PathBuf::from("/sys/fs/cgroup"), "/".into()))
        );
        assert_eq!(cgroup2_mount("1 0 0:1 / / rw - ext4 /dev/sda rw\n"), None);
        assert_eq!(
            own_path("4:memory:/x\n0::/user.slice/session-1.scope\n").as_deref(),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(
            directory(Path::new("/sys/fs/cgroup"), "/", "/a/b"),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
        assert_eq!(
            directory(Path::new("/sys/fs/cgroup"), "/a", "/a/b"),
            PathBuf::from("/sys/fs/cgroup/b")
        );
        assert_eq!(
            directory(Path::new("/sys/fs/cgroup"), "/", "/"),
            PathBuf::from("/sys/fs/cgroup/")
        );
    }
}
