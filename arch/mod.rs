// arch/mod.rs: the per-architecture layer. Generic code names registers only through
// `Reg` (proot's neutral list) and syscalls only through `Syscalls`; each architecture
// maps them in plain data that is unit-tested on any host. Only the raw ptrace calls
// that move registers in and out of a tracee are compiled for the host alone.

// Both are compiled on every host so their register maps are tested everywhere;
// the one that is not the host's is used only by those tests and the filter tests.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub mod aarch64;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::{Aarch64 as Native, clone3_on_stack, read_regs, write_regs};
#[cfg(target_arch = "x86_64")]
pub use x86_64::{X86_64 as Native, clone3_on_stack, read_regs, write_regs};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("force-bind supports x86_64 and aarch64 only");

/// An architecture-neutral register, as the syscall ABI sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// The syscall the kernel will run (x86_64 orig_rax, aarch64 NT_ARM_SYSTEM_CALL).
    SyscallNr,
    /// Argument 0 to 5 of the native ABI.
    Arg(usize),
    /// Argument 0 to 5 of the 32-bit compat ABI (i386 ebx.., AArch32 r0..).
    CompatArg(usize),
    /// The return value the program will see, valid at syscall exit.
    Result,
    StackPointer,
}

impl Reg {
    /// Argument `i` in the convention of `kind`.
    pub fn arg(kind: AbiKind, i: usize) -> Reg {
        match kind {
            AbiKind::Compat => Reg::CompatArg(i),
            _ => Reg::Arg(i),
        }
    }
}

/// The syscall numbers force-bind's own probes use (native ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscalls {
    pub bind: u32,
    pub listen: u32,
    /// dup2 where the ABI has it (aarch64 has only dup3).
    pub dup2: Option<u32>,
    pub dup3: u32,
    pub getppid: u32,
    pub exit_group: u32,
    pub getsockopt: u32,
}

/// How force-bind treats one syscall ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiKind {
    /// The architecture's own: trapped and handled.
    Native,
    /// The 32-bit compat ABI (i386 via int $0x80, AArch32): trapped and handled, with
    /// 32-bit arguments in their own registers.
    Compat,
    /// Refused in the filter (x32, which nobody runs): its binds fail with EPERM.
    Denied,
}

/// One syscall ABI a process of this architecture can use, as seccomp sees it:
/// seccomp_data.arch, and the number range (x32 shares x86_64's arch and sets bit 30),
/// with the numbers of the syscalls force-bind traps or turns a call into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abi {
    pub name: &'static str,
    pub kind: AbiKind,
    pub audit_arch: u32,
    /// Added to every syscall number of this ABI (x32's __X32_SYSCALL_BIT), else 0.
    pub nr_base: u32,
    pub bind: u32,
    pub listen: u32,
    pub setsockopt: u32,
    pub io_uring_setup: u32,
    /// clone(2), whose first argument holds the flags (CLONE_UNTRACED among them).
    pub clone: u32,
    pub clone3: u32,
    pub seccomp: u32,
    /// socketcall(2), the multiplexer older 32-bit ABIs reach bind through.
    pub socketcall: Option<u32>,
    /// dup2 where the ABI has it (aarch64 has only dup3).
    pub dup2: Option<u32>,
    pub dup3: u32,
}

/// socketcall(2)'s call numbers (SYS_BIND, ... in <linux/net.h>): its first argument,
/// which names the socket call the multiplexer makes. One table for every ABI that has
/// socketcall (`Abi::socketcall`); checked against the header by tests/syscall_tables.rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketCalls {
    pub bind: u32,
    pub listen: u32,
    /// The way to setsockopt(SCTP_SOCKOPT_BINDX_ADD) that is not the setsockopt syscall.
    pub setsockopt: u32,
}

pub const SOCKETCALL: SocketCalls = SocketCalls {
    bind: 2,
    listen: 4,
    setsockopt: 14,
};

/// The verbs generic code uses; implemented by each architecture's module.
pub trait Arch {
    /// The registers of a stopped thread, laid out as the kernel gives them.
    type Regs: Copy + Default + std::fmt::Debug;
    const NAME: &'static str;
    /// The ABI the tracer understands and rewrites.
    const NATIVE: Abi;
    /// Other ABIs a process of this architecture can switch to; the filter must
    /// account for every one of them or a program could step around it.
    const FOREIGN: &'static [Abi];
    const SYSCALLS: Syscalls;
    /// Bytes below the stack pointer that the ABI lets leaf code use without moving
    /// it (x86_64's red zone); scratch data goes below them.
    const RED_ZONE: u64;

    /// Makes `regs`, taken at a seccomp stop, run the same syscall again when the
    /// thread resumes from a later syscall-exit-stop: the instruction pointer goes
    /// back over the syscall instruction and the number goes where that instruction
    /// reads it. Used after a syscall was borrowed to ask the kernel something.
    fn rewind_to_syscall(regs: &mut Self::Regs);

    fn get(regs: &Self::Regs, reg: Reg) -> u64;
    fn set(regs: &mut Self::Regs, reg: Reg, value: u64);
}

/// AUDIT_ARCH_* values from <linux/audit.h>: EM_* | 64BIT | LE.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
pub const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    /// The values <linux/audit.h> spells out (libc does not export them).
    #[test]
    fn audit_arch_matches_the_kernel_header() {
        assert_eq!(AUDIT_ARCH_X86_64, 0xc000_003e);
        assert_eq!(AUDIT_ARCH_I386, 0x4000_0003);
        assert_eq!(AUDIT_ARCH_AARCH64, 0xc000_00b7);
        assert_eq!(AUDIT_ARCH_ARM, 0x4000_0028);
    }

    /// The host's own table must agree with its libc.
    #[test]
    fn native_syscalls_match_libc() {
        let s = Native::SYSCALLS;
        assert_eq!(s.bind as i64, libc::SYS_bind);
        assert_eq!(s.listen as i64, libc::SYS_listen);
        assert_eq!(s.dup3 as i64, libc::SYS_dup3);
        assert_eq!(s.getppid as i64, libc::SYS_getppid);
        assert_eq!(s.exit_group as i64, libc::SYS_exit_group);
        assert_eq!(s.getsockopt as i64, libc::SYS_getsockopt);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(s.dup2.map(i64::from), Some(libc::SYS_dup2));
        assert_eq!(Native::NATIVE.bind, s.bind);
        assert_eq!(Native::NATIVE.clone as i64, libc::SYS_clone);
        assert_eq!(Native::NATIVE.clone3 as i64, libc::SYS_clone3);
        assert_eq!(Native::NATIVE.seccomp as i64, libc::SYS_seccomp);
        assert_eq!(Native::NATIVE.setsockopt as i64, libc::SYS_setsockopt);
        assert_eq!(
            Native::NATIVE.io_uring_setup as i64,
            libc::SYS_io_uring_setup
        );
        assert_eq!(Native::NATIVE.listen, s.listen);
    }
}
