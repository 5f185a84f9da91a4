// arch/aarch64: registers as struct user_pt_regs (arch/arm64/include/uapi/asm/ptrace.h)
// plus the syscall number, which lives outside them: it is read from x8 at entry and
// written through the NT_ARM_SYSTEM_CALL regset. x0 is both argument 0 and the result.

use super::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, Abi, AbiKind, Arch, Reg, Syscalls};

pub struct Aarch64;

/// struct user_pt_regs, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtRegs {
    pub regs: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub pt: PtRegs,
    /// The syscall to run: x8 when read, NT_ARM_SYSTEM_CALL when written.
    pub syscall_nr: u64,
}

impl Arch for Aarch64 {
    type Regs = Regs;
    const NAME: &'static str = "aarch64";
    const NATIVE: Abi = Abi {
        name: "aarch64",
        kind: AbiKind::Native,
        audit_arch: AUDIT_ARCH_AARCH64,
        nr_base: 0,
        bind: 200,
        listen: 201,
        setsockopt: 208,
        io_uring_setup: 425,
        clone: 220,
        clone3: 435,
        seccomp: 277,
        socketcall: None,
        dup2: None,
        dup3: 24,
    };
    // AArch32 compat tasks (EABI): arch/arm/tools/syscall.tbl. They cannot be
    // exercised on x86_64 hosts, but the filter and the tracer still cover them.
    const FOREIGN: &'static [Abi] = &[Abi {
        name: "arm",
        kind: AbiKind::Compat,
        audit_arch: AUDIT_ARCH_ARM,
        nr_base: 0,
        bind: 282,
        listen: 284,
        setsockopt: 294,
        io_uring_setup: 425,
        clone: 120,
        clone3: 435,
        seccomp: 383,
        socketcall: None,
        dup2: Some(63),
        dup3: 358,
    }];
    const SYSCALLS: Syscalls = Syscalls {
        bind: 200,
        listen: 201,
        dup2: None,
        dup3: 24,
        getppid: 173,
        exit_group: 94,
        getsockopt: 209,
    };
    /// AAPCS64 has no red zone; keep a margin anyway (signal frames are not a
    /// concern while the thread sits in a syscall, but a sloppy leaf function may be).
    const RED_ZONE: u64 = 128;

    /// `svc #0` is 4 bytes and takes the number from x8, which the saved registers
    /// still hold, as they hold the original x0.
    fn rewind_to_syscall(r: &mut Regs) {
        r.pt.pc -= 4;
        r.pt.regs[8] = r.syscall_nr;
    }

    fn get(r: &Regs, reg: Reg) -> u64 {
        match reg {
            Reg::SyscallNr => r.syscall_nr,
            Reg::Arg(n @ 0..=5) => r.pt.regs[n],
            // AArch32: r0-r5 live in the low halves of x0-x5.
            Reg::CompatArg(n @ 0..=5) => r.pt.regs[n] & 0xffff_ffff,
            Reg::Arg(n) | Reg::CompatArg(n) => panic!("syscall argument {n} does not exist"),
            Reg::Result => r.pt.regs[0],
            Reg::StackPointer => r.pt.sp,
        }
    }

    fn set(r: &mut Regs, reg: Reg, value: u64) {
        match reg {
            Reg::SyscallNr => r.syscall_nr = value,
            Reg::Arg(n @ 0..=5) | Reg::CompatArg(n @ 0..=5) => r.pt.regs[n] = value,
            Reg::Arg(n) | Reg::CompatArg(n) => panic!("syscall argument {n} does not exist"),
            Reg::Result => r.pt.regs[0] = value,
            Reg::StackPointer => r.pt.sp = value,
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod raw {
    use super::{PtRegs, Regs};
    use nix::errno::Errno;
    use nix::unistd::Pid;

    const NT_PRSTATUS: libc::c_int = 1;
    const NT_ARM_SYSTEM_CALL: libc::c_int = 0x404;

    fn regset<T>(
        request: libc::c_uint,
        pid: Pid,
        note: libc::c_int,
        value: *mut T,
    ) -> Result<(), Errno> {
        let mut iov = libc::iovec {
            iov_base: value.cast(),
            iov_len: std::mem::size_of::<T>(),
        };
        // SAFETY: the iovec points at one live T of the size the kernel expects for
        // this note; GETREGSET writes at most iov_len bytes, SETREGSET only reads.
        let rc = unsafe {
            libc::ptrace(
                request,
                pid.as_raw(),
                note as usize as *mut libc::c_void,
                &mut iov,
            )
        };
        Errno::result(rc).map(drop)
    }

    /// One PTRACE_GETREGSET(NT_PRSTATUS); the syscall number is taken from x8, where
    /// it still is at a seccomp or syscall stop, saving a second call.
    pub fn read_regs(pid: Pid) -> Result<Regs, Errno> {
        let mut pt = PtRegs::default();
        regset(libc::PTRACE_GETREGSET, pid, NT_PRSTATUS, &mut pt)?;
        Ok(Regs {
            syscall_nr: pt.regs[8],
            pt,
        })
    }

    /// Writes the general registers, and the syscall number through
    /// NT_ARM_SYSTEM_CALL: changing x8 alone has no effect once the syscall started.
    pub fn write_regs(pid: Pid, regs: &Regs) -> Result<(), Errno> {
        let mut pt = regs.pt;
        regset(libc::PTRACE_SETREGSET, pid, NT_PRSTATUS, &mut pt)?;
        let mut nr = regs.syscall_nr as i32;
        regset(libc::PTRACE_SETREGSET, pid, NT_ARM_SYSTEM_CALL, &mut nr)
    }
}
#[cfg(target_arch = "aarch64")]
pub use raw::{read_regs, write_regs};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_registers() {
        let mut r = Regs::default();
        for (i, reg) in [
            Reg::Arg(0),
            Reg::Arg(1),
            Reg::Arg(2),
            Reg::Arg(3),
            Reg::Arg(4),
            Reg::Arg(5),
        ]
        .into_iter()
        .enumerate()
        {
            Aarch64::set(&mut r, reg, 100 + i as u64);
        }
        Aarch64::set(&mut r, Reg::SyscallNr, 200);
        Aarch64::set(&mut r, Reg::StackPointer, 0x7fff_0000);
        assert_eq!(&r.pt.regs[..6], &[100, 101, 102, 103, 104, 105]);
        assert_eq!(r.syscall_nr, 200);
        assert_eq!(r.pt.sp, 0x7fff_0000);
        // x0 is argument 0 and the result: writing one is writing the other.
        Aarch64::set(&mut r, Reg::Result, (-1i64) as u64);
        assert_eq!(Aarch64::get(&r, Reg::Arg(0)), u64::MAX);
        assert_eq!(std::mem::size_of::<PtRegs>(), 34 * 8);
    }

    #[test]
    fn rewinds_over_the_syscall_instruction() {
        let mut r = Regs {
            syscall_nr: 200,
            ..Regs::default()
        };
        r.pt.pc = 0x1004;
        r.pt.regs[8] = 0;
        Aarch64::rewind_to_syscall(&mut r);
        assert_eq!((r.pt.pc, r.pt.regs[8]), (0x1000, 200));
    }
}
