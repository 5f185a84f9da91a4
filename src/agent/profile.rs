// agent/profile.rs: the seccomp profile (OCI `linux.seccomp`, which Docker's and
// Podman's `--security-opt seccomp=FILE` read too) that sends a container's binds to
// the agent. It traps what the notify engine's filter traps (filter.rs): bind,
// listen and io_uring_setup go to the agent (SCMP_ACT_NOTIFY; libseccomp adds
// socketcall(2)'s SYS_BIND and SYS_LISTEN on i386 by itself), and SCTP's
// setsockopt(SCTP_SOCKOPT_BINDX_ADD), a bind by another name, is refused. Listen is
// always trapped: the profile is one for every container, whatever its rules.
// Either alone (every other syscall allowed) or merged into a base profile, from
// which our syscalls' own rules are taken out so that only ours apply. Pure.

use serde_json::{Map, Value, json};

/// The syscalls handed to the agent.
pub const NOTIFIED: [&str; 3] = ["bind", "listen", "io_uring_setup"];

/// SOL_SCTP and SCTP_SOCKOPT_BINDX_ADD (<linux/sctp.h>), as in filter.rs.
const SOL_SCTP: u64 = 132;
const SCTP_SOCKOPT_BINDX_ADD: u64 = 100;

/// libseccomp's names of the ABIs the notify engine's filter covers on this
/// architecture (arch/).
fn architectures() -> &'static [&'static str] {
    if cfg!(target_arch = "aarch64") {
        &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    }
}

/// Our rules, appended after whatever the base has.
fn our_rules() -> Vec<Value> {
    vec![
        json!({"names": NOTIFIED, "action": "SCMP_ACT_NOTIFY"}),
        json!({
            "names": ["setsockopt"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            "args": [
                {"index": 1, "value": SOL_SCTP, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": SCTP_SOCKOPT_BINDX_ADD, "op": "SCMP_CMP_EQ"},
            ],
        }),
    ]
}

/// The profile for the agent at `socket`: `base` (a parsed profile) with our rules
/// merged in, or, without one, a profile that allows everything else.
/// `metadata`, when given, becomes the listenerMetadata.
pub fn profile(socket: &str, metadata: Option<&str>, base: Option<Value>) -> Result<Value, String> {
    let mut profile = match base {
        None => {
            let mut p = Map::new();
            p.insert("defaultAction".into(), json!("SCMP_ACT_ALLOW"));
            p.insert("architectures".into(), json!(architectures()));
            p
        }
        Some(Value::Object(base)) => base,
        Some(_) => return Err("the base profile is not a JSON object".into()),
    };
    let mut syscalls = match profile.remove("syscalls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rules)) => rules,
        Some(_) => return Err("the base profile's \"syscalls\" is not an array".into()),
    };
    for rule in &mut syscalls {
        take_out_notified(rule)?;
    }
    // A rule left with no syscall would name none (runc refuses it).
    syscalls.retain(|rule| !names_nothing(rule));
    syscalls.extend(our_rules());
    profile.insert("listenerPath".into(), json!(socket));
    match metadata {
        Some(m) => {
            profile.insert("listenerMetadata".into(), json!(m));
        }
        None => {
            profile.remove("listenerMetadata");
        }
    }
    profile.insert("syscalls".into(), Value::Array(syscalls));
    Ok(Value::Object(profile))
}

/// Removes bind, listen and io_uring_setup from one of the base's rules: whatever it
/// did with them (allowed them, refused io_uring), ours decide now. Both spellings:
/// OCI's and Docker's "names", and the "name" of Docker's older profiles.
fn take_out_notified(rule: &mut Value) -> Result<(), String> {
    let Value::Object(rule) = rule else {
        return Err("a rule of the base profile is not a JSON object".into());
    };
    if let Some(Value::Array(names)) = rule.get_mut("names") {
        names.retain(|n| !n.as_str().is_some_and(|n| NOTIFIED.contains(&n)));
    }
    if rule
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| NOTIFIED.contains(&n))
    {
        rule.remove("name");
    }
    Ok(())
}

fn names_nothing(rule: &Value) -> bool {
    let names = rule.get("names").and_then(Value::as_array);
    let name = rule.get("name").and_then(Value::as_str);
    name.is_none() && names.is_none_or(|n| n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_it_allows_everything_else() {
        let p = profile("/run/fb.sock", Some("-b 127.0.0.2"), None).unwrap();
        let want = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": architectures(),
            "listenerPath": "/run/fb.sock",
            "listenerMetadata": "-b 127.0.0.2",
            "syscalls": our_rules(),
        });
        assert_eq!(p, want);
        assert!(
            profile("/s", None, None)
                .unwrap()
                .get("listenerMetadata")
                .is_none()
        );
    }

    #[test]
    fn merged_ours_replace_the_bases_rules_for_our_syscalls() {
        let base = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
            "listenerMetadata": "stale",
            "syscalls": [
                {"names": ["accept", "bind", "listen", "read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["io_uring_setup"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"name": "bind", "action": "SCMP_ACT_ALLOW"},
                {"name": "write", "action": "SCMP_ACT_ALLOW"},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
            ],
        });
        let p = profile("/s", None, Some(base)).unwrap();
        let mut syscalls = vec![
            json!({"names": ["accept", "read"], "action": "SCMP_ACT_ALLOW"}),
            json!({"name": "write", "action": "SCMP_ACT_ALLOW"}),
            json!({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}}),
        ];
        syscalls.extend(our_rules());
        let want = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
            "listenerPath": "/s",
            "syscalls": syscalls,
        });
        assert_eq!(p, want);
    }

    #[test]
    fn a_base_that_is_no_profile_is_refused() {
        for base in [json!([]), json!({"syscalls": {}}), json!({"syscalls": [3]})] {
            assert!(profile("/s", None, Some(base.clone())).is_err(), "{base}");
        }
        let empty = profile("/s", None, Some(json!({"syscalls": null}))).unwrap();
        assert_eq!(empty["syscalls"], Value::Array(our_rules()));
    }
}
