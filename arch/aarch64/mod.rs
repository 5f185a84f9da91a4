// arch/aarch64: registers as NT_PRSTATUS gives them, plus the syscall number, which
// lives outside them: it is read from x8 (r7 for AArch32) at entry and written through
// the NT_ARM_SYSTEM_CALL regset. x0 is both argument 0 and the result.
//
// A 64-bit tracer does not see an AArch32 thread's registers as struct user_pt_regs:
// the kernel picks the regset view by the *tracee's* mode (task_user_regset_view,
// arch/arm64/kernel/ptrace.c), and NT_PRSTATUS of a compat task is AArch32's 18 32-bit
// words (r0-r15, cpsr, orig_r0). Unlike x86_64, where an i386 thread still gets the
// 64-bit user_regs_struct, the layout follows the thread, so `Regs` says which it holds.

use super::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, Abi, AbiKind, Arch, Reg, Syscalls};

pub struct Aarch64;

/// struct user_pt_regs (arch/arm64/include/uapi/asm/ptrace.h), field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtRegs {
    pub regs: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

/// An AArch32 thread's NT_PRSTATUS (compat_elf_gregset_t): r0-r15, cpsr, orig_r0.
/// r7 holds the EABI syscall number, r13 is sp, r15 pc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmRegs {
    pub r: [u32; 18],
}

/// The general registers of one thread, in the layout of its execution state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpr {
    Aarch64(PtRegs),
    Aarch32(ArmRegs),
}

impl Default for Gpr {
    fn default() -> Gpr {
        Gpr::Aarch64(PtRegs::default())
    }
}

const PT_REGS_SIZE: usize = std::mem::size_of::<PtRegs>();
const ARM_REGS_SIZE: usize = 18 * 4;
/// cpsr's T bit: the thread runs Thumb code, whose `svc` is 2 bytes, not 4.
const PSR_T_BIT: u32 = 1 << 5;

impl Gpr {
    /// Decodes NT_PRSTATUS from the bytes the kernel wrote; its length says the
    /// layout (PTRACE_GETREGSET shortens iov_len to the regset's size).
    pub fn decode_prstatus(bytes: &[u8]) -> Option<Gpr> {
        match bytes.len() {
            PT_REGS_SIZE => {
                let mut words = bytes
                    .chunks_exact(8)
                    .map(|w| u64::from_ne_bytes(w.try_into().unwrap()));
                let mut pt = PtRegs::default();
                for slot in pt.regs.iter_mut() {
                    *slot = words.next()?;
                }
                pt.sp = words.next()?;
                pt.pc = words.next()?;
                pt.pstate = words.next()?;
                Some(Gpr::Aarch64(pt))
            }
            ARM_REGS_SIZE => {
                let mut arm = ArmRegs::default();
                for (slot, w) in arm.r.iter_mut().zip(bytes.chunks_exact(4)) {
                    *slot = u32::from_ne_bytes(w.try_into().unwrap());
                }
                Some(Gpr::Aarch32(arm))
            }
            _ => None,
        }
    }

    /// Encodes NT_PRSTATUS into `buf`; returns how many bytes of it to hand back.
    pub fn encode_prstatus(&self, buf: &mut [u8; PT_REGS_SIZE]) -> usize {
        match self {
            Gpr::Aarch64(pt) => {
                let words = pt.regs.iter().chain([&pt.sp, &pt.pc, &pt.pstate]);
                for (w, out) in words.zip(buf.chunks_exact_mut(8)) {
                    out.copy_from_slice(&w.to_ne_bytes());
                }
                PT_REGS_SIZE
            }
            Gpr::Aarch32(arm) => {
                for (w, out) in arm.r.iter().zip(buf.chunks_exact_mut(4)) {
                    out.copy_from_slice(&w.to_ne_bytes());
                }
                ARM_REGS_SIZE
            }
        }
    }

    /// The number the syscall instruction takes: x8, or AArch32 EABI's r7.
    fn syscall_nr(&self) -> u64 {
        match self {
            Gpr::Aarch64(pt) => pt.regs[8],
            Gpr::Aarch32(arm) => arm.r[7].into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub gpr: Gpr,
    /// The syscall to run: x8 (r7) when read, NT_ARM_SYSTEM_CALL when written.
    pub syscall_nr: u64,
}

impl Regs {
    /// The registers of a thread stopped at a syscall or seccomp stop.
    pub fn new(gpr: Gpr) -> Regs {
        Regs {
            syscall_nr: gpr.syscall_nr(),
            gpr,
        }
    }
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

    /// `svc #0` is 4 bytes (2 in Thumb code) and takes the number from x8 (r7),
    /// which the saved registers still hold, as they hold the original x0.
    fn rewind_to_syscall(r: &mut Regs) {
        match &mut r.gpr {
            Gpr::Aarch64(pt) => {
                pt.pc -= 4;
                pt.regs[8] = r.syscall_nr;
            }
            Gpr::Aarch32(arm) => {
                let width = if arm.r[16] & PSR_T_BIT != 0 { 2 } else { 4 };
                arm.r[15] = arm.r[15].wrapping_sub(width);
                arm.r[7] = r.syscall_nr as u32;
            }
        }
    }

    fn get(r: &Regs, reg: Reg) -> u64 {
        match (&r.gpr, reg) {
            (_, Reg::SyscallNr) => r.syscall_nr,
            (_, Reg::Arg(n) | Reg::CompatArg(n)) if n > 5 => {
                panic!("syscall argument {n} does not exist")
            }
            (Gpr::Aarch64(pt), Reg::Arg(n)) => pt.regs[n],
            // An AArch64 thread has no 32-bit calls; the low halves, as the kernel
            // would take them, should one be asked for.
            (Gpr::Aarch64(pt), Reg::CompatArg(n)) => pt.regs[n] & 0xffff_ffff,
            (Gpr::Aarch64(pt), Reg::Result) => pt.regs[0],
            (Gpr::Aarch64(pt), Reg::StackPointer) => pt.sp,
            (Gpr::Aarch32(arm), Reg::Arg(n) | Reg::CompatArg(n)) => arm.r[n].into(),
            // A 32-bit result is signed: -EINVAL is 0xffffffea in r0.
            (Gpr::Aarch32(arm), Reg::Result) => arm.r[0] as i32 as i64 as u64,
            (Gpr::Aarch32(arm), Reg::StackPointer) => arm.r[13].into(),
        }
    }

    fn set(r: &mut Regs, reg: Reg, value: u64) {
        match (&mut r.gpr, reg) {
            (_, Reg::SyscallNr) => r.syscall_nr = value,
            (_, Reg::Arg(n) | Reg::CompatArg(n)) if n > 5 => {
                panic!("syscall argument {n} does not exist")
            }
            (Gpr::Aarch64(pt), Reg::Arg(n) | Reg::CompatArg(n)) => pt.regs[n] = value,
            (Gpr::Aarch64(pt), Reg::Result) => pt.regs[0] = value,
            (Gpr::Aarch64(pt), Reg::StackPointer) => pt.sp = value,
            // AArch32 registers are 32 bits: the low half is what the thread sees.
            (Gpr::Aarch32(arm), Reg::Arg(n) | Reg::CompatArg(n)) => arm.r[n] = value as u32,
            (Gpr::Aarch32(arm), Reg::Result) => arm.r[0] = value as u32,
            (Gpr::Aarch32(arm), Reg::StackPointer) => arm.r[13] = value as u32,
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod raw {
    use super::{Gpr, PT_REGS_SIZE, Regs};
    use nix::errno::Errno;
    use nix::unistd::Pid;

    const NT_PRSTATUS: libc::c_int = 1;
    const NT_ARM_SYSTEM_CALL: libc::c_int = 0x404;

    /// One PTRACE_GETREGSET or SETREGSET of `buf`; returns the length the kernel
    /// left in iov_len (for GETREGSET, how many bytes the regset filled).
    fn regset(
        request: libc::c_uint,
        pid: Pid,
        note: libc::c_int,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the iovec points at `buf`, live and writable for iov_len bytes;
        // GETREGSET writes at most iov_len bytes and shortens iov_len to what it
        // wrote, SETREGSET only reads.
        let rc = unsafe {
            libc::ptrace(
                request,
                pid.as_raw(),
                note as usize as *mut libc::c_void,
                &mut iov,
            )
        };
        Errno::result(rc).map(|_| iov.iov_len)
    }

    /// One PTRACE_GETREGSET(NT_PRSTATUS), in whichever layout the thread's execution
    /// state gives; the syscall number is taken from x8 (r7), where it still is at a
    /// seccomp or syscall stop, saving a second call.
    pub fn read_regs(pid: Pid) -> Result<Regs, Errno> {
        let mut buf = [0u8; PT_REGS_SIZE];
        let len = regset(libc::PTRACE_GETREGSET, pid, NT_PRSTATUS, &mut buf)?;
        // Neither layout's size: a regset this code does not know; refuse it
        // rather than read registers from the wrong places.
        let gpr = Gpr::decode_prstatus(&buf[..len]).ok_or(Errno::EIO)?;
        Ok(Regs::new(gpr))
    }

    /// Writes the general registers, in the layout they were read in, and the
    /// syscall number through NT_ARM_SYSTEM_CALL: changing x8 alone has no effect
    /// once the syscall started. At a syscall-enter or -exit stop the kernel shows
    /// x7 (AArch32: r12) as the stop's direction and puts the thread's own value
    /// back afterwards, whatever was written (report_syscall, arch/arm64/kernel/
    /// ptrace.c): the registers given back there come from the seccomp stop, where
    /// x7 is the thread's, so that costs nothing.
    pub fn write_regs(pid: Pid, regs: &Regs) -> Result<(), Errno> {
        let mut buf = [0u8; PT_REGS_SIZE];
        let len = regs.gpr.encode_prstatus(&mut buf);
        regset(libc::PTRACE_SETREGSET, pid, NT_PRSTATUS, &mut buf[..len])?;
        let nr = regs.syscall_nr as i32;
        regset(
            libc::PTRACE_SETREGSET,
            pid,
            NT_ARM_SYSTEM_CALL,
            &mut nr.to_ne_bytes(),
        )
        .map(drop)
    }
}
#[cfg(target_arch = "aarch64")]
pub use raw::{read_regs, write_regs};

#[cfg(target_arch = "aarch64")]
mod clone {
    /// clone3(2) with a stack of the caller's (`args` names it): the child starts on
    /// that stack and calls `entry(arg)`, which must never return; the parent gets
    /// the child's PID or -errno. glibc has no clone3 wrapper, and `syscall(3)` cannot
    /// be used with CLONE_VM and a new stack: the child would return through a frame
    /// that is not on its stack. So the child's first instructions are ours: the
    /// kernel set its sp to the top of the new stack (16-aligned, as AAPCS64 needs)
    /// and left every other register as the parent's but x0 (0), so `entry` and `arg`
    /// wait in x20 and x21.
    ///
    /// # Safety
    /// `args` must be a valid struct clone_args of `size` bytes with a stack whose
    /// top is 16-aligned, and `entry` must not return.
    pub unsafe fn clone3_on_stack(
        args: *mut libc::c_void,
        size: usize,
        entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: *mut libc::c_void,
    ) -> libc::c_long {
        let ret: libc::c_long;
        // SAFETY: the caller's contract; the parent's side is a plain syscall (only
        // x0 changes), the child's never comes back into Rust code here.
        unsafe {
            std::arch::asm!(
                "svc #0",
                "cbnz x0, 2f",
                "mov x0, x21",
                "blr x20",
                "brk #0x1",
                "2:",
                inlateout("x0") args => ret,
                in("x1") size,
                in("x8") libc::SYS_clone3,
                in("x20") entry,
                in("x21") arg,
                options(nostack),
            );
        }
        ret
    }
}
#[cfg(target_arch = "aarch64")]
pub use clone::clone3_on_stack;

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(r: &Regs) -> &PtRegs {
        match &r.gpr {
            Gpr::Aarch64(pt) => pt,
            Gpr::Aarch32(_) => panic!("not AArch64 registers"),
        }
    }

    fn arm(r: &Regs) -> &ArmRegs {
        match &r.gpr {
            Gpr::Aarch32(arm) => arm,
            Gpr::Aarch64(_) => panic!("not AArch32 registers"),
        }
    }

    const ARGS: [Reg; 6] = [
        Reg::Arg(0),
        Reg::Arg(1),
        Reg::Arg(2),
        Reg::Arg(3),
        Reg::Arg(4),
        Reg::Arg(5),
    ];

    #[test]
    fn maps_registers() {
        let mut r = Regs::default();
        for (i, reg) in ARGS.into_iter().enumerate() {
            Aarch64::set(&mut r, reg, 100 + i as u64);
        }
        Aarch64::set(&mut r, Reg::SyscallNr, 200);
        Aarch64::set(&mut r, Reg::StackPointer, 0x7fff_0000);
        assert_eq!(&pt(&r).regs[..6], &[100, 101, 102, 103, 104, 105]);
        assert_eq!(r.syscall_nr, 200);
        assert_eq!(pt(&r).sp, 0x7fff_0000);
        // x0 is argument 0 and the result: writing one is writing the other.
        Aarch64::set(&mut r, Reg::Result, (-1i64) as u64);
        assert_eq!(Aarch64::get(&r, Reg::Arg(0)), u64::MAX);
        assert_eq!(std::mem::size_of::<PtRegs>(), 34 * 8);
    }

    /// An AArch32 thread: arguments in r0-r5, sp in r13, a signed 32-bit result.
    #[test]
    fn maps_aarch32_registers() {
        let mut r = Regs::new(Gpr::Aarch32(ArmRegs::default()));
        for (i, reg) in ARGS.into_iter().enumerate() {
            Aarch64::set(&mut r, reg, 100 + i as u64);
            assert_eq!(Aarch64::get(&r, Reg::CompatArg(i)), 100 + i as u64);
        }
        Aarch64::set(&mut r, Reg::StackPointer, 0xbeff_0000);
        assert_eq!(&arm(&r).r[..6], &[100, 101, 102, 103, 104, 105]);
        assert_eq!(arm(&r).r[13], 0xbeff_0000);
        assert_eq!(Aarch64::get(&r, Reg::StackPointer), 0xbeff_0000);
        Aarch64::set(&mut r, Reg::Result, -1i64 as u64);
        assert_eq!(arm(&r).r[0], u32::MAX);
        Aarch64::set(&mut r, Reg::Result, -22i64 as u64);
        assert_eq!(Aarch64::get(&r, Reg::Result) as i64, -22);
        assert_eq!(Aarch64::get(&r, Reg::CompatArg(0)), 0xffff_ffea);
    }

    /// NT_PRSTATUS's length tells the layouts apart, and each round-trips.
    #[test]
    fn decodes_prstatus_by_its_length() {
        let mut native = PtRegs::default();
        for (i, x) in native.regs.iter_mut().enumerate() {
            *x = 0x1111_0000_0000_0000 | i as u64;
        }
        native.regs[8] = 200;
        (native.sp, native.pc, native.pstate) = (0x7ff0, 0x40_1000, 0x8000_0000);
        let mut buf = [0u8; PT_REGS_SIZE];
        assert_eq!(Gpr::Aarch64(native).encode_prstatus(&mut buf), 272);
        let r = Regs::new(Gpr::decode_prstatus(&buf).unwrap());
        assert_eq!((r.gpr, r.syscall_nr), (Gpr::Aarch64(native), 200));

        let mut compat = ArmRegs::default();
        for (i, x) in compat.r.iter_mut().enumerate() {
            *x = 0x1000 + i as u32;
        }
        compat.r[7] = 282;
        let mut buf = [0u8; PT_REGS_SIZE];
        assert_eq!(Gpr::Aarch32(compat).encode_prstatus(&mut buf), 72);
        assert_eq!(&buf[4..8], &0x1001u32.to_ne_bytes(), "r1 follows r0");
        let r = Regs::new(Gpr::decode_prstatus(&buf[..72]).unwrap());
        assert_eq!((r.gpr, r.syscall_nr), (Gpr::Aarch32(compat), 282));
        assert_eq!(Aarch64::get(&r, Reg::CompatArg(1)), 0x1001);
        assert_eq!(Aarch64::get(&r, Reg::StackPointer), 0x100d);

        assert_eq!(Gpr::decode_prstatus(&buf[..64]), None);
    }

    #[test]
    fn rewinds_over_the_syscall_instruction() {
        let native = PtRegs {
            pc: 0x1004,
            ..PtRegs::default()
        };
        let mut r = Regs {
            gpr: Gpr::Aarch64(native),
            syscall_nr: 200,
        };
        Aarch64::rewind_to_syscall(&mut r);
        assert_eq!((pt(&r).pc, pt(&r).regs[8]), (0x1000, 200));

        // AArch32: `svc` is 4 bytes in ARM state, 2 in Thumb state (cpsr.T).
        for (cpsr, pc) in [(0x10, 0x1000), (0x30, 0x1002)] {
            let mut compat = ArmRegs::default();
            (compat.r[15], compat.r[16]) = (0x1004, cpsr);
            let mut r = Regs {
                gpr: Gpr::Aarch32(compat),
                syscall_nr: 282,
            };
            Aarch64::rewind_to_syscall(&mut r);
            assert_eq!((arm(&r).r[15], arm(&r).r[7]), (pc, 282));
        }
    }
}
