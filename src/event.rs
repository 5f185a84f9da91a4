// event.rs: one line about one trapped call, as text for -v and as a JSON object for
// --json. Pure formatting: the engines fill an Event in, log.rs decides where it goes.
// The JSON field names are a stable interface (documented in README.md).

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;

use crate::rule::Proto;

/// Which call the event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Bind,
    Listen,
    IoUringSetup,
}

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::Bind => "bind",
            Call::Listen => "listen",
            Call::IoUringSetup => "io_uring_setup",
        }
    }
}

/// What force-bind did with the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let through as asked (by an `allow` rule, or because no rule matched).
    Allowed,
    Rewritten(SocketAddr),
    /// Replaced by inherited descriptor N.
    Replaced(i32),
    Denied,
    /// listen() on an inherited socket that already listens (-L).
    Skipped,
    /// io_uring_setup() refused.
    Refused,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Allowed => "allowed",
            Action::Rewritten(_) => "rewritten",
            Action::Replaced(_) => "replaced",
            Action::Denied => "denied",
            Action::Skipped => "skipped",
            Action::Refused => "refused",
        }
    }
}

/// Who holds an address a bind found in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Process {
        pid: i32,
        comm: String,
    },
    /// Not visible from here (another user's process, another namespace, the kernel).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded; for a bind, the address the kernel bound (port 0 resolved)
    /// when it could be read.
    Ok { bound: Option<SocketAddr> },
    Failed {
        errno: Errno,
        holder: Option<Holder>,
        hint: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When force-bind saw the call.
    pub time: SystemTime,
    /// The container the process belongs to (the agent's events).
    pub container: Option<String>,
    pub pid: i32,
    pub comm: String,
    pub call: Call,
    pub fd: Option<i32>,
    /// The socket's protocol, when known.
    pub proto: Option<Proto>,
    /// The address the program asked for (for listen: the socket's implicit one).
    pub requested: Option<SocketAddr>,
    /// The rule that decided, as the user wrote it; None when none matched.
    pub rule: Option<String>,
    pub action: Action,
    pub note: Option<String>,
    pub outcome: Outcome,
}

impl Event {
    /// The -v line (without the "force-bind: " prefix).
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(id) = &self.container {
            let _ = write!(s, "container {id}: ");
        }
        let _ = write!(s, "pid {} ({}): {}", self.pid, self.comm, self.call.name());
        if let Some(proto) = self.proto {
            let _ = write!(s, " {}", proto.name());
        }
        if let Some(fd) = self.fd {
            let _ = write!(s, " fd {fd}");
        }
        if let Some(addr) = self.requested {
            let _ = write!(s, " {addr}");
        }
        let by = self
            .rule
            .as_ref()
            .map(|r| format!(" by '{r}'"))
            .unwrap_or_default();
        let what = match &self.action {
            // A listen that needed no decision: only what happened is said.
            Action::Allowed if self.rule.is_none() && self.requested.is_none() => String::new(),
            Action::Allowed if self.rule.is_none() => "allowed (no rule matched)".to_string(),
            Action::Allowed => format!("allowed{by}"),
            Action::Rewritten(to) => format!("rewritten to {to}{by}"),
            Action::Replaced(n) => format!("replaced by inherited fd {n}{by}"),
            Action::Denied => format!("denied{by}"),
            Action::Skipped => "skipped: an inherited socket, already listening".to_string(),
            Action::Refused => {
                "refused: binds through io_uring would bypass the policy (--allow-io-uring)"
                    .to_string()
            }
        };
        if !what.is_empty() {
            let _ = write!(s, ": {what}");
        }
        if let Some(note) = &self.note {
            let _ = write!(s, " ({note})");
        }
        match &self.outcome {
            Outcome::Ok { bound: Some(bound) }
                if self.call == Call::Listen && self.requested.is_none() =>
            {
                let _ = write!(s, ": ok, listening on {bound}");
            }
            Outcome::Ok { bound: Some(bound) } => {
                let _ = write!(s, ": ok, bound {bound}");
            }
            Outcome::Ok { bound: None } => s.push_str(": ok"),
            Outcome::Failed {
                errno,
                holder,
                hint,
            } => {
                match errno {
                    // The bpf engine's failed binds: the kernel tells no errno.
                    Errno::UnknownErrno => s.push_str(": failed, errno unknown"),
                    _ => {
                        let _ = write!(s, ": failed: {errno:?} ({})", errno.desc());
                    }
                }
                match holder {
                    Some(Holder::Process { pid, comm }) => {
                        let _ = write!(s, ", held by pid {pid} ({comm})");
                    }
                    Some(Holder::Unknown) => s.push_str(", held by an unknown process"),
                    None => {}
                }
                if let Some(hint) = hint {
                    let _ = write!(s, "; hint: {hint}");
                }
            }
        }
        s
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let mut j = Json::new();
        j.str("time", &rfc3339(self.time));
        j.str("event", self.call.name());
        if let Some(id) = &self.container {
            j.str("container", id);
        }
        j.num("pid", self.pid as i64);
        j.str("comm", &self.comm);
        if let Some(fd) = self.fd {
            j.num("fd", fd as i64);
        }
        if let Some(proto) = self.proto {
            j.str("proto", proto.name());
        }
        if let Some(addr) = self.requested {
            j.str("family", if addr.is_ipv4() { "ipv4" } else { "ipv6" });
            j.str("address", &addr.to_string());
        }
        match &self.rule {
            Some(rule) => j.str("rule", rule),
            None => j.null("rule"),
        }
        j.str("action", self.action.name());
        match &self.action {
            Action::Rewritten(to) => j.str("to", &to.to_string()),
            Action::Replaced(n) => j.str("to", &format!("fd={n}")),
            _ => {}
        }
        if let Some(note) = &self.note {
            j.str("note", note);
        }
        match &self.outcome {
            Outcome::Ok { bound } => {
                j.str("result", "ok");
                if let Some(bound) = bound {
                    j.str("bound", &bound.to_string());
                }
            }
            Outcome::Failed {
                errno,
                holder,
                hint,
            } => {
                j.str("result", "error");
                match errno {
                    Errno::UnknownErrno => j.str("errno", "unknown"),
                    _ => {
                        j.str("errno", &format!("{errno:?}"));
                        j.str("error", errno.desc());
                    }
                }
                match holder {
                    Some(Holder::Process { pid, comm }) => j.raw(
                        "holder",
                        &format!("{{\"pid\":{pid},\"comm\":{}}}", quote(comm)),
                    ),
                    Some(Holder::Unknown) => j.str("holder", "unknown"),
                    None => {}
                }
                if let Some(hint) = hint {
                    j.str("hint", hint);
                }
            }
        }
        j.finish()
    }
}

/// What the agent made of one runtime connection: a container process supervised
/// with its rules, or refused (then its binds are denied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub time: SystemTime,
    /// The container's id; None when the runtime's message could not be read.
    pub container: Option<String>,
    /// The process, as the runtime names it (0: not said).
    pub pid: i32,
    /// The container's rules, as written, agent's first.
    pub rules: Vec<String>,
    pub outcome: Result<(), String>,
}

impl ContainerEvent {
    pub fn text(&self) -> String {
        let id = self.container.as_deref().unwrap_or("?");
        let mut s = format!("container {id}");
        if self.pid != 0 {
            let _ = write!(s, " (pid {})", self.pid);
        }
        match &self.outcome {
            Ok(()) if self.rules.is_empty() => s.push_str(": supervised, no rule (watching)"),
            Ok(()) => {
                let _ = write!(s, ": supervised with '{}'", self.rules.join(" "));
            }
            Err(e) => {
                let _ = write!(s, ": refused: {e}; its binds are denied");
            }
        }
        s
    }

    pub fn json(&self) -> String {
        let mut j = Json::new();
        j.str("time", &rfc3339(self.time));
        j.str("event", "container");
        match &self.container {
            Some(id) => j.str("container", id),
            None => j.null("container"),
        }
        if self.pid != 0 {
            j.num("pid", self.pid as i64);
        }
        j.str("rules", &self.rules.join(" "));
        match &self.outcome {
            Ok(()) => {
                j.str("action", "supervised");
                j.str("result", "ok");
            }
            Err(e) => {
                j.str("action", "denied");
                j.str("result", "error");
                j.str("error", e);
            }
        }
        j.finish()
    }
}

/// `t` as RFC 3339 in UTC with microseconds: `2026-12-01T09:30:00.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, public domain: eras of 400 years of 146,097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A flat JSON object writer: all this needs, with correct string escaping.
struct Json(String);

impl Json {
    fn new() -> Self {
        Json(String::from("{"))
    }
    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&quote(key));
        self.0.push(':');
    }
    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.0.push_str(&quote(value));
    }
    fn num(&mut self, key: &str, value: i64) {
        self.key(key);
        let _ = write!(self.0, "{value}");
    }
    fn null(&mut self, key: &str) {
        self.key(key);
        self.0.push_str("null");
    }
    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.0.push_str(value);
    }
    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control characters
/// escaped; everything else, UTF-8 included, as is.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action, rule: Option<&str>, outcome: Outcome) -> Event {
        Event {
            time: UNIX_EPOCH + std::time::Duration::from_micros(1_764_581_400_123_456),
            container: None,
            pid: 42,
            comm: "py\"thon".into(),
            call: Call::Bind,
            fd: Some(3),
            proto: Some(Proto::Tcp),
            requested: Some("0.0.0.0:8000".parse().unwrap()),
            rule: rule.map(str::to_string),
            action,
            note: None,
            outcome,
        }
    }

    #[test]
    fn text_lines() {
        let ok = |bound: &str| Outcome::Ok {
            bound: Some(bound.parse().unwrap()),
        };
        let cases = [
            (
                event(
                    Action::Rewritten("127.0.0.2:8000".parse().unwrap()),
                    Some("-b 127.0.0.2"),
                    ok("127.0.0.2:8000"),
                ),
                "pid 42 (py\"thon): bind tcp fd 3 0.0.0.0:8000: rewritten to 127.0.0.2:8000 by '-b 127.0.0.2': ok, bound 127.0.0.2:8000",
            ),
            (
                event(Action::Allowed, None, ok("0.0.0.0:8000")),
                "pid 42 (py\"thon): bind tcp fd 3 0.0.0.0:8000: allowed (no rule matched): ok, bound 0.0.0.0:8000",
            ),
            (
                event(
                    Action::Denied,
                    Some("-d"),
                    Outcome::Failed {
                        errno: Errno::EPERM,
                        holder: None,
                        hint: None,
                    },
                ),
                "pid 42 (py\"thon): bind tcp fd 3 0.0.0.0:8000: denied by '-d': failed: EPERM (Operation not permitted)",
            ),
            (
                event(
                    Action::Allowed,
                    Some("-m :8000=allow"),
                    Outcome::Failed {
                        errno: Errno::EADDRINUSE,
                        holder: Some(Holder::Process {
                            pid: 7,
                            comm: "nc".into(),
                        }),
                        hint: None,
                    },
                ),
                "pid 42 (py\"thon): bind tcp fd 3 0.0.0.0:8000: allowed by '-m :8000=allow': failed: EADDRINUSE (Address already in use), held by pid 7 (nc)",
            ),
            (
                event(
                    Action::Replaced(3),
                    Some("-m :8000=sd=0"),
                    Outcome::Ok { bound: None },
                ),
                "pid 42 (py\"thon): bind tcp fd 3 0.0.0.0:8000: replaced by inherited fd 3 by '-m :8000=sd=0': ok",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.text(), want);
        }
    }

    #[test]
    fn json_objects() {
        let e = event(
            Action::Rewritten("127.0.0.2:8000".parse().unwrap()),
            Some("-b 127.0.0.2"),
            Outcome::Ok {
                bound: Some("127.0.0.2:8000".parse().unwrap()),
            },
        );
        assert_eq!(
            e.json(),
            r#"{"time":"2025-12-01T09:30:00.123456Z","event":"bind","pid":42,"comm":"py\"thon","fd":3,"proto":"tcp","family":"ipv4","address":"0.0.0.0:8000","rule":"-b 127.0.0.2","action":"rewritten","to":"127.0.0.2:8000","result":"ok","bound":"127.0.0.2:8000"}"#
        );
        let e = event(
            Action::Allowed,
            None,
            Outcome::Failed {
                errno: Errno::EADDRNOTAVAIL,
                holder: Some(Holder::Unknown),
                hint: Some("x\ty".into()),
            },
        );
        assert_eq!(
            e.json(),
            r#"{"time":"2025-12-01T09:30:00.123456Z","event":"bind","pid":42,"comm":"py\"thon","fd":3,"proto":"tcp","family":"ipv4","address":"0.0.0.0:8000","rule":null,"action":"allowed","result":"error","errno":"EADDRNOTAVAIL","error":"Cannot assign requested address","holder":"unknown","hint":"x\ty"}"#
        );
    }

    #[test]
    fn listen_lines_say_what_happened() {
        let mut e = event(
            Action::Allowed,
            None,
            Outcome::Ok {
                bound: Some("127.0.0.2:8080".parse().unwrap()),
            },
        );
        e.call = Call::Listen;
        e.requested = None;
        assert_eq!(
            e.text(),
            "pid 42 (py\"thon): listen tcp fd 3: ok, listening on 127.0.0.2:8080"
        );
    }

    #[test]
    fn container_events() {
        let time = UNIX_EPOCH + std::time::Duration::from_micros(1_764_581_400_123_456);
        let ok = ContainerEvent {
            time,
            container: Some("ctr1".into()),
            pid: 7,
            rules: vec!["-d".into(), "-b 127.0.0.2".into()],
            outcome: Ok(()),
        };
        assert_eq!(
            ok.text(),
            "container ctr1 (pid 7): supervised with '-d -b 127.0.0.2'"
        );
        assert_eq!(
            ok.json(),
            r#"{"time":"2025-12-01T09:30:00.123456Z","event":"container","container":"ctr1","pid":7,"rules":"-d -b 127.0.0.2","action":"supervised","result":"ok"}"#
        );
        let bad = ContainerEvent {
            container: None,
            pid: 0,
            rules: vec!["-d".into()],
            outcome: Err("bad \"x\"".into()),
            ..ok
        };
        assert_eq!(
            bad.text(),
            "container ?: refused: bad \"x\"; its binds are denied"
        );
        assert_eq!(
            bad.json(),
            r#"{"time":"2025-12-01T09:30:00.123456Z","event":"container","container":null,"rules":"-d","action":"denied","result":"error","error":"bad \"x\""}"#
        );
        let mut e = event(Action::Denied, Some("-d"), Outcome::Ok { bound: None });
        e.container = Some("ctr1".into());
        assert!(
            e.text().starts_with("container ctr1: pid 42 "),
            "{}",
            e.text()
        );
        assert!(
            e.json()
                .contains(r#""event":"bind","container":"ctr1","pid":42"#)
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        for (micros, want) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
            (4_102_444_799_999_999, "2099-12-31T23:59:59.999999Z"),
        ] {
            let t = UNIX_EPOCH + std::time::Duration::from_micros(micros);
            assert_eq!(rfc3339(t), want);
        }
    }

    #[test]
    fn quotes_json_strings() {
        assert_eq!(quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
