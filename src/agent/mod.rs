// agent/mod.rs: `force-bind agent`, the seccomp listener of OCI runtimes (runc ≥ 1.1,
// crun ≥ 0.19; Docker and Podman through them). A container whose profile sends
// bind, listen and io_uring_setup to SCMP_ACT_NOTIFY with `listenerPath` makes its
// runtime connect here once per process it starts (run, and each exec) and pass the
// seccomp listener with the container's state (socket.rs, state.rs). Each listener
// is then served by the notify engine's own supervisor (notify::supervise: the same
// handler, checks and events) with that container's rules: the agent's, then those
// of its listenerMetadata (metadata.rs). What cannot be read or parsed is served
// with every bind denied, never left unanswered. The supervisor's threads end when
// the container's last process using the filter exits (the listener hangs up).
//
// SIGTERM or SIGINT: no new connection is accepted (the socket file we made is
// removed, so runtimes refuse to start new containers rather than queue), the
// connections already accepted are read, the calls being answered are answered, and
// the agent exits. Containers still running then have their binds fail with ENOSYS
// (the kernel's answer when a listener is gone): closed, never open.

pub mod metadata;
mod profile;
mod socket;
mod state;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cli::{self, AgentOptions, CliError, ProfileRequest};
use crate::event::ContainerEvent;
use crate::exit;
use crate::log::{self, debug, warn};
use crate::policy::Policy;
use crate::rule::Rule;

/// `force-bind agent ...`: `argv` is the whole command line.
pub fn main(argv: Vec<OsString>) -> u8 {
    let options = match cli::parse_agent(argv) {
        Ok(options) => options,
        Err(CliError::Help(text)) => return crate::print_out(&text),
        Err(CliError::Usage(message)) => {
            eprintln!("force-bind: {message}");
            return exit::USAGE as u8;
        }
    };
    if let Some(request) = &options.profile {
        return print_profile(&options, request);
    }
    log::set_level(options.level);
    let Ok(log_file) = log::open_log_file(options.log_file.as_deref()) else {
        return exit::INTERNAL as u8;
    };
    // Containers come with rules of their own: events are shown with -v or --json,
    // not because the agent has none.
    log::configure_events(options.json, false, log_file);
    match serve(options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("force-bind: {e:#}");
            exit::INTERNAL as u8
        }
    }
}

/// --profile: the profile on stdout.
fn print_profile(options: &AgentOptions, request: &ProfileRequest) -> u8 {
    let base = match &request.base {
        None => None,
        Some(path) => {
            let parsed = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
            match parsed {
                Ok(value) => Some(value),
                Err(e) => {
                    eprintln!("force-bind: --base {}: {e}", path.display());
                    return exit::USAGE as u8;
                }
            }
        }
    };
    let Some(socket) = options.socket.to_str() else {
        eprintln!("force-bind: --socket: the path must be UTF-8 to be written in JSON");
        return exit::USAGE as u8;
    };
    match profile::profile(socket, request.metadata.as_deref(), base) {
        Ok(profile) => {
            let mut text = serde_json::to_string_pretty(&profile).unwrap_or_default();
            text.push('\n');
            crate::print_out(&text)
        }
        Err(e) => {
            let path = request.base.as_deref().unwrap_or("-".as_ref());
            eprintln!("force-bind: --base {}: {e}", path.display());
            exit::USAGE as u8
        }
    }
}

/// How long, at shutdown, the calls being answered may take.
const DRAIN: Duration = Duration::from_secs(10);

/// Accepts runtime connections until SIGTERM or SIGINT.
fn serve(options: AgentOptions) -> anyhow::Result<()> {
    let kernel = crate::kernel::Kernel::probe();
    if let Some(missing) = kernel.notify_missing() {
        anyhow::bail!("the agent needs the notify engine: {missing}");
    }
    // Container processes must not be able to attach to the agent or take its
    // descriptors (see lib.rs: the same for force-bind itself).
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        warn!(
            "cannot make the agent non-dumpable: {}",
            nix::errno::Errno::last()
        );
    }
    // Blocked before any thread starts (threads inherit the mask), and read from a
    // signalfd by the accepting loop only.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop_signals), None)?;
    let signals = SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC)?;

    let mut agent_socket = socket::AgentSocket::open(&options.socket)?;
    agent_socket.listener.set_nonblocking(true)?;
    debug!(
        "agent: listening on {} (fd {})",
        options.socket.display(),
        agent_socket.listener.as_raw_fd()
    );
    let shared = Arc::new(Shared {
        agent_rules: options.rules,
        policies: Mutex::new(HashMap::new()),
        handshakes: AtomicUsize::new(0),
        port_starts: Mutex::new(HashMap::new()),
    });
    loop {
        let mut fds = [
            libc::pollfd {
                fd: agent_socket.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) on two pollfds we own.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                e => anyhow::bail!("poll: {e}"),
            }
        }
        if fds[1].revents != 0 {
            if let Ok(Some(info)) = signals.read_signal() {
                debug!("agent: signal {}: no more connections", info.ssi_signo);
            }
            break;
        }
        match agent_socket.listener.accept() {
            Ok((conn, _)) => shared.start_handshake(conn),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Out of descriptors or memory, say: this connection is lost (its
            // runtime fails the container), the agent goes on.
            Err(e) => {
                warn!("cannot accept a runtime connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    agent_socket.remove();
    drop(agent_socket);
    let deadline = Instant::now() + socket::RECEIVE_TIMEOUT + DRAIN;
    while shared.handshakes.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if !crate::notify::gate::close_and_wait(left) {
        warn!("calls still being answered after {DRAIN:?}: the agent exits anyway");
    }
    Ok(())
}

/// Distinct listenerMetadata texts the agent keeps a parsed policy for; past that
/// the cache starts afresh (running containers keep theirs), so memory stays bounded.
const MAX_POLICIES: usize = 4096;
/// Connections read at once; more are closed at once (their runtimes refuse the
/// container), so a flood of silent connections cannot take every thread.
const MAX_HANDSHAKES: usize = 64;

/// What the connection threads share.
struct Shared {
    agent_rules: Vec<Rule>,
    /// The policy of each listenerMetadata text seen, parsed once: the same few
    /// profiles serve every container. Each supervisor holds its own reference.
    policies: Mutex<HashMap<String, Arc<Policy>>>,
    /// Connections accepted and not yet read.
    handshakes: AtomicUsize,
    /// ip_unprivileged_port_start of each container's network namespace, as read
    /// when its init connected, for the processes `crun exec` starts (their state
    /// has no pid). Started afresh when it holds MAX_POLICIES.
    port_starts: Mutex<HashMap<String, u16>>,
}

impl Shared {
    fn start_handshake(self: &Arc<Self>, conn: UnixStream) {
        if self.handshakes.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
            self.handshakes.fetch_sub(1, Ordering::AcqRel);
            warn!("{MAX_HANDSHAKES} runtime connections are being read: one more is closed");
            return;
        }
        let shared = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("force-bind-handshake".into())
            .spawn(move || {
                shared.handshake(conn);
                shared.handshakes.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = started {
            self.handshakes.fetch_sub(1, Ordering::AcqRel);
            warn!("cannot start a thread for a runtime connection: {e}");
        }
    }

    /// Reads one runtime's message and has its listener served.
    fn handshake(&self, conn: UnixStream) {
        // SAFETY: geteuid(2) cannot fail.
        let own = unsafe { libc::geteuid() };
        match socket::peer_uid(&conn) {
            Some(uid) if uid == 0 || uid == own => {}
            // The socket is the owner's only; a socket unit's SocketMode may say
            // otherwise, but a process of another user is never bound for.
            uid => {
                warn!("a connection from uid {uid:?} is refused: only root's runtimes are served");
                return;
            }
        }
        let _ = conn.set_read_timeout(Some(socket::RECEIVE_TIMEOUT));
        let received = socket::receive(&conn);
        drop(conn);
        let (container, pid) = match &received.state {
            Ok(s) => (Some(s.state.id.clone()), s.pid),
            Err(_) => (None, 0),
        };
        let Some(listener) = received.listener else {
            let why = match received.state {
                Ok(_) => "the runtime passed no seccomp listener".to_string(),
                Err(e) if e == socket::NOTHING_SENT => {
                    debug!("agent: {e}");
                    return;
                }
                Err(e) => e,
            };
            // Nothing to answer: any descriptor that came is closed, and its
            // processes' trapped calls fail with ENOSYS.
            log::emit_container(&ContainerEvent {
                time: SystemTime::now(),
                container,
                pid,
                rules: Vec::new(),
                outcome: Err(why),
            });
            return;
        };
        let (policy, outcome) = match &received.state {
            Ok(s) => match self.policy_for(&s.metadata) {
                Ok(policy) => (policy, Ok(())),
                Err(e) => (
                    deny_everything(),
                    Err(format!("bad listenerMetadata {:?}: {e}", s.metadata)),
                ),
            },
            Err(e) => (deny_everything(), Err(e.clone())),
        };
        let label: Arc<str> = Arc::from(container.as_deref().unwrap_or("?"));
        // Said before the supervisor starts, so that it comes before the
        // container's first bind.
        let rules = policy.rules.iter().map(|r| r.text.clone()).collect();
        log::emit_container(&ContainerEvent {
            time: SystemTime::now(),
            container: container.clone(),
            pid,
            rules,
            outcome,
        });
        let port_start = self.port_start(container.as_deref(), pid);
        if port_start.is_none() {
            debug!("agent: container {label}: ip_unprivileged_port_start is the agent's");
        }
        if let Err(e) = crate::notify::supervise(policy, listener, Arc::clone(&label), port_start) {
            // The listener is closed with the error: the container's binds fail
            // (ENOSYS).
            log::emit_container(&ContainerEvent {
                time: SystemTime::now(),
                container,
                pid,
                rules: Vec::new(),
                outcome: Err(format!("cannot supervise it: {e:#}")),
            });
        }
    }

    /// The ip_unprivileged_port_start of the network namespace of container `id`'s
    /// process `pid`; with no pid, the one its init's namespace had.
    fn port_start(&self, id: Option<&str>, pid: i32) -> Option<u16> {
        let id = id?;
        let known = || self.port_starts.lock().unwrap_or_else(|e| e.into_inner());
        if pid <= 0 {
            return known().get(id).copied();
        }
        let start = unprivileged_port_start_of(pid)?;
        let mut known = known();
        if known.len() >= MAX_POLICIES {
            known.clear();
        }
        known.insert(id.to_string(), start);
        Some(start)
    }

    /// The policy of a container with this listenerMetadata.
    fn policy_for(&self, metadata: &str) -> Result<Arc<Policy>, String> {
        if let Some(policy) = self.lock().get(metadata) {
            return Ok(Arc::clone(policy));
        }
        // Parsed outside the lock: a host name in the metadata may take a DNS query.
        let rules = metadata::container_rules(&self.agent_rules, metadata)?;
        let mut policies = self.lock();
        if policies.len() >= MAX_POLICIES {
            policies.clear();
        }
        let policy = policies.entry(metadata.to_string()).or_insert_with(|| {
            Arc::new(Policy {
                rules,
                ..Policy::default()
            })
        });
        Ok(Arc::clone(policy))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Policy>>> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// net.ipv4.ip_unprivileged_port_start in the network namespace of `pid` (the
/// kernel's limit for the container's own binds, which Docker sets to 0 in a
/// container's namespace), read on a thread of our own that joins it: /proc/sys/net
/// shows the namespace of the thread that opens it.
fn unprivileged_port_start_of(pid: i32) -> Option<u16> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) with a namespace descriptor we opened; it moves
                // only this thread, which ends with this closure.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .join()
            .ok()
            .flatten()
    })
}

/// The policy of a container whose rules could not be known: every bind denied.
fn deny_everything() -> Arc<Policy> {
    static DENY: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();
    Arc::clone(DENY.get_or_init(|| {
        Arc::new(Policy {
            rules: vec![crate::rule::deny_all()],
            ..Policy::default()
        })
    }))
}
