// agent/socket.rs: the agent's UNIX socket and what a runtime sends on it. The
// socket is created mode 0600 in a directory of its own (only root's runtimes may
// hand us descriptors; each one is a process the agent will bind for with its own
// privileges), or taken from systemd socket activation. A runtime connects once per
// container process and sends one message: the container process state (JSON) with
// the seccomp listener attached (SCM_RIGHTS). runc never closes its end, so the
// message ends where the JSON ends.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags};

use super::state::{self, Parsed, ProcessState};

/// The agent's listening socket, and the path to remove at exit when we made it.
pub struct AgentSocket {
    pub listener: UnixListener,
    made: Option<PathBuf>,
}

/// SD_LISTEN_FDS_START.
const SYSTEMD_FD: RawFd = 3;

impl AgentSocket {
    /// The socket systemd passed (LISTEN_PID is ours, LISTEN_FDS=1), else a new one
    /// at `path`.
    pub fn open(path: &Path) -> anyhow::Result<AgentSocket> {
        let env = |name| std::env::var(name).ok();
        let (count, _) = crate::activation::parse_listen_env(
            env(crate::activation::LISTEN_PID).as_deref(),
            env(crate::activation::LISTEN_FDS).as_deref(),
            None,
            std::process::id(),
        );
        if count > 0 {
            if count != 1 {
                bail!("systemd passed {count} sockets; the agent listens on one");
            }
            // SAFETY: LISTEN_FDS with our PID says descriptor 3 was passed to us and
            // is ours; nothing else in the process owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(SYSTEMD_FD) };
            let kind = crate::target::sock_domain_type(std::os::fd::AsFd::as_fd(&fd));
            if kind != Ok((libc::AF_UNIX, libc::SOCK_STREAM)) {
                bail!("the socket systemd passed is not a UNIX stream socket");
            }
            // Not for the container processes' eyes (they are not our children, but
            // a helper the handler forks is).
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .context("cannot set FD_CLOEXEC on the passed socket")?;
            for name in [
                crate::activation::LISTEN_PID,
                crate::activation::LISTEN_FDS,
                crate::activation::LISTEN_FDNAMES,
            ] {
                // SAFETY: still one thread: nobody reads the environment meanwhile.
                unsafe { std::env::remove_var(name) };
            }
            return Ok(AgentSocket {
                listener: UnixListener::from(fd),
                made: None,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        remove_stale(path)?;
        // The socket file gets 0777 & ~umask: 0600 (owner only) from the start, with
        // no window in which another user could connect.
        // SAFETY: umask only sets the process's file creation mask; still one thread.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
        Ok(AgentSocket {
            listener,
            made: Some(path.to_path_buf()),
        })
    }

    /// Removes the socket file we made: runtimes then fail to connect, and refuse to
    /// start containers, rather than queue on a socket nobody accepts from.
    pub fn remove(&mut self) {
        if let Some(path) = self.made.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by an agent that is gone is removed; a live agent's, or
/// anything that is not a socket, is an error.
fn remove_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", path.display())),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        bail!("{} exists and is not a socket", path.display());
    }
    match UnixStream::connect(path) {
        Ok(_) => bail!("another agent listens on {}", path.display()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale {}", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot check {}", path.display())),
    }
}

/// What one runtime connection brought.
pub struct Received {
    /// The seccomp listener, when one was passed.
    pub listener: Option<OwnedFd>,
    /// The state, or why it could not be read.
    pub state: Result<ProcessState, String>,
}

/// A connection closed without a byte: a check that the agent listens (another
/// agent's start, a monitoring probe), not a runtime.
pub const NOTHING_SENT: &str = "the peer closed the connection without sending anything";

/// More than this is not a container process state.
const MAX_MESSAGE: usize = 1 << 20;
/// Descriptors one message may carry before it is refused (runtimes send one).
const MAX_FDS: usize = 8;
/// A runtime sends its message at once after connecting: one that has sent nothing
/// complete by then is dropped.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the runtime's message from `conn`: bytes until they parse as a state (or
/// the peer closes, or too many), and the descriptors attached to any of them.
pub fn receive(conn: &UnixStream) -> Received {
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    let state = loop {
        let mut chunk = [0u8; 16 * 1024];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [io::IoSliceMut::new(&mut chunk)];
        let got = socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match got {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => break Err("the runtime sent no complete state in time".into()),
            Err(e) => break Err(format!("cannot receive: {e}")),
            Ok(msg) => msg,
        };
        let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
        let n = msg.bytes;
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    // SAFETY: SCM_RIGHTS installed these descriptors for us; nobody
                    // else owns them.
                    fds.extend(
                        received
                            .iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }),
                    );
                }
            }
        }
        if truncated {
            break Err("the runtime passed too many descriptors".into());
        }
        if n == 0 && bytes.is_empty() && fds.is_empty() {
            break Err(NOTHING_SENT.into());
        }
        if n == 0 {
            break Err(match state::parse(&bytes) {
                Parsed::Invalid(e) => format!("not a container process state: {e}"),
                _ => "the runtime closed the connection before a whole state".into(),
            });
        }
        bytes.extend_from_slice(&chunk[..n]);
        match state::parse(&bytes) {
            Parsed::State(state) => break Ok(*state),
            Parsed::Incomplete if bytes.len() < MAX_MESSAGE => {}
            Parsed::Incomplete => break Err("the state is larger than 1 MiB".into()),
            Parsed::Invalid(e) => break Err(format!("not a container process state: {e}")),
        }
    };
    // The listener is the descriptor the state names "seccompFd"; when the state
    // cannot be read but one descriptor came, that one (its container then has its
    // binds denied rather than left waiting on a listener nobody reads).
    let index = match &state {
        Ok(s) => s.seccomp_fd_index(),
        Err(_) if fds.len() == 1 => Some(0),
        Err(_) => None,
    };
    let listener = index.and_then(|i| (i < fds.len()).then(|| fds.swap_remove(i)));
    let listener = listener.filter(is_seccomp_listener);
    Received { listener, state }
}

/// Whether `fd` is a seccomp notify listener ("anon_inode:seccomp notify").
fn is_seccomp_listener(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|link| link.as_os_str() == "anon_inode:seccomp notify")
}

/// The peer's user id (SO_PEERCRED).
pub fn peer_uid(conn: &UnixStream) -> Option<u32> {
    socket::getsockopt(conn, socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}
