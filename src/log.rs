// log.rs: what force-bind tells the user, how much, and where. One global setting,
// made once from -q/-v/-D/--json/--log before any engine runs: warnings go to stderr,
// events (one per trapped call, event.rs) to stderr or the --log file, as text or
// JSON. With no rule at all force-bind only watches, and every event is shown.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::event::{Action, Call, Event, Holder, Outcome};
use crate::policy::{Decision, SocketKind, Verdict};
use crate::rule::{Action as RuleAction, Proto};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// -q: fatal errors only.
    Quiet = 0,
    /// Warnings (the default).
    Normal = 1,
    /// -v: one line per bind and listen.
    Verbose = 2,
    /// -D: engine internals too.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// A warning: shown unless -q.
macro_rules! warning {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Normal) {
            eprintln!("force-bind: warning: {}", format_args!($($arg)*));
        }
    };
}

/// One event line with -v.
macro_rules! verbose {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Verbose) {
            eprintln!("force-bind: {}", format_args!($($arg)*));
        }
    };
}

/// Engine internals with -D.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            eprintln!("force-bind: debug: {}", format_args!($($arg)*));
        }
    };
}

pub(crate) use {debug, verbose, warning as warn};

static JSON: AtomicBool = AtomicBool::new(false);
static WATCH: AtomicBool = AtomicBool::new(false);
/// Where events go: the --log file, or stderr when unset.
static SINK: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Events as JSON (--json), whether force-bind only watches (no rule), and the
/// --log file, if any.
pub fn configure_events(json: bool, watch: bool, file: Option<std::fs::File>) {
    JSON.store(json, Ordering::Relaxed);
    WATCH.store(watch, Ordering::Relaxed);
    if let Some(file) = file {
        let _ = SINK.set(Mutex::new(file));
    }
}

/// Whether anyone will see an event: worth the work of building one.
pub fn events_wanted() -> bool {
    JSON.load(Ordering::Relaxed)
        || enabled(Level::Verbose)
        || (WATCH.load(Ordering::Relaxed) && enabled(Level::Normal))
}

thread_local! {
    /// The container this thread serves (the agent's supervisor threads), named in
    /// its events.
    static CONTAINER: std::cell::RefCell<Option<std::sync::Arc<str>>> =
        const { std::cell::RefCell::new(None) };
}

/// From now on this thread's events name container `id`.
pub fn set_container(id: Option<std::sync::Arc<str>>) {
    CONTAINER.with(|c| *c.borrow_mut() = id);
}

fn container() -> Option<String> {
    CONTAINER.with(|c| c.borrow().as_deref().map(str::to_string))
}

/// The agent's word on one container: a refusal is said at the default verbosity
/// (one line), a supervised container with -v; both in --json.
pub fn emit_container(event: &crate::event::ContainerEvent) {
    let line = match (JSON.load(Ordering::Relaxed), SINK.get()) {
        (true, _) => event.json(),
        (false, _) if event.outcome.is_err() => {
            warn!("{}", event.text());
            return;
        }
        (false, _) if !enabled(Level::Verbose) => return,
        (false, to_file) => text_line(event.time, event.text(), to_file.is_some()),
    };
    write_line(line);
}

/// Writes one event line, whole (one write, so lines from worker threads never mix).
pub fn emit(event: &Event) {
    if !events_wanted() {
        return;
    }
    let line = match (JSON.load(Ordering::Relaxed), SINK.get()) {
        (true, _) => event.json(),
        (false, to_file) => text_line(event.time, event.text(), to_file.is_some()),
    };
    write_line(line);
}

/// An event's text line; in a log file, which is read later, each line says when.
fn text_line(time: std::time::SystemTime, text: String, to_file: bool) -> String {
    if to_file {
        format!("{} force-bind: {text}", crate::event::rfc3339(time))
    } else {
        format!("force-bind: {text}")
    }
}

/// The `--log FILE` to append events to, opened; Err (said in one line) when it
/// cannot be.
pub fn open_log_file(path: Option<&std::path::Path>) -> Result<Option<std::fs::File>, ()> {
    let Some(path) = path else {
        return Ok(None);
    };
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) => {
            eprintln!("force-bind: cannot open {}: {e}", path.display());
            Err(())
        }
    }
}

/// One line to the --log file or stderr, in one write, so lines from worker threads
/// never mix.
fn write_line(mut line: String) {
    line.push('\n');
    match SINK.get() {
        Some(file) => {
            let _ = file
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// The event for a judged bind (or the implicit bind of a listen), made when the
/// policy decides and emitted when the call's result is known (at once, or at the
/// syscall's exit in the ptrace engine). A failure is explained where it can be:
/// who holds the address, or a hint.
#[derive(Debug, Clone)]
pub struct Announcement {
    time: std::time::SystemTime,
    pid: Pid,
    call: Call,
    fd: i32,
    proto: Proto,
    requested: SocketAddr,
    rule: Option<String>,
    action: Action,
    /// The address actually tried, for explaining a failure.
    attempted: Option<SocketAddr>,
    note: Option<String>,
    /// SO_TYPE, when known, to look in the right /proc/net table.
    sock_type: Option<i32>,
}

impl Announcement {
    /// None when nobody would see the event: then it costs nothing.
    pub fn new(
        pid: Pid,
        call: Call,
        fd: i32,
        requested: SocketAddr,
        kind: SocketKind,
        verdict: &Verdict,
    ) -> Option<Self> {
        if !events_wanted() {
            return None;
        }
        let sock_type = (kind.sock_type != 0).then_some(kind.sock_type);
        let (action, attempted) = match &verdict.decision {
            Decision::Allow => (Action::Allowed, Some(requested)),
            Decision::Rewrite(to) => (Action::Rewritten(to[0]), Some(to[0])),
            Decision::ReplaceWithFd(n) => (Action::Replaced(*n), None),
            Decision::Deny(_) => (Action::Denied, None),
        };
        let note = verdict_note(verdict);
        Some(Announcement {
            time: std::time::SystemTime::now(),
            pid,
            call,
            fd,
            proto: kind.proto(),
            requested,
            rule: verdict.rule.map(|r| r.text.clone()),
            action,
            attempted,
            note,
            sock_type,
        })
    }

    /// Adds to the note (a detail learnt while carrying the decision out).
    pub fn note(&mut self, text: &str) {
        self.note = Some(join_notes(self.note.take(), text));
    }

    /// The rewrite landed on `to`, not on the first address tried.
    pub fn rewritten_to(&mut self, to: SocketAddr) {
        self.action = Action::Rewritten(to);
        self.attempted = Some(to);
    }

    /// Emits it with the call's result: the bound address when known, or the errno.
    pub fn emit(&self, result: Result<Option<SocketAddr>, Errno>) {
        let outcome = match (result, &self.action) {
            // A replaced socket is bound where the inherited one is.
            (Ok(None), Action::Replaced(n)) => Outcome::Ok {
                bound: crate::target::own_local_addr(*n),
            },
            (Ok(bound), _) => Outcome::Ok { bound },
            (Err(errno), _) => explain(self.pid, errno, self.attempted, self.sock_type),
        };
        emit(&Event {
            time: self.time,
            // Emitted on the thread that judged the call.
            container: container(),
            pid: self.pid.as_raw(),
            comm: crate::target::comm(self.pid),
            call: self.call,
            fd: Some(self.fd),
            proto: Some(self.proto),
            requested: Some(self.requested),
            rule: self.rule.clone(),
            action: self.action.clone(),
            note: self.note.clone(),
            outcome,
        });
    }

    /// The address the bind will land on when it succeeds, if it is known without
    /// asking the kernel (not for port 0).
    pub fn expected_bound(&self) -> Option<SocketAddr> {
        self.attempted.filter(|a| a.port() != 0)
    }
}

/// A failure, with who holds the address (EADDRINUSE) or a hint (EADDRNOTAVAIL).
pub fn explain(
    pid: Pid,
    errno: Errno,
    attempted: Option<SocketAddr>,
    sock_type: Option<i32>,
) -> Outcome {
    let (holder, hint) = match (errno, attempted) {
        (Errno::EADDRINUSE, Some(addr)) => {
            (Some(crate::diagnose::holder(pid, addr, sock_type)), None)
        }
        (Errno::EADDRNOTAVAIL, Some(addr)) => {
            (None, crate::diagnose::not_local_hint(pid, addr.ip()))
        }
        _ => (None, None),
    };
    Outcome::Failed {
        errno,
        holder,
        hint,
    }
}

/// What a bind's event says of its verdict beyond the action: a skipped rule, a
/// listen() judged later. Also for the bpf engine's events (bpf/events.rs).
pub fn verdict_note(verdict: &Verdict) -> Option<String> {
    let note = skip_note(verdict);
    if verdict.judge_listen {
        return Some(join_notes(
            note,
            "port 0: its listen() is judged on the port the kernel gives it",
        ));
    }
    note
}

/// Joins two details of one event.
pub fn join_notes(note: Option<String>, text: &str) -> String {
    match note {
        Some(n) => format!("{n}; {text}"),
        None => text.to_string(),
    }
}

/// What the event says of a rule that was skipped: always when no rule decided (the
/// bind goes through as asked), and for an inherited socket that could not be used.
fn skip_note(verdict: &Verdict) -> Option<String> {
    let (rule, why) = verdict.skipped.as_ref()?;
    let shown = verdict.rule.is_none() || matches!(rule.action, RuleAction::Replace(_));
    shown.then(|| match verdict.rule {
        None => format!("rule '{}' skipped: {why}; bound as asked", rule.text),
        Some(_) => format!("rule '{}' skipped: {why}", rule.text),
    })
}

/// When no rule decided a bind because a rule that matched could not be carried out
/// (an inherited socket not passed or of another kind, an address the socket cannot
/// take), the bind goes through as asked: said at the default verbosity, in one
/// line, unless the event line already says it.
pub fn warn_skipped(
    pid: Pid,
    call: Call,
    fd: i32,
    requested: SocketAddr,
    kind: SocketKind,
    verdict: &Verdict,
) {
    if verdict.rule.is_some() || events_wanted() {
        return;
    }
    if let Some(note) = skip_note(verdict) {
        warn!(
            "pid {pid} ({}): {} {} fd {fd} {requested}: {note}",
            crate::target::comm(pid),
            call.name(),
            kind.proto().name()
        );
    }
}

/// The event for a call that needs no judging: a skipped listen (-L), a refused
/// io_uring_setup, or a listen that was only watched (`bound`: where it listens).
pub fn emit_simple(
    pid: Pid,
    call: Call,
    fd: Option<i32>,
    proto: Option<Proto>,
    action: Action,
    result: Result<Option<SocketAddr>, Errno>,
) {
    if !events_wanted() {
        return;
    }
    emit(&Event {
        time: std::time::SystemTime::now(),
        container: container(),
        pid: pid.as_raw(),
        comm: crate::target::comm(pid),
        call,
        fd,
        proto,
        requested: None,
        rule: None,
        action,
        note: None,
        outcome: match result {
            Ok(bound) => Outcome::Ok { bound },
            Err(errno) => Outcome::Failed {
                errno,
                holder: None::<Holder>,
                hint: None,
            },
        },
    });
}

/// An event to emit once a traced syscall returns (the ptrace engine learns the
/// result only at the syscall-exit stop).
#[derive(Debug, Clone)]
pub enum Later {
    Bind(Announcement),
    /// A call that needed no judging, only watching; `local`: the socket's address
    /// before the call, when it was bound; `inode`, to find where it listens when
    /// there was no copy of the socket to ask (before Linux 5.6).
    Watched {
        call: Call,
        fd: i32,
        proto: Option<Proto>,
        local: Option<SocketAddr>,
        inode: Option<u64>,
    },
}

impl Later {
    pub fn emit(&self, pid: Pid, result: i64) {
        let result = match result {
            0.. => Ok(()),
            _ => Err(Errno::from_raw(-result as i32)),
        };
        match self {
            Later::Bind(a) => a.emit(result.map(|()| a.expected_bound())),
            Later::Watched {
                call,
                fd,
                proto,
                local,
                inode,
            } => {
                // A socket in the TCP tables is a TCP one, listening there.
                let listening = match (local, inode) {
                    (None, Some(inode)) if result.is_ok() => {
                        crate::diagnose::listening_addr(pid, *inode)
                    }
                    _ => *local,
                };
                let proto = proto.or(listening.map(|_| Proto::Tcp));
                emit_simple(
                    pid,
                    *call,
                    Some(*fd),
                    proto,
                    Action::Allowed,
                    result.map(|()| listening),
                )
            }
        }
    }
}
