// agent/state.rs: the "container process state" an OCI runtime sends along with the
// seccomp notify descriptor (runtime-spec config-linux.md, "Seccomp listener"):
// which of the passed descriptors is the listener, the process, the container's
// id and the profile's listenerMetadata. Pure parsing.

use serde::Deserialize;

/// runtime-spec's `ContainerProcessState`. Only what the agent uses is read; other
/// fields (annotations, the runtimes' own) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProcessState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// What each passed descriptor is, in SCM_RIGHTS order ("seccompFd").
    pub fds: Vec<String>,
    /// The process, in the runtime's PID namespace; 0 when the runtime does not
    /// know it (`crun exec`).
    #[serde(default)]
    pub pid: i32,
    /// The profile's listenerMetadata.
    #[serde(default)]
    pub metadata: String,
    pub state: ContainerState,
}

/// runtime-spec's container `State`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub bundle: String,
}

/// The name runtimes give the seccomp listener in `fds`.
pub const SECCOMP_FD: &str = "seccompFd";

/// What `bytes` say so far.
#[derive(Debug)]
pub enum Parsed {
    State(Box<ProcessState>),
    /// A valid start: more bytes are to come (runc sends one message but never
    /// closes the connection, so the end is where the JSON ends).
    Incomplete,
    Invalid(String),
}

pub fn parse(bytes: &[u8]) -> Parsed {
    match serde_json::from_slice::<ProcessState>(bytes) {
        Ok(state) => Parsed::State(Box::new(state)),
        Err(e) if e.is_eof() => Parsed::Incomplete,
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

impl ProcessState {
    /// The index of the seccomp listener among the passed descriptors.
    pub fn seccomp_fd_index(&self) -> Option<usize> {
        self.fds.iter().position(|f| f == SECCOMP_FD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As runc 1.1.5 sends it (compact).
    const RUNC: &str = r#"{"ociVersion":"1.0.2-dev","fds":["seccompFd"],"pid":24605,"metadata":"-b 127.0.0.2","state":{"ociVersion":"1.0.2-dev","id":"ctr1","status":"creating","pid":24605,"bundle":"/tmp/b"}}"#;
    /// As crun 1.8.1 sends it for `crun exec` (pretty-printed, pid 0, bundle ".").
    const CRUN_EXEC: &str = r#"{
  "ociVersion": "0.2.0",
  "fds": [
    "seccompFd"
  ],
  "pid": 0,
  "metadata": "",
  "state": {
    "ociVersion": "0.2.0",
    "id": "ctr2",
    "status": "running",
    "pid": 0,
    "bundle": ".",
    "annotations": {"a": "b"}
  }
}"#;

    #[test]
    fn parses_what_runtimes_send() {
        let Parsed::State(s) = parse(RUNC.as_bytes()) else {
            panic!("runc's state")
        };
        assert_eq!(s.state.id, "ctr1");
        assert_eq!((s.pid, s.metadata.as_str()), (24605, "-b 127.0.0.2"));
        assert_eq!(s.seccomp_fd_index(), Some(0));
        let Parsed::State(s) = parse(CRUN_EXEC.as_bytes()) else {
            panic!("crun's state")
        };
        assert_eq!((s.state.id.as_str(), s.pid), ("ctr2", 0));
        assert_eq!(s.state.bundle, ".");
        // No metadata at all is no rules of the container's own.
        let bare = r#"{"ociVersion":"1","fds":["x","seccompFd"],"state":{"id":"c"}}"#;
        let Parsed::State(s) = parse(bare.as_bytes()) else {
            panic!("bare state")
        };
        assert_eq!((s.metadata.as_str(), s.seccomp_fd_index()), ("", Some(1)));
    }

    #[test]
    fn tells_a_start_from_garbage() {
        for cut in [1, 10, RUNC.len() / 2, RUNC.len() - 1] {
            assert!(
                matches!(parse(&RUNC.as_bytes()[..cut]), Parsed::Incomplete),
                "{cut}"
            );
        }
        for bad in [
            "nonsense",
            "[]",
            r#"{"fds":[],"state":{"id":"c"}}"#,
            r#"{"ociVersion":"1","fds":["seccompFd"],"state":{}}"#,
            r#"{"ociVersion":1}"#,
        ] {
            assert!(matches!(parse(bad.as_bytes()), Parsed::Invalid(_)), "{bad}");
        }
    }
}
