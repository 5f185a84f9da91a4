// activation.rs: sockets force-bind inherits (systemd socket activation's
// LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, or any descriptor for fd=N) and the
// environment the program gets. Parsing is pure; probing the descriptors is the
// only system access.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use crate::policy::{Inherited, InheritedSocket};
use crate::rule::{Action, FdRef, Rule};

pub const LISTEN_PID: &str = "LISTEN_PID";
pub const LISTEN_FDS: &str = "LISTEN_FDS";
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// SD_LISTEN_FDS_START
const FIRST_SYSTEMD_FD: RawFd = 3;

/// What sd_listen_fds(3) would accept: the count and names, or 0 when the variables
/// are absent, malformed, or meant for another process (LISTEN_PID is not ours).
pub fn parse_listen_env(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> (u32, Vec<String>) {
    let for_us = pid.and_then(|p| p.parse::<u32>().ok()) == Some(own_pid);
    let count = fds
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|_| for_us)
        .unwrap_or(0);
    // No more than fit in a descriptor number.
    let count = count.min((i32::MAX - FIRST_SYSTEMD_FD) as u32);
    let names = match (count, names) {
        (0, _) | (_, None) => Vec::new(),
        (_, Some(names)) => names.split(':').map(str::to_string).collect(),
    };
    (count, names)
}

/// Finds the inherited sockets the rules can name. Only descriptors the rules could
/// use are looked at, and only open sockets count as passed.
pub fn inherited(rules: &[Rule]) -> Inherited {
    let env = |name| std::env::var(name).ok();
    let (systemd_count, systemd_names) = parse_listen_env(
        env(LISTEN_PID).as_deref(),
        env(LISTEN_FDS).as_deref(),
        env(LISTEN_FDNAMES).as_deref(),
        std::process::id(),
    );
    let mut candidates: Vec<RawFd> = rules
        .iter()
        .filter_map(|r| match &r.action {
            Action::Replace(FdRef::Fd(fd)) => Some(*fd),
            _ => None,
        })
        .collect();
    let wants_systemd = rules.iter().any(|r| {
        matches!(
            r.action,
            Action::Replace(FdRef::Systemd(_) | FdRef::SystemdName(_))
        )
    });
    if wants_systemd {
        // Bounded by what rules could name, not by what LISTEN_FDS claims.
        candidates.extend((0..systemd_count.min(4096)).map(|i| FIRST_SYSTEMD_FD + i as RawFd));
    }
    candidates.sort_unstable();
    candidates.dedup();
    let sockets = candidates
        .into_iter()
        .filter_map(inherited_socket)
        .collect();
    Inherited {
        sockets,
        systemd_count,
        systemd_names,
    }
}

/// `fd` as a passed socket, with its family, type and protocol; None when it is not
/// an open socket.
fn inherited_socket(fd: RawFd) -> Option<InheritedSocket> {
    // SAFETY: getsockopt only inspects the descriptor; a closed one gives EBADF, one
    // that is not a socket ENOTSOCK.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let domain = crate::target::sock_domain(sock).ok()?;
    Some(InheritedSocket {
        fd,
        domain,
        kind: crate::target::sock_kind(sock),
    })
}

/// Closes the io_uring instances force-bind inherited, so that the program cannot
/// inherit them: a ring made before the filter was in force would let it submit
/// IORING_OP_BIND (Linux 6.11+) out of seccomp's sight, with no io_uring_setup to
/// refuse. The descriptors closed, for the warning.
pub fn close_inherited_rings() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let rings: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| {
            may_be_anon_inode(fd)
                && std::fs::read_link(format!("/proc/self/fd/{fd}"))
                    .is_ok_and(|target| target.as_os_str() == "anon_inode:[io_uring]")
        })
        .collect();
    for &fd in &rings {
        // SAFETY: closing a descriptor force-bind inherited and never uses (only
        // io_uring instances; the directory listing is done).
        unsafe { libc::close(fd) };
    }
    rings
}

/// Whether `fd` could be an anonymous-inode file such as an io_uring instance: its
/// inode has no file type (or, on kernels that give anonymous inodes one, S_IFREG).
/// fstat(2) on the descriptor is much cheaper than readlink(2) on /proc, which walks
/// a path and formats a name, and it rules out what start-up usually inherits
/// (terminals, pipes, /dev/null, sockets, directories).
fn may_be_anon_inode(fd: RawFd) -> bool {
    // SAFETY: stat is plain data; all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one stat into a local. A closed descriptor fails, and then
    // readlink decides (it fails too).
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return true;
    }
    matches!(st.st_mode & libc::S_IFMT, 0 | libc::S_IFREG)
}

/// The program's environment: ours without the socket-activation variables, which
/// describe sockets force-bind consumes on the program's behalf. With
/// `pass_listen_fds` they are kept and LISTEN_PID is left for the child to fill in
/// with its own PID (see `spawn`), the only value sd_listen_fds(3) accepts.
pub fn program_env(pass_listen_fds: bool) -> Vec<CString> {
    program_env_from(std::env::vars_os(), pass_listen_fds)
}

fn program_env_from(
    vars: impl Iterator<Item = (OsString, OsString)>,
    pass_listen_fds: bool,
) -> Vec<CString> {
    let is = |k: &OsStr, name: &str| k.as_bytes() == name.as_bytes();
    vars.filter(|(k, _)| {
        if is(k, LISTEN_PID) {
            return false;
        }
        pass_listen_fds || !(is(k, LISTEN_FDS) || is(k, LISTEN_FDNAMES))
    })
    .filter_map(|(k, v)| {
        let mut entry = k.into_vec();
        entry.push(b'=');
        entry.extend_from_slice(v.as_bytes());
        CString::new(entry).ok()
    })
    .collect()
}

use std::os::unix::ffi::OsStringExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_env_table() {
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            (u32, Vec<&'a str>),
        );
        let cases: &[Case] = &[
            (
                Some("42"),
                Some("2"),
                Some("web:admin"),
                (2, vec!["web", "admin"]),
            ),
            (Some("42"), Some("1"), None, (1, vec![])),
            (Some("43"), Some("2"), Some("web:admin"), (0, vec![])),
            (None, Some("2"), None, (0, vec![])),
            (Some("42"), None, None, (0, vec![])),
            (Some("42"), Some("x"), None, (0, vec![])),
            (Some("42"), Some("-1"), None, (0, vec![])),
            (Some("x"), Some("1"), None, (0, vec![])),
            (Some("42"), Some("0"), Some("web"), (0, vec![])),
        ];
        for (pid, fds, names, (count, want_names)) in cases {
            let got = parse_listen_env(*pid, *fds, *names, 42);
            assert_eq!(
                got,
                (*count, want_names.iter().map(|s| s.to_string()).collect()),
                "{pid:?} {fds:?} {names:?}"
            );
        }
    }

    #[test]
    fn strips_activation_variables() {
        let vars = || {
            [
                ("PATH", "/bin"),
                ("LISTEN_PID", "1"),
                ("LISTEN_FDS", "1"),
                ("LISTEN_FDNAMES", "web"),
                ("LISTEN_PIDX", "y"),
            ]
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        };
        let env = program_env_from(vars(), false);
        assert_eq!(
            env,
            ["PATH=/bin", "LISTEN_PIDX=y"].map(|s| CString::new(s).unwrap())
        );
        let env = program_env_from(vars(), true);
        assert_eq!(
            env,
            [
                "PATH=/bin",
                "LISTEN_FDS=1",
                "LISTEN_FDNAMES=web",
                "LISTEN_PIDX=y"
            ]
            .map(|s| CString::new(s).unwrap())
        );
    }
}
