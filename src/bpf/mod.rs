// bpf/mod.rs: the bpf engine (issue 13, root). The policy is compiled into cgroup
// programs (codegen.rs) that the kernel runs inside bind(2) on its own copy of the
// sockaddr: nothing stops the program, nothing can be swapped after a check, and
// io_uring's binds pass the same hooks. force-bind creates a cgroup under its own
// (cgroup.rs), attaches the programs there (loader.rs), starts the child in it
// (clone3 CLONE_INTO_CGROUP, 5.7; before that it moves itself there before it
// execs) and waits. listen()'s implicit bind never reaches the bind hooks, so
// when the policy judges listen() a seccomp filter traps listen() alone and the
// notify engine judges it (with the same handler as without bpf).
//
// Hand-assembled, like the seccomp filter (filter.rs), rather than built with aya or
// libbpf-rs: the programs are a few dozen instructions of compares and stores, with
// no maps and one helper (bpf_probe_read_kernel, for IPV6_V6ONLY), generated from the rules at run time; a
// compiler toolchain (clang, BTF, an ELF loader) would add a build dependency and
// hundreds of kilobytes to carry nothing we need, and the generated instructions
// could not be compared in a golden test as directly.
//
// Bind events (-v, --json, --log, watch mode) come from separate event programs
// and a BPF ring buffer (event_programs.rs, events.rs), loaded only when someone
// will see them; they always allow, so they cannot change a verdict.
//
// Fail closed: BPF_PROG_ATTACH (not a BPF link) ties the programs to the cgroup, so
// a SIGKILLed force-bind leaves the program policed; the listen filter's listener
// closes with force-bind and trapped listens then fail.

mod btf;
mod cgroup;
mod codegen;
mod confine;
mod event_programs;
mod events;
mod insn;
#[cfg(test)]
mod interp;
mod loader;
#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::Context;
use nix::errno::Errno;

use crate::exit::Status;
use crate::filter::{Trap, Traps};
use crate::kernel::Kernel;
use crate::log::{debug, verbose, warn};
use crate::policy::Policy;
use crate::rule::PortRange;
use crate::spawn::{self, Program, RunError, SpawnError};
use cgroup::Cgroup;
use codegen::{Facts, Programs};
use insn::Insn;
use loader::{AttachType, ProgType};

/// Why the bpf engine cannot run here or cannot carry this policy out.
pub enum Error {
    /// The policy asks for something the programs cannot do: refused like a bad rule.
    Unsupported(String),
    /// This system cannot run the engine (not root, no cgroup2, an old kernel).
    Unavailable(String),
    Run(RunError),
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Run(RunError::Engine(e))
    }
}

/// The programs for `policy` on this kernel, or why the engine cannot carry it out.
pub fn compile(policy: &Policy) -> Result<Programs, Error> {
    let unsupported = |e: codegen::Unsupported| Error::Unsupported(e.0);
    // BTF is read (a few MB) only for a policy that needs it.
    let (ipv6only, refused_binds_undone) = match codegen::depends_on_ipv6only(policy)
        .map_err(unsupported)?
    {
        true => kernel_btf()
            .map_err(|why| Error::Unsupported(format!("{} ({why})", codegen::DUAL_STACK_UNSEEN)))?,
        // Not read by any program: the place does not matter.
        false => (btf::KNOWN_LAYOUT, true),
    };
    let facts = Facts {
        ephemeral_ports: ephemeral_ports(),
        ipv6only,
        refused_binds_undone,
    };
    codegen::compile(policy, &facts).map_err(unsupported)
}

/// From the kernel's BTF: where struct sock keeps sk_ipv6only, and whether a bind
/// post_bind6 refuses is undone (else not: fail closed). bpf/btf.rs. Without a BTF
/// that describes the bit, the policy is refused rather than read at a guessed
/// place: a wrong bit would take a dual-stack socket for an IPv6-only one in bind6
/// and post_bind6 alike, and nothing would notice.
fn kernel_btf() -> Result<(btf::BitPlace, bool), String> {
    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
    let blob = std::fs::read(VMLINUX).map_err(|e| format!("cannot read {VMLINUX}: {e}"))?;
    let place = btf::ipv6only_place(&blob)
        .ok_or_else(|| format!("{VMLINUX} does not describe sk_ipv6only of struct sock"))?;
    verbose!(
        "bpf engine: IPV6_V6ONLY read from bit {} of byte {} of struct sock ({VMLINUX})",
        place.bit,
        place.byte
    );
    Ok((place, btf::undoes_refused_binds(&blob).unwrap_or(false)))
}

/// net.ipv4.ip_local_port_range (it covers IPv6 too).
fn ephemeral_ports() -> PortRange {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut n = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u16>().ok());
    match (n.next(), n.next()) {
        (Some(first), Some(last)) => PortRange { first, last },
        // Unknown: every port may be given out.
        _ => PortRange {
            first: 1,
            last: u16::MAX,
        },
    }
}

/// The programs loaded and attached to a fresh cgroup.
struct Attached {
    cgroup: Cgroup,
    _programs: Vec<OwnedFd>,
    /// The event programs, when events are wanted and the kernel gives them; else
    /// why not.
    events: Result<events::Recorder, String>,
}

fn load_and_attach(programs: &Programs) -> Result<Attached, Error> {
    let parent = cgroup::own_directory().map_err(|e| Error::Unavailable(format!("{e:#}")))?;
    let cgroup = Cgroup::create(&parent).map_err(|e| Error::Unavailable(format!("{e:#}")))?;
    // The event programs' request half goes first: programs at one hook run in
    // attach order, and it must see the address before the policy rewrites it.
    let mut recorder = if crate::log::events_wanted() {
        events::Recorder::load(programs.ipv6only_read)
            .and_then(|r| r.attach_before(&cgroup.dir).map(|()| r))
    } else {
        Err("no events wanted".into())
    };
    let mut fds = Vec::new();
    let mut all: Vec<(ProgType, AttachType, &[Insn])> = vec![
        (
            ProgType::CgroupSock,
            AttachType::InetSockCreate,
            &programs.sock_create,
        ),
        (
            ProgType::CgroupSockAddr,
            AttachType::Inet4Bind,
            &programs.bind4,
        ),
        (
            ProgType::CgroupSockAddr,
            AttachType::Inet6Bind,
            &programs.bind6,
        ),
    ];
    if let Some(post_bind6) = &programs.post_bind6 {
        all.push((ProgType::CgroupSock, AttachType::Inet6PostBind, post_bind6));
    }
    for (ty, at, insns) in all {
        let name = format!("forcebind_{}", at.name());
        let fd = loader::load(ty, at, &name, insns).map_err(|e| {
            // bind6 and post_bind6 read sk_ipv6only with bpf_probe_read_kernel,
            // which a kernel may not give cgroup programs (EINVAL: unknown func),
            // nor a loader without CAP_PERFMON (EACCES: the pointer "leaks" into
            // the helper): then the policy is refused as before the read existed.
            if programs.post_bind6.is_some()
                && matches!(at, AttachType::Inet6Bind | AttachType::Inet6PostBind)
                && (e.errno == Errno::EINVAL || (e.errno == Errno::EACCES && !e.log.is_empty()))
            {
                return Error::Unsupported(format!(
                    "{} (the kernel refused the {} program that reads IPV6_V6ONLY: {})",
                    codegen::DUAL_STACK_UNSEEN,
                    at.name(),
                    e.log
                ));
            }
            Error::Unavailable(match e.errno {
                Errno::EPERM | Errno::EACCES if e.log.is_empty() => format!(
                    "cannot load a BPF program: {} (needs root: CAP_SYS_ADMIN, or CAP_BPF and CAP_NET_ADMIN)",
                    e.errno
                ),
                errno => format!("the kernel refused the {} program: {errno}: {}", at.name(), e.log),
            })
        })?;
        debug!(
            "bpf engine: {} program: {} instructions",
            at.name(),
            insns.len()
        );
        loader::attach(&cgroup.dir, &fd, at).map_err(|errno| {
            Error::Unavailable(match errno {
                Errno::EPERM => format!(
                    "cannot attach the {} program to {}: EPERM (an enclosing cgroup has a {} program attached without BPF_F_ALLOW_MULTI)",
                    at.name(),
                    cgroup.path.display(),
                    at.name()
                ),
                errno => format!("cannot attach the {} program to {}: {errno}", at.name(), cgroup.path.display()),
            })
        })?;
        fds.push(fd);
    }
    if let Ok(r) = &recorder
        && let Err(e) = r.attach_after(&cgroup.dir)
    {
        recorder = Err(e);
    }
    Ok(Attached {
        cgroup,
        _programs: fds,
        events: recorder,
    })
}

/// Runs `program` in a cgroup under the compiled `programs`. `events_required`: the
/// engine was chosen because it reports bind events (auto under -v/--json/watch), so
/// a recorder that cannot start is `Unavailable` (before the program starts, for
/// auto to take another engine) rather than a warning.
pub fn run(
    policy: &'static Policy,
    kernel: Kernel,
    program: &mut Program,
    programs: &Programs,
    events_required: bool,
) -> Result<Status, Error> {
    let judge_listen = policy.judges_listen();
    if judge_listen && let Some(missing) = kernel.notify_missing() {
        return Err(Error::Unavailable(format!(
            "this policy judges listen(), which the bpf engine does with user notification: {missing}"
        )));
    }
    let mut attached = load_and_attach(programs)?;
    let cgroup = &attached.cgroup;
    verbose!(
        "bpf engine: cgroup {}: bind4 {} and bind6 {} instructions{}; raw, ping and SCTP sockets refused{}",
        cgroup.path.display(),
        programs.bind4.len(),
        programs.bind6.len(),
        match &programs.post_bind6 {
            Some(p) => format!(", IPV6_V6ONLY read, post_bind6 {} instructions", p.len()),
            None => String::new(),
        },
        if judge_listen {
            "; listen() judged by a seccomp notify filter"
        } else {
            ""
        }
    );
    let recorder = std::mem::replace(&mut attached.events, Err(String::new()));
    let reader = match recorder.and_then(|r| r.start(policy)) {
        Ok(reader) => Some(reader),
        Err(why) => {
            if events_required && crate::log::events_wanted() {
                return Err(Error::Unavailable(format!("no bind events: {why}")));
            }
            if crate::log::events_wanted() {
                warn!(
                    "the bpf engine decides binds in the kernel and reports no bind events{}: {why}",
                    if judge_listen {
                        " (listen events only)"
                    } else {
                        ""
                    }
                );
            }
            None
        }
    };
    // Descendants that outlive their parent are reparented to us.
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
        .context("PR_SET_CHILD_SUBREAPER")?;
    // The child is in the cgroup before any instruction of the program runs:
    // started there by clone3(CLONE_INTO_CGROUP), or moving itself there first
    // (spawn::spawn_into). It shares our memory until exec, so what it does here is
    // raw syscalls on memory prepared now.
    let into = spawn::IntoCgroup {
        dir: cgroup.dir.as_raw_fd(),
        procs: cgroup.procs.as_raw_fd(),
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let confinement = confine::Confinement::new(&mountinfo);
    // The program keeps its own RLIMIT_MEMLOCK if the ring buffer needed a higher
    // one (bpf/events.rs, before 5.11).
    let memlock = events::memlock_to_restore();
    let in_child = || {
        events::restore_memlock(memlock)?;
        confinement.apply()
    };
    let status = if judge_listen {
        let setup = crate::notify::Setup {
            traps: Traps {
                trap: Trap::Notify,
                bind: false,
                listen: true,
                // IORING_OP_LISTEN's implicit bind would not be judged.
                io_uring: !policy.allow_io_uring,
                // SCTP sockets cannot be created (codegen.rs, sock_create).
                sctp_bindx: false,
            },
            in_child: &in_child,
            cgroup: Some(into),
            binds_in_kernel: true,
        };
        match crate::notify::run_with(policy, kernel, program, &setup) {
            Ok(status) => status,
            Err(crate::notify::Error::Run(e)) => return Err(Error::Run(e)),
            Err(crate::notify::Error::Unavailable(why)) => {
                return Err(Error::Unavailable(format!(
                    "listen() cannot be judged: {}",
                    why.0
                )));
            }
        }
    } else {
        let child = spawn::spawn_into(program, into, in_child)?;
        crate::exit::forward_signals_to(child.pid()).context("cannot install signal handlers")?;
        if let Some(errno) = child.exec_error() {
            return Err(Error::Run(RunError::Spawn(SpawnError::at_exec(
                program.name(),
                errno,
            ))));
        }
        crate::notify::reap(child.hand_over().pid)
    };
    // Every bind the program made is in the ring buffer: emitted before we exit.
    if let Some(reader) = reader {
        reader.finish();
    }
    drop(attached);
    Ok(status)
}

/// Whether this kernel gives bind events under this engine (-v, --json, --log,
/// watch mode): BPF ring buffers (Linux 5.8) and post-bind hooks that can name the
/// socket or the thread (bpf/events.rs). Probed once, by loading small programs, so
/// it needs root like the engine. For `auto`: when it is false and events are
/// wanted, the bpf engine runs but warns that it reports no bind events.
pub fn reports_events() -> bool {
    events::reports_events()
}

/// Whether this process could run the engine, without trying: for `auto` and -V.
pub fn missing() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    match cgroup::own_directory() {
        Err(e) => Some(format!("{e:#}")),
        Ok(dir) => {
            // access(W_OK): whether a cgroup could be created there.
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: a NUL-terminated path.
            (unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0)
                .then(|| format!("{} is not writable", dir.display()))
        }
    }
}
