/*
 * tests/vm/oldkernel-aarch64.h: force-included (-include) when tests/vm/run.sh
 * --arch arm64 builds the shared probe/oldkernel.c for aarch64.
 *
 * oldkernel.c writes its filter's native-ABI section for the ABI it is compiled
 * for, except for the one test that picks the section: seccomp_data.arch ==
 * AUDIT_ARCH_X86_64. Everything else in that section is already right on aarch64:
 * seccomp, ioctl and ptrace are the compiling target's __NR_* (277, 29, 117 here),
 * the numbers from 424 on are the same on every architecture (the syscall tables
 * were unified at 424, Linux 5.1), and the ioctl and ptrace request numbers it
 * matches (SECCOMP_IOCTL_NOTIF_*, PTRACE_GET_SYSCALL_INFO) are the generic ones
 * arm64 uses. So the section only has to be selected by AUDIT_ARCH_AARCH64.
 *
 * <linux/audit.h> has an include guard: included here first, its #include in
 * oldkernel.c is empty, and the redefinition below is what oldkernel.c sees. The
 * scenario "auto picks ptrace on an emulated 4.19" fails if this stops working.
 */
#include <linux/audit.h>
#undef AUDIT_ARCH_X86_64
#define AUDIT_ARCH_X86_64 AUDIT_ARCH_AARCH64
