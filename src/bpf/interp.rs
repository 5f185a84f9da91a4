// bpf/interp.rs: a userspace interpreter of the eBPF subset codegen.rs emits, for the
// differential test (bpf/tests.rs): the generated program runs here against
// `Policy::decide` over many requests. Test-only; anything outside the subset panics,
// so a new instruction cannot slip past the test unnoticed. The one helper the
// programs call, bpf_probe_read_kernel, reads `Machine::sk`: the kernel's struct
// sock, whose sk_ipv6only bit is an input of the run.

use super::codegen::PROBE_READ_KERNEL;
use super::insn::{self, Cmp, Insn};

/// Where the context, the struct sock and the stack "are" in the interpreter's
/// address space.
pub const CTX_BASE: u64 = 0x1000_0000;
pub const SK_BASE: u64 = 0x3000_0000;
const STACK_TOP: u64 = 0x2000_0000;
const STACK_SIZE: usize = 512;
pub const CTX_SIZE: usize = 80;
const SK_SIZE: usize = 64;

/// One run's world.
pub struct Machine {
    /// The context as the program reads it (struct bpf_sock_addr or struct bpf_sock).
    pub ctx: [u8; CTX_SIZE],
    /// The first bytes of the kernel's struct sock behind the context.
    pub sk: [u8; SK_SIZE],
    /// The address bpf_probe_read_kernel is given for the struct sock: ctx->sk
    /// (SK_BASE) for a bind program, the context itself (CTX_BASE) for a
    /// CGROUP_SOCK one, whose context is the struct sock.
    pub sk_at: u64,
    /// bpf_probe_read_kernel fails (-EFAULT) instead of reading.
    pub probe_fails: bool,
}

impl Machine {
    /// A machine for `ctx`, with a struct sock of zeros at `sk_at`.
    pub fn new(ctx: [u8; CTX_SIZE], sk_at: u64) -> Self {
        Machine {
            ctx,
            sk: [0; SK_SIZE],
            sk_at,
            probe_fails: false,
        }
    }

    fn bytes<'a>(&'a self, stack: &'a [u8; STACK_SIZE], addr: u64, n: usize) -> &'a [u8] {
        if (CTX_BASE..CTX_BASE + CTX_SIZE as u64).contains(&addr) {
            let o = (addr - CTX_BASE) as usize;
            &self.ctx[o..o + n]
        } else if (STACK_TOP - STACK_SIZE as u64..STACK_TOP).contains(&addr) {
            let o = (addr - (STACK_TOP - STACK_SIZE as u64)) as usize;
            &stack[o..o + n]
        } else {
            panic!("load from {addr:#x}, outside the context and the stack")
        }
    }

    fn read(&self, stack: &[u8; STACK_SIZE], addr: u64, n: usize) -> u64 {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(self.bytes(stack, addr, n));
        u64::from_le_bytes(w)
    }

    /// bpf_probe_read_kernel(dst, size, src): only the struct sock can be read.
    fn probe_read(&self, stack: &mut [u8; STACK_SIZE], dst: u64, size: u64, src: u64) -> u64 {
        assert_eq!(
            src, self.sk_at,
            "probe_read_kernel of something else than the struct sock"
        );
        let size = size as usize;
        assert!(size <= SK_SIZE, "read of {size} bytes");
        let base = STACK_TOP - STACK_SIZE as u64;
        assert!(
            dst >= base && dst + size as u64 <= STACK_TOP,
            "read into {dst:#x}, not the stack"
        );
        let o = (dst - base) as usize;
        if self.probe_fails {
            // The helper zeroes the destination when the read faults.
            stack[o..o + size].fill(0);
            return (-libc::EFAULT) as i64 as u64;
        }
        stack[o..o + size].copy_from_slice(&self.sk[..size]);
        0
    }

    /// Runs `prog` from the first instruction to its exit: R0.
    pub fn run(&mut self, prog: &[Insn]) -> u64 {
        let mut r = [0u64; 11];
        r[1] = CTX_BASE;
        r[10] = STACK_TOP;
        let mut stack = [0u8; STACK_SIZE];
        let mut pc = 0usize;
        for _ in 0..=prog.len() {
            let i = prog[pc];
            pc += 1;
            let (d, s) = (i.dst() as usize, i.src() as usize);
            let addr = |base: u64| base.wrapping_add(i.off as i64 as u64);
            match i.code {
                insn::LDX_W => r[d] = self.read(&stack, addr(r[s]), 4),
                insn::LDX_B => r[d] = self.read(&stack, addr(r[s]), 1),
                insn::LDX_DW => {
                    let a = addr(r[s]);
                    // The verifier allows only ctx->sk as a 64-bit context load.
                    if (CTX_BASE..CTX_BASE + CTX_SIZE as u64).contains(&a) {
                        assert_eq!(
                            a - CTX_BASE,
                            super::codegen::CTX_SK as u64,
                            "u64 load of the context"
                        );
                        r[d] = SK_BASE;
                    } else {
                        r[d] = self.read(&stack, a, 8);
                    }
                }
                insn::STX_W => {
                    let a = addr(r[d]);
                    assert!(
                        (CTX_BASE..CTX_BASE + CTX_SIZE as u64).contains(&a),
                        "store outside the context"
                    );
                    let o = (a - CTX_BASE) as usize;
                    self.ctx[o..o + 4].copy_from_slice(&(r[s] as u32).to_ne_bytes());
                }
                insn::MOV32_K => r[d] = i.imm as u32 as u64,
                insn::MOV64_X => {
                    assert!(d != 10, "the frame pointer is read-only");
                    r[d] = r[s];
                }
                insn::ADD64_K => r[d] = r[d].wrapping_add(i.imm as i64 as u64),
                insn::AND32_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                insn::BE => {
                    assert_eq!(i.imm, 16, "only be16 is emitted");
                    r[d] = u16::from_be_bytes((r[d] as u16).to_ne_bytes()) as u64;
                }
                insn::CALL => {
                    assert_eq!(i.imm, PROBE_READ_KERNEL, "helper {}", i.imm);
                    r[0] = self.probe_read(&mut stack, r[1], r[2], r[3]);
                    // R1-R5 are clobbered: poison them, so a program that reads
                    // one after the call does not pass by luck.
                    for reg in &mut r[1..=5] {
                        *reg = 0xdead_beef_dead_beef;
                    }
                }
                insn::JA => pc += i.off as usize,
                insn::EXIT => return r[0],
                code => match Cmp::from_code(code) {
                    Some(cmp) => {
                        if cmp.holds(r[d] as u32, i.imm as u32) {
                            pc += i.off as usize;
                        }
                    }
                    None => panic!("opcode {code:#x} is not in the interpreted subset"),
                },
            }
        }
        panic!("the program ran longer than its length: a loop")
    }
}
