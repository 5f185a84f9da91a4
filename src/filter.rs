// filter.rs: the seccomp BPF program. Only the syscalls the policy needs are trapped
// (bind; listen when the policy needs it; io_uring_setup to refuse it), so everything
// else runs at full speed, paying just a few instructions. One section per syscall
// ABI, as in proot: the native one, the 32-bit compat one (i386, AArch32), x32.
//
// Written by hand rather than with seccompiler's SeccompFilter: that compiles one
// action for all matched syscalls and one architecture per program, while we need a
// different RET_TRACE code per syscall, sections for the foreign ABIs (i386, x32,
// AArch32) and, for the notify engine, SECCOMP_RET_USER_NOTIF. seccompiler still
// provides the instruction type and the action encoding.

use seccompiler::{SeccompAction, sock_filter};

use crate::arch::{Abi, AbiKind, Arch};
pub use crate::event::Call;

/// Which trapped call stopped, in which ABI, and whether through socketcall(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trapped {
    pub call: Call,
    pub abi: AbiKind,
    /// The arguments are a u32 array in the caller's memory (socketcall).
    pub via_socketcall: bool,
}

impl Trapped {
    /// The SECCOMP_RET_TRACE data for this trap: PTRACE_GETEVENTMSG returns it, so
    /// the tracer knows what stopped without looking at registers.
    pub fn code(self) -> u16 {
        let call = match self.call {
            Call::Bind => 1,
            Call::Listen => 2,
            Call::IoUringSetup => 3,
        };
        call | (self.via_socketcall as u16) << 4 | ((self.abi == AbiKind::Compat) as u16) << 5
    }

    pub fn from_code(data: u64) -> Option<Trapped> {
        let call = match data & 0xf {
            1 => Call::Bind,
            2 => Call::Listen,
            3 => Call::IoUringSetup,
            _ => return None,
        };
        let abi = if data & 1 << 5 != 0 {
            AbiKind::Compat
        } else {
            AbiKind::Native
        };
        (data < 1 << 6).then_some(Trapped {
            call,
            abi,
            via_socketcall: data & 1 << 4 != 0,
        })
    }

    /// What a user notification is about, from its seccomp_data: the notify
    /// engine's counterpart of `from_code`.
    pub fn classify<A: Arch>(arch: u32, nr: u32, arg0: u64) -> Option<Trapped> {
        let abi = std::iter::once(&A::NATIVE)
            .chain(A::FOREIGN)
            .find(|abi| abi.audit_arch == arch && abi.kind != AbiKind::Denied)?;
        let direct = |call| {
            Some(Trapped {
                call,
                abi: abi.kind,
                via_socketcall: false,
            })
        };
        let nr = nr.checked_sub(abi.nr_base)?;
        match nr {
            n if n == abi.bind => direct(Call::Bind),
            n if n == abi.listen => direct(Call::Listen),
            n if n == abi.io_uring_setup => direct(Call::IoUringSetup),
            n if Some(n) == abi.socketcall => {
                let call = match arg0 as u32 {
                    SYS_BIND => Call::Bind,
                    SYS_LISTEN => Call::Listen,
                    _ => return None,
                };
                Some(Trapped {
                    call,
                    abi: abi.kind,
                    via_socketcall: true,
                })
            }
            _ => None,
        }
    }
}

/// Whether `nr` is a syscall the filter traps in some ABI of `A` (taken as is, and
/// with x32's bit), directly or through socketcall.
pub fn traps_number<A: Arch>(nr: u32) -> bool {
    std::iter::once(&A::NATIVE).chain(A::FOREIGN).any(|abi| {
        [
            Some(abi.bind),
            Some(abi.listen),
            Some(abi.io_uring_setup),
            abi.socketcall,
        ]
        .into_iter()
        .flatten()
        .any(|n| n + abi.nr_base == nr)
    })
}

/// How trapped syscalls reach the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// SECCOMP_RET_TRACE with the call's code: a ptrace seccomp stop.
    Trace,
    /// SECCOMP_RET_USER_NOTIF: a notification on the listener fd.
    Notify,
}

/// What the filter does besides trapping bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traps {
    pub trap: Trap,
    /// Trap bind(); not under the bpf engine, whose cgroup programs judge binds in
    /// the kernel (a foreign ABI's bind is still refused).
    pub bind: bool,
    /// Trap listen(): for -L, and for the implicit bind of an unbound socket.
    pub listen: bool,
    /// Trap io_uring_setup() to refuse it (the default).
    pub io_uring: bool,
    /// Refuse SCTP's setsockopt(SCTP_SOCKOPT_BINDX_ADD), a bind by another name.
    pub sctp_bindx: bool,
}

impl Traps {
    /// The ptrace engine is only as good as its hold on every process: a child made
    /// with CLONE_UNTRACED would escape it (and could be traced by the program
    /// itself, whose tracer then answers our RET_TRACE), and a listener filter of
    /// the program's own would outrank RET_TRACE. So those are refused: clone with
    /// CLONE_UNTRACED (EPERM), clone3 whose flags a filter cannot see (ENOSYS, and
    /// libc falls back to clone), and a new seccomp listener (EBUSY, as the kernel
    /// answers when one exists). The notify engine needs none of this: its filter
    /// holds every descendant, and the kernel allows one listener.
    fn guards_the_tracer(self) -> bool {
        self.trap == Trap::Trace
    }
}

impl Traps {
    /// What `policy` needs trapped, delivered as `trap`.
    pub fn for_policy(policy: &crate::policy::Policy, trap: Trap) -> Traps {
        Traps {
            trap,
            bind: true,
            // -L, the implicit bind of listen(), a port-0 socket's listen judged
            // (policy.rs), and watching (no rule: every bind and listen is shown).
            listen: policy.judges_listen() || policy.rules.is_empty(),
            io_uring: !policy.allow_io_uring,
            // With no rule force-bind only watches; a bind by another name is still a
            // bind the policy cannot see, so any rule refuses it.
            sctp_bindx: !policy.rules.is_empty(),
        }
    }
}

const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// SECCOMP_RET_KILL_THREAD (0, "SECCOMP_RET_KILL" before 4.14): understood by every
/// kernel with seccomp filters, unlike RET_KILL_PROCESS.
const RET_KILL: u32 = 0;

// offsetof(struct seccomp_data, ...)
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// Low 32 bits of args[i] (little-endian: the first word).
const fn data_arg_low(i: u32) -> u32 {
    16 + 8 * i
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// socketcall(2) call numbers (<linux/net.h>), from arch/'s checked table
/// (tests/syscall_tables.rs); named here because they are match patterns.
const SYS_BIND: u32 = crate::arch::SOCKETCALL.bind;
const SYS_LISTEN: u32 = crate::arch::SOCKETCALL.listen;
/// SOL_SCTP and SCTP_SOCKOPT_BINDX_ADD (<linux/sctp.h>).
const SOL_SCTP: u32 = 132;
const SCTP_SOCKOPT_BINDX_ADD: u32 = 100;
const CLONE_UNTRACED: u32 = libc::CLONE_UNTRACED as u32;
const SECCOMP_SET_MODE_FILTER: u32 = libc::SECCOMP_SET_MODE_FILTER;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;

fn ret_trap(traps: Traps, trapped: Trapped) -> u32 {
    match traps.trap {
        Trap::Trace => SeccompAction::Trace(trapped.code() as u32).into(),
        Trap::Notify => SECCOMP_RET_USER_NOTIF,
    }
}

fn ret_allow() -> u32 {
    SeccompAction::Allow.into()
}

fn ret_errno(errno: i32) -> u32 {
    SeccompAction::Errno(errno as u32).into()
}

/// A forward-only BPF assembler with named labels, resolved at the end.
struct Asm {
    insns: Vec<(sock_filter, Option<(String, String)>)>,
    labels: Vec<(String, usize)>,
}

impl Asm {
    fn new() -> Self {
        Asm {
            insns: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn op(&mut self, code: u16, k: u32) {
        self.insns.push((
            sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            None,
        ));
    }
    fn ld(&mut self, offset: u32) {
        self.op(LD_W_ABS, offset);
    }
    fn ret(&mut self, action: u32) {
        self.op(RET_K, action);
    }
    /// Jump to `jt` if the test holds, else to `jf` ("" = the next instruction).
    fn jump(&mut self, code: u16, k: u32, jt: &str, jf: &str) {
        self.insns.push((
            sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Some((jt.to_string(), jf.to_string())),
        ));
    }
    fn label(&mut self, name: &str) {
        assert!(
            self.labels.iter().all(|(n, _)| n != name),
            "label {name} defined twice"
        );
        self.labels.push((name.to_string(), self.insns.len()));
    }
    fn finish(self) -> Vec<sock_filter> {
        let find = |name: &str, at: usize| -> u8 {
            if name.is_empty() {
                return 0;
            }
            let target = self
                .labels
                .iter()
                .find(|(n, _)| n == name)
                .expect("undefined label")
                .1;
            u8::try_from(target - at - 1).expect("jump too long")
        };
        self.insns
            .iter()
            .map(|(insn, _)| insn)
            .zip(self.insns.iter().map(|(_, j)| j))
            .enumerate()
            .map(|(at, (insn, jumps))| match jumps {
                Some((jt, jf)) => sock_filter {
                    jt: find(jt, at),
                    jf: find(jf, at),
                    ..insn.clone()
                },
                None => insn.clone(),
            })
            .collect()
    }
}

/// The whole program for architecture `A`: a dispatch on seccomp_data.arch, then one
/// section per ABI. The native section comes first and is the shortest path, since
/// every syscall of the program runs through it.
pub fn build<A: Arch>(traps: Traps) -> Vec<sock_filter> {
    let abis: Vec<&Abi> = std::iter::once(&A::NATIVE).chain(A::FOREIGN).collect();
    let mut a = Asm::new();
    a.ld(DATA_ARCH);
    let mut arches: Vec<u32> = Vec::new();
    for abi in &abis {
        if !arches.contains(&abi.audit_arch) {
            arches.push(abi.audit_arch);
            a.jump(
                JEQ_K,
                abi.audit_arch,
                &format!("arch_{:x}", abi.audit_arch),
                "",
            );
        }
    }
    // An architecture this process cannot have: nothing sensible to allow.
    a.ret(RET_KILL);

    for arch in arches {
        a.label(&format!("arch_{arch:x}"));
        a.ld(DATA_NR);
        // ABIs sharing an arch (x86_64 and x32) are told apart by number range,
        // highest base first.
        let mut same: Vec<&&Abi> = abis.iter().filter(|abi| abi.audit_arch == arch).collect();
        same.sort_by_key(|abi| std::cmp::Reverse(abi.nr_base));
        for abi in &same {
            if abi.nr_base > 0 {
                a.jump(JGE_K, abi.nr_base, &format!("abi_{}", abi.name), "");
            }
        }
        for abi in same.iter().rev() {
            if abi.nr_base > 0 {
                a.label(&format!("abi_{}", abi.name));
            }
            section(&mut a, abi, traps);
        }
    }
    a.label("deny_bind");
    a.ret(ret_errno(libc::EPERM));
    a.label("enosys");
    a.ret(ret_errno(libc::ENOSYS));
    if traps.guards_the_tracer() {
        a.label("ebusy");
        a.ret(ret_errno(libc::EBUSY));
    }
    a.finish()
}

/// One ABI's checks, entered with the syscall number in the accumulator.
fn section(a: &mut Asm, abi: &Abi, traps: Traps) {
    let n = abi.name;
    let at = |what: &str| format!("{n}_{what}");
    let nr = |x: u32| abi.nr_base + x;
    let trap = |call, via_socketcall| {
        ret_trap(
            traps,
            Trapped {
                call,
                abi: abi.kind,
                via_socketcall,
            },
        )
    };
    let denied = abi.kind == AbiKind::Denied;

    if traps.bind || denied {
        a.jump(
            JEQ_K,
            nr(abi.bind),
            &if denied {
                "deny_bind".into()
            } else {
                at("bind")
            },
            "",
        );
    }
    if traps.listen {
        a.jump(
            JEQ_K,
            nr(abi.listen),
            &if denied {
                "deny_bind".into()
            } else {
                at("listen")
            },
            "",
        );
    }
    if traps.io_uring {
        a.jump(
            JEQ_K,
            nr(abi.io_uring_setup),
            &if denied {
                "enosys".into()
            } else {
                at("io_uring")
            },
            "",
        );
    }
    if traps.sctp_bindx {
        a.jump(JEQ_K, nr(abi.setsockopt), &at("setsockopt"), "");
    }
    if let Some(socketcall) = abi.socketcall {
        a.jump(JEQ_K, nr(socketcall), &at("socketcall"), "");
    }
    if traps.guards_the_tracer() {
        a.jump(JEQ_K, nr(abi.clone), &at("clone"), "");
        a.jump(JEQ_K, nr(abi.clone3), "enosys", "");
        a.jump(JEQ_K, nr(abi.seccomp), &at("seccomp"), "");
    }
    a.ret(ret_allow());
    if !denied {
        if traps.bind {
            a.label(&at("bind"));
            a.ret(trap(Call::Bind, false));
        }
        if traps.listen {
            a.label(&at("listen"));
            a.ret(trap(Call::Listen, false));
        }
        if traps.io_uring {
            a.label(&at("io_uring"));
            a.ret(trap(Call::IoUringSetup, false));
        }
    }
    if traps.sctp_bindx {
        // setsockopt(fd, SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD, ...): refused outright.
        a.label(&at("setsockopt"));
        a.ld(data_arg_low(1));
        a.jump(JEQ_K, SOL_SCTP, "", &at("allow"));
        a.ld(data_arg_low(2));
        a.jump(JEQ_K, SCTP_SOCKOPT_BINDX_ADD, "deny_bind", &at("allow"));
    }
    if abi.socketcall.is_some() {
        a.label(&at("socketcall"));
        a.ld(data_arg_low(0));
        if traps.bind || denied {
            a.jump(JEQ_K, SYS_BIND, &at("socketcall_bind"), "");
        }
        if traps.listen {
            a.jump(JEQ_K, SYS_LISTEN, &at("socketcall_listen"), "");
        }
        a.ret(ret_allow());
        if traps.bind || denied {
            a.label(&at("socketcall_bind"));
            a.ret(if denied {
                ret_errno(libc::EPERM)
            } else {
                trap(Call::Bind, true)
            });
        }
        if traps.listen {
            a.label(&at("socketcall_listen"));
            a.ret(if denied {
                ret_errno(libc::EPERM)
            } else {
                trap(Call::Listen, true)
            });
        }
    }
    if traps.guards_the_tracer() {
        a.label(&at("clone"));
        a.ld(data_arg_low(0));
        a.jump(JSET_K, CLONE_UNTRACED, "deny_bind", &at("allow"));
        a.label(&at("seccomp"));
        a.ld(data_arg_low(0));
        a.jump(JEQ_K, SECCOMP_SET_MODE_FILTER, "", &at("allow"));
        a.ld(data_arg_low(1));
        a.jump(
            JSET_K,
            SECCOMP_FILTER_FLAG_NEW_LISTENER,
            "ebusy",
            &at("allow"),
        );
    }
    a.label(&at("allow"));
    a.ret(ret_allow());
}

/// A program that RET_TRACEs syscall `nr` of the native ABI and allows everything
/// else: for probing how the kernel orders seccomp and syscall stops.
pub fn trace_only<A: Arch>(nr: u32) -> Vec<sock_filter> {
    let mut a = Asm::new();
    a.ld(DATA_ARCH);
    a.jump(JEQ_K, A::NATIVE.audit_arch, "", "allow");
    a.ld(DATA_NR);
    a.jump(JEQ_K, nr, "", "allow");
    a.ret(SeccompAction::Trace(0).into());
    a.label("allow");
    a.ret(ret_allow());
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::Aarch64;
    use crate::arch::x86_64::X86_64;
    use crate::arch::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};

    /// A classic-BPF interpreter for the few instructions we emit, to check what the
    /// program does, not only what it is.
    fn run(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 3]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        for _ in 0..prog.len() {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    acc =
                        u32::from_ne_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap())
                }
                JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                JSET_K => pc += if acc & i.k != 0 { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("fell off the end of the program")
    }

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0000 | 1;
    const ENOSYS: u32 = 0x0005_0000 | 38;
    const EBUSY: u32 = 0x0005_0000 | 16;
    fn trace(call: Call, abi: AbiKind, via_socketcall: bool) -> u32 {
        0x7ff0_0000
            | Trapped {
                call,
                abi,
                via_socketcall,
            }
            .code() as u32
    }
    const ALL: Traps = Traps {
        trap: Trap::Trace,
        bind: true,
        listen: true,
        io_uring: true,
        sctp_bindx: true,
    };

    #[test]
    fn x86_64_behaviour() {
        use AbiKind::*;
        use Call::*;
        let p = build::<X86_64>(ALL);
        let x32 = 0x4000_0000;
        let cases = [
            (49, AUDIT_ARCH_X86_64, [0, 0, 0], trace(Bind, Native, false)),
            (
                50,
                AUDIT_ARCH_X86_64,
                [0, 0, 0],
                trace(Listen, Native, false),
            ),
            (
                425,
                AUDIT_ARCH_X86_64,
                [0, 0, 0],
                trace(IoUringSetup, Native, false),
            ),
            (54, AUDIT_ARCH_X86_64, [3, 132, 100], EPERM),
            (54, AUDIT_ARCH_X86_64, [3, 132, 101], ALLOW),
            (54, AUDIT_ARCH_X86_64, [3, 1, 100], ALLOW),
            (110, AUDIT_ARCH_X86_64, [0, 0, 0], ALLOW),
            (x32 | 49, AUDIT_ARCH_X86_64, [0, 0, 0], EPERM),
            (x32 | 50, AUDIT_ARCH_X86_64, [0, 0, 0], EPERM),
            (x32 | 425, AUDIT_ARCH_X86_64, [0, 0, 0], ENOSYS),
            (x32 | 541, AUDIT_ARCH_X86_64, [3, 132, 100], EPERM),
            (x32 | 1, AUDIT_ARCH_X86_64, [0, 0, 0], ALLOW),
            (361, AUDIT_ARCH_I386, [0, 0, 0], trace(Bind, Compat, false)),
            (
                363,
                AUDIT_ARCH_I386,
                [0, 0, 0],
                trace(Listen, Compat, false),
            ),
            (
                425,
                AUDIT_ARCH_I386,
                [0, 0, 0],
                trace(IoUringSetup, Compat, false),
            ),
            (366, AUDIT_ARCH_I386, [3, 132, 100], EPERM),
            (102, AUDIT_ARCH_I386, [2, 0, 0], trace(Bind, Compat, true)),
            (
                102,
                AUDIT_ARCH_I386,
                [0xffff_ffff_0000_0002, 0, 0],
                trace(Bind, Compat, true),
            ),
            (102, AUDIT_ARCH_I386, [4, 0, 0], trace(Listen, Compat, true)),
            (102, AUDIT_ARCH_I386, [3, 0, 0], ALLOW),
            (49, AUDIT_ARCH_I386, [0, 0, 0], ALLOW),
            (49, AUDIT_ARCH_AARCH64, [0, 0, 0], 0),
            // What keeps every process in the tracer's hands (ptrace engine only).
            (56, AUDIT_ARCH_X86_64, [0x0080_0000 | 17, 0, 0], EPERM),
            (56, AUDIT_ARCH_X86_64, [17, 0, 0], ALLOW),
            (435, AUDIT_ARCH_X86_64, [0, 0, 0], ENOSYS),
            (317, AUDIT_ARCH_X86_64, [1, 8, 0], EBUSY),
            (317, AUDIT_ARCH_X86_64, [1, 0, 0], ALLOW),
            (317, AUDIT_ARCH_X86_64, [0, 8, 0], ALLOW),
            (120, AUDIT_ARCH_I386, [0x0080_0000, 0, 0], EPERM),
            (354, AUDIT_ARCH_I386, [1, 8, 0], EBUSY),
            (x32 | 435, AUDIT_ARCH_X86_64, [0, 0, 0], ENOSYS),
        ];
        for (nr, arch, args, want) in cases {
            assert_eq!(
                run(&p, nr, arch, args),
                want,
                "nr {nr:#x} arch {arch:#x} args {args:x?}"
            );
        }
        let p = build::<X86_64>(Traps {
            trap: Trap::Trace,
            bind: true,
            listen: false,
            io_uring: false,
            sctp_bindx: false,
        });
        assert_eq!(run(&p, 50, AUDIT_ARCH_X86_64, [0; 3]), ALLOW);
        assert_eq!(run(&p, 425, AUDIT_ARCH_X86_64, [0; 3]), ALLOW);
        assert_eq!(run(&p, 54, AUDIT_ARCH_X86_64, [3, 132, 100]), ALLOW);
        assert_eq!(run(&p, 102, AUDIT_ARCH_I386, [4, 0, 0]), ALLOW);
        assert_eq!(
            run(&p, 49, AUDIT_ARCH_X86_64, [0; 3]),
            trace(Bind, Native, false)
        );
        let p = build::<X86_64>(Traps {
            trap: Trap::Notify,
            bind: true,
            ..ALL
        });
        // The notify engine needs no guards: clone3 and listeners are left alone.
        assert_eq!(run(&p, 435, AUDIT_ARCH_X86_64, [0; 3]), ALLOW);
        assert_eq!(run(&p, 56, AUDIT_ARCH_X86_64, [0x0080_0000, 0, 0]), ALLOW);
        for (nr, arch, arg0) in [
            (49, AUDIT_ARCH_X86_64, 0),
            (50, AUDIT_ARCH_X86_64, 0),
            (102, AUDIT_ARCH_I386, 2),
        ] {
            assert_eq!(run(&p, nr, arch, [arg0, 0, 0]), SECCOMP_RET_USER_NOTIF);
        }
    }

    #[test]
    fn aarch64_behaviour() {
        use AbiKind::*;
        let p = build::<Aarch64>(Traps {
            listen: false,
            ..ALL
        });
        let cases = [
            (200, AUDIT_ARCH_AARCH64, trace(Call::Bind, Native, false)),
            (201, AUDIT_ARCH_AARCH64, ALLOW),
            (282, AUDIT_ARCH_ARM, trace(Call::Bind, Compat, false)),
            (
                425,
                AUDIT_ARCH_ARM,
                trace(Call::IoUringSetup, Compat, false),
            ),
            (200, AUDIT_ARCH_ARM, ALLOW),
            (200, AUDIT_ARCH_X86_64, 0),
        ];
        for (nr, arch, want) in cases {
            assert_eq!(run(&p, nr, arch, [0; 3]), want, "nr {nr} arch {arch:#x}");
        }
    }

    /// Every code survives the trip through RET_TRACE data, and `classify` reads a
    /// notification the way the filter trapped it.
    #[test]
    fn codes_and_classification_agree() {
        let mut seen = Vec::new();
        for call in [Call::Bind, Call::Listen, Call::IoUringSetup] {
            for abi in [AbiKind::Native, AbiKind::Compat] {
                for via_socketcall in [false, true] {
                    let t = Trapped {
                        call,
                        abi,
                        via_socketcall,
                    };
                    assert_eq!(Trapped::from_code(t.code() as u64), Some(t));
                    assert!(!seen.contains(&t.code()));
                    seen.push(t.code());
                }
            }
        }
        assert_eq!(Trapped::from_code(0), None);
        assert_eq!(Trapped::from_code(1 << 6 | 1), None);
        let c = Trapped::classify::<X86_64>;
        let t = |call, abi, via_socketcall| {
            Some(Trapped {
                call,
                abi,
                via_socketcall,
            })
        };
        assert_eq!(
            c(AUDIT_ARCH_X86_64, 49, 0),
            t(Call::Bind, AbiKind::Native, false)
        );
        assert_eq!(
            c(AUDIT_ARCH_I386, 361, 0),
            t(Call::Bind, AbiKind::Compat, false)
        );
        assert_eq!(
            c(AUDIT_ARCH_I386, 102, 2),
            t(Call::Bind, AbiKind::Compat, true)
        );
        assert_eq!(
            c(AUDIT_ARCH_I386, 102, 4),
            t(Call::Listen, AbiKind::Compat, true)
        );
        assert_eq!(c(AUDIT_ARCH_I386, 102, 3), None);
        assert_eq!(c(AUDIT_ARCH_X86_64, 0x4000_0031, 0), None);
        assert_eq!(
            c(AUDIT_ARCH_X86_64, 425, 0),
            t(Call::IoUringSetup, AbiKind::Native, false)
        );
    }

    /// The bpf engine's filter: listen only; bind (direct or through socketcall)
    /// runs in the kernel, except in a refused ABI.
    #[test]
    fn listen_only_filter_for_the_bpf_engine() {
        let p = build::<X86_64>(Traps {
            trap: Trap::Notify,
            bind: false,
            listen: true,
            io_uring: false,
            sctp_bindx: false,
        });
        let x32 = 0x4000_0000;
        assert_eq!(run(&p, 49, AUDIT_ARCH_X86_64, [0; 3]), ALLOW);
        assert_eq!(
            run(&p, 50, AUDIT_ARCH_X86_64, [0; 3]),
            SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(run(&p, 361, AUDIT_ARCH_I386, [0; 3]), ALLOW);
        assert_eq!(run(&p, 102, AUDIT_ARCH_I386, [2, 0, 0]), ALLOW);
        assert_eq!(
            run(&p, 102, AUDIT_ARCH_I386, [4, 0, 0]),
            SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(run(&p, x32 | 49, AUDIT_ARCH_X86_64, [0; 3]), EPERM);
    }

    /// The exact native path, so any change to what every syscall pays is deliberate.
    #[test]
    fn x86_64_golden_prefix() {
        let p = build::<X86_64>(Traps {
            trap: Trap::Notify,
            bind: true,
            listen: false,
            io_uring: true,
            sctp_bindx: true,
        });
        let got: Vec<(u16, u8, u8, u32)> = p
            .iter()
            .take(11)
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect();
        let want: Vec<(u16, u8, u8, u32)> = vec![
            (0x20, 0, 0, 4),            // ld arch
            (0x15, 2, 0, 0xc000_003e),  // x86_64
            (0x15, 23, 0, 0x4000_0003), // i386
            (0x06, 0, 0, 0),            // kill
            (0x20, 0, 0, 0),            // ld nr
            (0x35, 11, 0, 0x4000_0000), // x32 range
            (0x15, 3, 0, 49),           // bind
            (0x15, 3, 0, 425),          // io_uring_setup
            (0x15, 3, 0, 54),           // setsockopt
            (0x06, 0, 0, ALLOW),
            (0x06, 0, 0, 0x7fc0_0000), // notify bind
        ];
        assert_eq!(got, want);
    }
}
