// filter.rs: the seccomp BPF program. Only the syscalls the policy needs are trapped
// (bind, and listen when a rule needs it), so everything else runs at full speed,
// paying just the few instructions below. One section per syscall ABI, as in proot.
//
// Written by hand rather than with seccompiler's SeccompFilter: that compiles one
// action for all matched syscalls and one architecture per program, while we need a
// different RET_TRACE code per syscall, sections for the foreign ABIs (i386, x32,
// AArch32) and, for the notify engine, SECCOMP_RET_USER_NOTIF. seccompiler still
// provides the instruction type and the action encoding.

use seccompiler::{SeccompAction, sock_filter};

use crate::arch::{Abi, Arch};

/// The data a SECCOMP_RET_TRACE carries, so the tracer knows which syscall stopped
/// without looking at registers (PTRACE_GETEVENTMSG returns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum TrapCode {
    Bind = 1,
    Listen = 2,
}

impl TrapCode {
    pub fn from_data(data: u64) -> Option<TrapCode> {
        match data {
            1 => Some(TrapCode::Bind),
            2 => Some(TrapCode::Listen),
            _ => None,
        }
    }
}

/// How trapped syscalls reach the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// SECCOMP_RET_TRACE with the syscall's TrapCode: a ptrace seccomp stop.
    Trace,
    /// SECCOMP_RET_USER_NOTIF: a notification on the listener fd.
    #[allow(dead_code)] // the notify engine's (issue 4); built and tested here
    Notify,
}

/// What the filter traps, besides bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traps {
    pub trap: Trap,
    pub listen: bool,
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
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// socketcall(2) call numbers (<linux/net.h>).
const SYS_BIND: u32 = 2;

fn ret_trap(traps: Traps, code: TrapCode) -> u32 {
    match traps.trap {
        Trap::Trace => SeccompAction::Trace(code as u32).into(),
        Trap::Notify => SECCOMP_RET_USER_NOTIF,
    }
}

fn ret_allow() -> u32 {
    SeccompAction::Allow.into()
}

/// Until the engines understand foreign ABIs, a bind through one is refused rather
/// than let through unchecked (fail closed).
fn ret_foreign_bind() -> u32 {
    SeccompAction::Errno(libc::EPERM as u32).into()
}

/// A forward-only BPF assembler with named labels, resolved at the end.
struct Asm {
    insns: Vec<(sock_filter, Option<(&'static str, &'static str)>)>,
    labels: Vec<(&'static str, usize)>,
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
    fn jump(&mut self, code: u16, k: u32, jt: &'static str, jf: &'static str) {
        self.insns.push((
            sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Some((jt, jf)),
        ));
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.insns.len()));
    }
    fn finish(self) -> Vec<sock_filter> {
        let find = |name: &str, at: usize| -> u8 {
            if name.is_empty() {
                return 0;
            }
            let target = self
                .labels
                .iter()
                .find(|(n, _)| *n == name)
                .expect("undefined label")
                .1;
            u8::try_from(target - at - 1).expect("jump too long")
        };
        self.insns
            .iter()
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

/// The whole program for architecture `A`.
pub fn build<A: Arch>(traps: Traps) -> Vec<sock_filter> {
    let native = A::NATIVE;
    // x32 shares x86_64's audit arch: told apart by its number range.
    let same_arch: Option<&Abi> = A::FOREIGN
        .iter()
        .find(|abi| abi.audit_arch == native.audit_arch);
    let other_arch: Vec<&Abi> = A::FOREIGN
        .iter()
        .filter(|abi| abi.audit_arch != native.audit_arch)
        .collect();
    const FOREIGN_LABELS: [&str; 2] = ["foreign0", "foreign1"];
    assert!(other_arch.len() <= FOREIGN_LABELS.len());

    let mut a = Asm::new();
    a.ld(DATA_ARCH);
    a.jump(JEQ_K, native.audit_arch, "native", "");
    for (abi, label) in other_arch.iter().zip(FOREIGN_LABELS) {
        a.jump(JEQ_K, abi.audit_arch, label, "");
    }
    // An architecture this process cannot have: nothing sensible to allow.
    a.ret(RET_KILL);

    a.label("native");
    a.ld(DATA_NR);
    if let Some(x32) = same_arch {
        a.jump(JGE_K, x32.nr_base, "same_arch_foreign", "");
    }
    a.jump(JEQ_K, native.bind, "trap_bind", "");
    if traps.listen {
        a.jump(JEQ_K, native.listen, "trap_listen", "");
    }
    a.ret(ret_allow());
    a.label("trap_bind");
    a.ret(ret_trap(traps, TrapCode::Bind));
    if traps.listen {
        a.label("trap_listen");
        a.ret(ret_trap(traps, TrapCode::Listen));
    }

    if let Some(x32) = same_arch {
        a.label("same_arch_foreign");
        a.jump(JEQ_K, x32.nr_base + x32.bind, "deny_foreign", "");
        a.ret(ret_allow());
    }

    for (abi, label) in other_arch.iter().zip(FOREIGN_LABELS) {
        a.label(label);
        a.ld(DATA_NR);
        a.jump(JEQ_K, abi.nr_base + abi.bind, "deny_foreign", "");
        match abi.socketcall {
            Some(socketcall) => {
                a.jump(JEQ_K, abi.nr_base + socketcall, "", "allow");
                a.ld(data_arg_low(0));
                a.jump(JEQ_K, SYS_BIND, "deny_foreign", "allow");
            }
            None => a.ret(ret_allow()),
        }
    }
    a.label("allow");
    a.ret(ret_allow());
    a.label("deny_foreign");
    a.ret(ret_foreign_bind());
    a.finish()
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
    fn run(prog: &[sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
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
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("fell off the end of the program")
    }

    const TRACE_BIND: u32 = 0x7ff0_0000 | 1;
    const TRACE_LISTEN: u32 = 0x7ff0_0000 | 2;
    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0000 | 1;

    #[test]
    fn x86_64_behaviour() {
        let p = build::<X86_64>(Traps {
            trap: Trap::Trace,
            listen: true,
        });
        let cases = [
            (49, AUDIT_ARCH_X86_64, 0, TRACE_BIND),
            (50, AUDIT_ARCH_X86_64, 0, TRACE_LISTEN),
            (110, AUDIT_ARCH_X86_64, 0, ALLOW),
            (0x4000_0000 | 49, AUDIT_ARCH_X86_64, 0, EPERM),
            (0x4000_0000 | 1, AUDIT_ARCH_X86_64, 0, ALLOW),
            (361, AUDIT_ARCH_I386, 0, EPERM),
            (102, AUDIT_ARCH_I386, 2, EPERM),
            (102, AUDIT_ARCH_I386, 0xffff_ffff_0000_0002, EPERM),
            (102, AUDIT_ARCH_I386, 3, ALLOW),
            (49, AUDIT_ARCH_I386, 0, ALLOW),
            (49, AUDIT_ARCH_AARCH64, 0, RET_KILL),
        ];
        for (nr, arch, arg0, want) in cases {
            assert_eq!(
                run(&p, nr, arch, arg0),
                want,
                "nr {nr:#x} arch {arch:#x} arg0 {arg0:#x}"
            );
        }
        let p = build::<X86_64>(Traps {
            trap: Trap::Trace,
            listen: false,
        });
        assert_eq!(run(&p, 50, AUDIT_ARCH_X86_64, 0), ALLOW);
        assert_eq!(run(&p, 49, AUDIT_ARCH_X86_64, 0), TRACE_BIND);
        let p = build::<X86_64>(Traps {
            trap: Trap::Notify,
            listen: true,
        });
        assert_eq!(run(&p, 49, AUDIT_ARCH_X86_64, 0), SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, 50, AUDIT_ARCH_X86_64, 0), SECCOMP_RET_USER_NOTIF);
    }

    #[test]
    fn aarch64_behaviour() {
        let p = build::<Aarch64>(Traps {
            trap: Trap::Trace,
            listen: false,
        });
        let cases = [
            (200, AUDIT_ARCH_AARCH64, TRACE_BIND),
            (201, AUDIT_ARCH_AARCH64, ALLOW),
            (282, AUDIT_ARCH_ARM, EPERM),
            (200, AUDIT_ARCH_ARM, ALLOW),
            (200, AUDIT_ARCH_X86_64, RET_KILL),
        ];
        for (nr, arch, want) in cases {
            assert_eq!(run(&p, nr, arch, 0), want, "nr {nr} arch {arch:#x}");
        }
    }

    /// The exact program, so any change to it is a deliberate one.
    #[test]
    fn x86_64_golden() {
        let p = build::<X86_64>(Traps {
            trap: Trap::Trace,
            listen: true,
        });
        let got: Vec<(u16, u8, u8, u32)> = p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
        let want: Vec<(u16, u8, u8, u32)> = vec![
            (0x20, 0, 0, 4),            // ld arch
            (0x15, 2, 0, 0xc000_003e),  // x86_64 -> native
            (0x15, 10, 0, 0x4000_0003), // i386 -> foreign0
            (0x06, 0, 0, 0),            // kill
            (0x20, 0, 0, 0),            // native: ld nr
            (0x35, 5, 0, 0x4000_0000),  // x32 range
            (0x15, 2, 0, 49),           // bind
            (0x15, 2, 0, 50),           // listen
            (0x06, 0, 0, ALLOW),
            (0x06, 0, 0, TRACE_BIND),
            (0x06, 0, 0, TRACE_LISTEN),
            (0x15, 7, 0, 0x4000_0031), // x32 bind
            (0x06, 0, 0, ALLOW),
            (0x20, 0, 0, 0),     // i386: ld nr
            (0x15, 4, 0, 361),   // bind
            (0x15, 0, 2, 102),   // socketcall
            (0x20, 0, 0, 16),    // ld args[0]
            (0x15, 1, 0, 2),     // SYS_BIND
            (0x06, 0, 0, ALLOW), // allow
            (0x06, 0, 0, EPERM), // deny_foreign
        ];
        assert_eq!(got, want);
    }
}
