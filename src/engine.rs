// engine.rs: which engine runs the program. `auto` decides on the kernel's facts
// (kernel.rs, asked once at start) and says why it chose what it chose.

use crate::arch::{Arch, Native};
use crate::cli::EngineChoice;
use crate::exit::Status;
use crate::kernel::Kernel;
use crate::log::{verbose, warn};
use crate::policy::Policy;
use crate::spawn::{Program, RunError};
use crate::{bpf, notify, ptrace};

/// Runs the program with the chosen engine.
pub fn run(
    choice: EngineChoice,
    kernel: Kernel,
    policy: &'static Policy,
    program: &mut Program,
) -> Result<Status, RunError> {
    match choice {
        EngineChoice::Bpf => run_bpf(kernel, policy, program),
        EngineChoice::Ptrace => {
            verbose!("engine: ptrace (requested)");
            ptrace::run(policy, kernel, program)
        }
        EngineChoice::Notify => {
            if let Some(missing) = kernel.notify_missing() {
                return Err(cannot_notify(missing));
            }
            verbose!("engine: notify (requested)");
            match notify::run(policy, kernel, program) {
                Ok(status) => Ok(status),
                Err(notify::Error::Run(e)) => Err(e),
                Err(notify::Error::Unavailable(why)) => Err(cannot_notify(&why.0)),
            }
        }
        EngineChoice::Auto => run_auto(kernel, policy, program),
    }
}

/// What `auto` decides on, gathered once at start: the kernel's facts and what the
/// bpf engine would make of this policy here.
#[derive(Debug, Clone)]
struct Facts {
    kernel: Kernel,
    /// Why this process cannot run the bpf engine (not root, no writable cgroup2):
    /// `bpf::missing`.
    bpf_missing: Option<String>,
    /// Why the bpf engine refuses this policy (`bpf::compile`), if it does.
    bpf_refuses: Option<String>,
    /// Whether anyone will see bind events (-v, --json, watch mode).
    events_wanted: bool,
    /// `bpf::reports_events`.
    bpf_events: bool,
    /// Whether the policy judges listen()'s implicit bind, which the bpf engine does
    /// with a listen-only notify filter.
    judges_listen: bool,
}

/// What `auto` takes, and why, in the words of the -v line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    /// The bpf engine, for these reasons.
    Bpf(String),
    /// The notify engine, because bpf cannot run or carry the policy out.
    Notify { not_bpf: String },
    /// The ptrace engine: the kernel lacks what notify needs. `warn`: it has user
    /// notification but no pidfd_getfd, which a user would not expect.
    Ptrace { missing: &'static str, warn: bool },
}

/// `auto`'s choice, a function of the facts alone: bpf when it can carry out the
/// whole policy, else notify, else ptrace.
fn choose(facts: &Facts) -> Pick {
    let notify = || {
        facts.kernel.notify_missing().map(|missing| Pick::Ptrace {
            missing,
            warn: facts.kernel.user_notif,
        })
    };
    let not_bpf = if let Some(missing) = &facts.bpf_missing {
        missing.clone()
    } else if !facts.kernel.clone_into_cgroup {
        // The engine could start the child without it (which costs every start an
        // RCU grace period), but kernels without it (before 5.7) are also those whose
        // cgroup programs we do not test against: see Kernel::clone_into_cgroup.
        "no clone3 CLONE_INTO_CGROUP (Linux 5.7)".to_string()
    } else if let Some(refused) = &facts.bpf_refuses {
        let refused = refused.trim_end_matches(" (use --engine notify)");
        format!("the policy does not compile: {refused}")
    } else if facts.events_wanted && !facts.bpf_events {
        "it reports no bind events, and -v/--json/watch want them".to_string()
    } else if facts.judges_listen
        && let Some(missing) = facts.kernel.notify_missing()
    {
        format!("the policy judges listen(), which needs user notification: {missing}")
    } else {
        return Pick::Bpf(format!(
            "root, a writable cgroup2, clone3 CLONE_INTO_CGROUP, the policy compiles{}",
            if facts.judges_listen {
                ", listen() judged by user notification"
            } else {
                ""
            }
        ));
    };
    notify().unwrap_or(Pick::Notify { not_bpf })
}

/// `--engine auto` (the default).
fn run_auto(
    kernel: Kernel,
    policy: &'static Policy,
    program: &mut Program,
) -> Result<Status, RunError> {
    let bpf_missing = bpf::missing();
    // Compiled only where the engine could run: the reason shown is the first that
    // holds, and compiling reads ip_local_port_range.
    let (programs, bpf_refuses) = if bpf_missing.is_none() && kernel.clone_into_cgroup {
        match bpf::compile(policy) {
            Ok(programs) => (Some(programs), None),
            Err(bpf::Error::Unsupported(why) | bpf::Error::Unavailable(why)) => (None, Some(why)),
            Err(bpf::Error::Run(e)) => return Err(e),
        }
    } else {
        (None, None)
    };
    let events_wanted = crate::log::events_wanted();
    let facts = Facts {
        kernel,
        bpf_missing,
        bpf_refuses,
        events_wanted,
        // Probed by loading small programs: only when it can matter.
        bpf_events: events_wanted && programs.is_some() && bpf::reports_events(),
        judges_listen: policy.judges_listen(),
    };
    let not_bpf = match choose(&facts) {
        Pick::Bpf(why) => match programs {
            Some(programs) => {
                verbose!("engine: bpf ({why})");
                match bpf::run(policy, kernel, program, &programs, facts.events_wanted) {
                    Ok(status) => return Ok(status),
                    Err(bpf::Error::Run(e)) => return Err(e),
                    // Loading or attaching failed (a verifier refusal, EPERM under a
                    // parent's program attached without ALLOW_MULTI) before the
                    // program started: notify carries the same policy out.
                    Err(bpf::Error::Unsupported(why) | bpf::Error::Unavailable(why)) => {
                        format!("it could not start: {why}")
                    }
                }
            }
            // choose() takes bpf only where it compiled: not reached.
            None => "the policy was not compiled".to_string(),
        },
        Pick::Ptrace {
            missing,
            warn: true,
        } => {
            // Notification without pidfd_getfd would mean patching the target's
            // memory, which a second thread can race: use ptrace, and say so.
            warn!("{missing}: using the ptrace engine, which a multi-threaded program can race");
            return ptrace::run(policy, kernel, program);
        }
        Pick::Ptrace {
            missing,
            warn: false,
        } => {
            verbose!("engine: ptrace ({missing})");
            return ptrace::run(policy, kernel, program);
        }
        Pick::Notify { not_bpf } => not_bpf,
    };
    // Only bpf failing to start reaches here with notify missing (choose() takes
    // ptrace for that otherwise).
    if let Some(missing) = kernel.notify_missing() {
        verbose!("engine: ptrace (bpf: {not_bpf}; {missing})");
        return ptrace::run(policy, kernel, program);
    }
    verbose!("engine: notify (bpf: {not_bpf})");
    match notify::run(policy, kernel, program) {
        Ok(status) => Ok(status),
        Err(notify::Error::Run(e)) => Err(e),
        Err(notify::Error::Unavailable(why)) => {
            warn!(
                "notify engine unavailable ({}): using the ptrace engine",
                why.0
            );
            ptrace::run(policy, kernel, program)
        }
    }
}

/// `--engine bpf`: a policy the programs cannot carry out is refused (exit 2), a
/// system that cannot run them is an error; never another engine in its place.
fn run_bpf(
    kernel: Kernel,
    policy: &'static Policy,
    program: &mut Program,
) -> Result<Status, RunError> {
    let refused = |why| RunError::Refused(format!("--engine bpf: {why}"));
    let cannot = |why| RunError::Engine(anyhow::anyhow!("the bpf engine cannot run here: {why}"));
    let programs = match bpf::compile(policy) {
        Ok(programs) => programs,
        Err(bpf::Error::Unsupported(why)) => return Err(refused(why)),
        Err(bpf::Error::Unavailable(why)) => return Err(cannot(why)),
        Err(bpf::Error::Run(e)) => return Err(e),
    };
    match bpf::run(policy, kernel, program, &programs, false) {
        Ok(status) => Ok(status),
        Err(bpf::Error::Unsupported(why)) => Err(refused(why)),
        Err(bpf::Error::Unavailable(why)) => Err(cannot(why)),
        Err(bpf::Error::Run(e)) => Err(e),
    }
}

/// `--engine notify` on a kernel or in a place where it cannot run.
fn cannot_notify(why: &str) -> RunError {
    RunError::Engine(anyhow::anyhow!(
        "the notify engine cannot run here: {why}; use -p"
    ))
}

/// For -V: the engines this kernel and architecture support.
pub fn describe(kernel: Kernel) -> String {
    let notify = match kernel.notify_missing() {
        None => "notify (seccomp user notification; NOTIF_ADDFD is checked at start)".to_string(),
        Some(missing) => format!("notify unavailable: {missing}"),
    };
    let bpf = match bpf::missing() {
        None if kernel.clone_into_cgroup => format!(
            "bpf (cgroup bind4/bind6 programs; auto takes it for a policy it compiles{})",
            if bpf::reports_events() {
                ""
            } else {
                ", without -v/--json/watch: it reports no bind events"
            }
        ),
        None => "bpf (cgroup bind4/bind6 programs, --engine bpf; auto does not take it: no clone3 CLONE_INTO_CGROUP (Linux 5.7))".to_string(),
        Some(missing) => format!("bpf unavailable: {missing}"),
    };
    format!(
        "engines: {notify}; ptrace ({}, seccomp RET_TRACE); {bpf}",
        <Native as Arch>::NAME
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6.x kernel, root with a writable cgroup2, a policy bpf compiles, no events.
    fn facts() -> Facts {
        Facts {
            kernel: Kernel {
                user_notif: true,
                pidfd_getfd: true,
                wait_killable_recv: true,
                clone_into_cgroup: true,
            },
            bpf_missing: None,
            bpf_refuses: None,
            events_wanted: false,
            bpf_events: false,
            judges_listen: false,
        }
    }

    fn not_bpf(why: &str) -> Pick {
        Pick::Notify {
            not_bpf: why.to_string(),
        }
    }

    #[test]
    fn takes_bpf_only_when_it_carries_out_the_whole_policy() {
        let all = facts();
        let bpf = "root, a writable cgroup2, clone3 CLONE_INTO_CGROUP, the policy compiles";
        let v418 = Kernel {
            user_notif: false,
            pidfd_getfd: false,
            wait_killable_recv: false,
            clone_into_cgroup: false,
        };
        let v54 = Kernel {
            user_notif: true,
            clone_into_cgroup: false,
            ..v418
        };
        let cases: Vec<(Facts, Pick)> = vec![
            (all.clone(), Pick::Bpf(bpf.into())),
            (
                Facts {
                    judges_listen: true,
                    ..all.clone()
                },
                Pick::Bpf(format!("{bpf}, listen() judged by user notification")),
            ),
            (
                Facts {
                    events_wanted: true,
                    bpf_events: true,
                    ..all.clone()
                },
                Pick::Bpf(bpf.into()),
            ),
            (
                Facts {
                    bpf_missing: Some("not root".into()),
                    ..all.clone()
                },
                not_bpf("not root"),
            ),
            (
                Facts {
                    kernel: Kernel {
                        clone_into_cgroup: false,
                        ..all.kernel
                    },
                    ..all.clone()
                },
                not_bpf("no clone3 CLONE_INTO_CGROUP (Linux 5.7)"),
            ),
            (
                Facts {
                    bpf_refuses: Some("rule 'x': no (use --engine notify)".into()),
                    ..all.clone()
                },
                not_bpf("the policy does not compile: rule 'x': no"),
            ),
            (
                Facts {
                    events_wanted: true,
                    ..all.clone()
                },
                not_bpf("it reports no bind events, and -v/--json/watch want them"),
            ),
            // clone3 CLONE_INTO_CGROUP without pidfd_getfd (a seccomp profile can
            // hide one and not the other): bpf would need notify for listen(), so
            // neither carries the policy out, and ptrace does.
            (
                Facts {
                    kernel: Kernel {
                        pidfd_getfd: false,
                        ..all.kernel
                    },
                    judges_listen: true,
                    ..all.clone()
                },
                Pick::Ptrace {
                    missing: "no pidfd_getfd (Linux 5.6)",
                    warn: true,
                },
            ),
            // ... but without listen() to judge, bpf carries the policy out alone.
            (
                Facts {
                    kernel: Kernel {
                        pidfd_getfd: false,
                        ..all.kernel
                    },
                    ..all.clone()
                },
                Pick::Bpf(bpf.into()),
            ),
            (
                Facts {
                    kernel: v54,
                    ..all.clone()
                },
                Pick::Ptrace {
                    missing: "no pidfd_getfd (Linux 5.6)",
                    warn: true,
                },
            ),
            // 4.19 (and `oldkernel --as 4.19`, which lets bpf(2) through): root and
            // cgroup2 are not enough.
            (
                Facts {
                    kernel: v418,
                    ..all.clone()
                },
                Pick::Ptrace {
                    missing: "no seccomp user notification (Linux 5.0)",
                    warn: false,
                },
            ),
        ];
        for (facts, pick) in cases {
            assert_eq!(choose(&facts), pick, "{facts:?}");
        }
    }

    #[test]
    fn describe_says_whether_auto_takes_bpf() {
        let kernel = Kernel {
            clone_into_cgroup: false,
            ..facts().kernel
        };
        let line = describe(kernel);
        assert!(
            line.contains("bpf unavailable")
                || line.contains("auto does not take it: no clone3 CLONE_INTO_CGROUP"),
            "{line}"
        );
    }
}
