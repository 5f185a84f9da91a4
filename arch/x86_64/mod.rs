// arch/x86_64: registers as struct user_regs_struct (arch/x86/include/asm/user_64.h).
// Syscall number in orig_rax, arguments in rdi, rsi, rdx, r10, r8, r9, result in rax.

use super::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Abi, AbiKind, Arch, Reg, Syscalls};

pub struct X86_64;

/// struct user_regs_struct, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// __X32_SYSCALL_BIT: x32 processes use x86_64's audit arch with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl Arch for X86_64 {
    type Regs = Regs;
    const NAME: &'static str = "x86_64";
    const NATIVE: Abi = Abi {
        name: "x86_64",
        kind: AbiKind::Native,
        audit_arch: AUDIT_ARCH_X86_64,
        nr_base: 0,
        bind: 49,
        listen: 50,
        setsockopt: 54,
        io_uring_setup: 425,
        clone: 56,
        clone3: 435,
        seccomp: 317,
        socketcall: None,
        dup2: Some(33),
        dup3: 292,
    };
    const FOREIGN: &'static [Abi] = &[
        // x32: x86_64's numbers with bit 30 set (arch/x86/entry/syscalls/syscall_64.tbl).
        Abi {
            name: "x32",
            kind: AbiKind::Denied,
            audit_arch: AUDIT_ARCH_X86_64,
            nr_base: X32_SYSCALL_BIT,
            bind: 49,
            listen: 50,
            setsockopt: 541,
            io_uring_setup: 425,
            clone: 56,
            clone3: 435,
            seccomp: 317,
            socketcall: None,
            dup2: Some(33),
            dup3: 292,
        },
        // int $0x80 from any process, and every 32-bit program: syscall_32.tbl.
        Abi {
            name: "i386",
            kind: AbiKind::Compat,
            audit_arch: AUDIT_ARCH_I386,
            nr_base: 0,
            bind: 361,
            listen: 363,
            setsockopt: 366,
            io_uring_setup: 425,
            clone: 120,
            clone3: 435,
            seccomp: 354,
            socketcall: Some(102),
            dup2: Some(63),
            dup3: 330,
        },
    ];
    const SYSCALLS: Syscalls = Syscalls {
        bind: 49,
        listen: 50,
        dup2: Some(33),
        dup3: 292,
        getppid: 110,
        exit_group: 231,
        getsockopt: 55,
    };
    /// The System V x86_64 ABI's 128-byte red zone.
    const RED_ZONE: u64 = 128;

    /// `syscall` (0f 05) and `int $0x80` (cd 80) are both 2 bytes; the instruction
    /// takes the number from rax, which holds -ENOSYS at a seccomp stop.
    fn rewind_to_syscall(r: &mut Regs) {
        r.rip -= 2;
        r.rax = r.orig_rax;
    }

    fn get(r: &Regs, reg: Reg) -> u64 {
        match reg {
            Reg::SyscallNr => r.orig_rax,
            Reg::Arg(0) => r.rdi,
            Reg::Arg(1) => r.rsi,
            Reg::Arg(2) => r.rdx,
            Reg::Arg(3) => r.r10,
            Reg::Arg(4) => r.r8,
            Reg::Arg(5) => r.r9,
            Reg::Arg(n) => panic!("syscall argument {n} does not exist"),
            // i386: ebx, ecx, edx, esi, edi, ebp; the kernel uses their low halves.
            Reg::CompatArg(0) => r.rbx & 0xffff_ffff,
            Reg::CompatArg(1) => r.rcx & 0xffff_ffff,
            Reg::CompatArg(2) => r.rdx & 0xffff_ffff,
            Reg::CompatArg(3) => r.rsi & 0xffff_ffff,
            Reg::CompatArg(4) => r.rdi & 0xffff_ffff,
            Reg::CompatArg(5) => r.rbp & 0xffff_ffff,
            Reg::CompatArg(n) => panic!("syscall argument {n} does not exist"),
            Reg::Result => r.rax,
            Reg::StackPointer => r.rsp,
        }
    }

    fn set(r: &mut Regs, reg: Reg, value: u64) {
        let slot = match reg {
            Reg::SyscallNr => &mut r.orig_rax,
            Reg::Arg(0) => &mut r.rdi,
            Reg::Arg(1) => &mut r.rsi,
            Reg::Arg(2) => &mut r.rdx,
            Reg::Arg(3) => &mut r.r10,
            Reg::Arg(4) => &mut r.r8,
            Reg::Arg(5) => &mut r.r9,
            Reg::Arg(n) => panic!("syscall argument {n} does not exist"),
            Reg::CompatArg(0) => &mut r.rbx,
            Reg::CompatArg(1) => &mut r.rcx,
            Reg::CompatArg(2) => &mut r.rdx,
            Reg::CompatArg(3) => &mut r.rsi,
            Reg::CompatArg(4) => &mut r.rdi,
            Reg::CompatArg(5) => &mut r.rbp,
            Reg::CompatArg(n) => panic!("syscall argument {n} does not exist"),
            Reg::Result => &mut r.rax,
            Reg::StackPointer => &mut r.rsp,
        };
        *slot = value;
    }
}

#[cfg(target_arch = "x86_64")]
mod raw {
    use super::Regs;
    use nix::errno::Errno;
    use nix::unistd::Pid;

    /// One PTRACE_GETREGS: the whole set in a single call.
    pub fn read_regs(pid: Pid) -> Result<Regs, Errno> {
        let mut regs = Regs::default();
        // SAFETY: PTRACE_GETREGS writes exactly one user_regs_struct, which `Regs`
        // mirrors field for field (checked by a size test), into memory we own.
        let rc = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                pid.as_raw(),
                std::ptr::null_mut::<libc::c_void>(),
                &mut regs as *mut Regs,
            )
        };
        Errno::result(rc).map(|_| regs)
    }

    /// One PTRACE_SETREGS; orig_rax is part of the set, so a new syscall number
    /// goes in with the arguments.
    pub fn write_regs(pid: Pid, regs: &Regs) -> Result<(), Errno> {
        // SAFETY: PTRACE_SETREGS only reads one user_regs_struct from `regs`.
        let rc = unsafe {
            libc::ptrace(
                libc::PTRACE_SETREGS,
                pid.as_raw(),
                std::ptr::null_mut::<libc::c_void>(),
                regs as *const Regs,
            )
        };
        Errno::result(rc).map(drop)
    }

    #[test]
    fn layout_matches_libc() {
        assert_eq!(
            std::mem::size_of::<Regs>(),
            std::mem::size_of::<libc::user_regs_struct>()
        );
        assert_eq!(
            std::mem::offset_of!(Regs, orig_rax),
            std::mem::offset_of!(libc::user_regs_struct, orig_rax)
        );
        assert_eq!(
            std::mem::offset_of!(Regs, rsp),
            std::mem::offset_of!(libc::user_regs_struct, rsp)
        );
        assert_eq!(
            std::mem::offset_of!(Regs, gs),
            std::mem::offset_of!(libc::user_regs_struct, gs)
        );
    }
}
#[cfg(target_arch = "x86_64")]
pub use raw::{read_regs, write_regs};

#[cfg(target_arch = "x86_64")]
mod clone {
    /// clone3(2) with a stack of the caller's (`args` names it): the child starts on
    /// that stack and calls `entry(arg)`, which must never return; the parent gets
    /// the child's PID or -errno. glibc has no clone3 wrapper, and `syscall(3)` cannot
    /// be used with CLONE_VM and a new stack: the child would return through a frame
    /// that is not on its stack. So the child's first instructions are ours: the
    /// kernel set its rsp to the top of the new stack (16-aligned, as the call
    /// needs) and left every other register as the parent's but rax (0) and rcx/r11
    /// (clobbered by `syscall`), so `entry` and `arg` wait in r12 and r13.
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
        // rax, rcx and r11 change), the child's never comes back into Rust code here.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov rdi, r13",
                "call r12",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") args,
                in("rsi") size,
                in("r12") entry,
                in("r13") arg,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
}
#[cfg(target_arch = "x86_64")]
pub use clone::clone3_on_stack;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_registers() {
        let mut r = Regs::default();
        let regs = [
            (Reg::SyscallNr, 1),
            (Reg::Arg(0), 2),
            (Reg::Arg(1), 3),
            (Reg::Arg(2), 4),
            (Reg::Arg(3), 5),
            (Reg::Arg(4), 6),
            (Reg::Arg(5), 7),
            (Reg::Result, 8),
            (Reg::StackPointer, 9),
        ];
        for (reg, v) in regs {
            X86_64::set(&mut r, reg, v);
        }
        assert_eq!(
            (
                r.orig_rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9, r.rax, r.rsp
            ),
            (1, 2, 3, 4, 5, 6, 7, 8, 9)
        );
        for (reg, v) in regs {
            assert_eq!(X86_64::get(&r, reg), v, "{reg:?}");
        }
    }

    #[test]
    fn rewinds_over_the_syscall_instruction() {
        let mut r = Regs {
            rip: 0x1002,
            rax: (-38i64) as u64,
            orig_rax: 49,
            ..Regs::default()
        };
        X86_64::rewind_to_syscall(&mut r);
        assert_eq!((r.rip, r.rax, r.orig_rax), (0x1000, 49, 49));
    }
}
