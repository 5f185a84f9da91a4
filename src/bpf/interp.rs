// bpf/interp.rs: a userspace interpreter of the eBPF subset codegen.rs emits, for the
// differential test (bpf/tests.rs): the generated program runs here against
// `Policy::decide` over many requests. Test-only; anything outside the subset panics,
// so a new instruction cannot slip past the test unnoticed.

use super::insn::{self, Cmp, Insn};

/// Where the context and the stack "are" in the interpreter's address space.
const CTX_BASE: u64 = 0x1000_0000;
const STACK_TOP: u64 = 0x2000_0000;
const STACK_SIZE: usize = 512;

/// One run's world: the context (struct bpf_sock_addr or struct bpf_sock, as bytes).
pub struct Machine {
    pub ctx: [u8; 64],
}

impl Machine {
    fn read(&self, stack: &[u8; STACK_SIZE], addr: u64) -> u32 {
        let bytes = self.bytes(stack, addr);
        u32::from_ne_bytes(bytes.try_into().expect("4 bytes"))
    }

    fn bytes<'a>(&'a self, stack: &'a [u8; STACK_SIZE], addr: u64) -> &'a [u8] {
        if (CTX_BASE..CTX_BASE + 64).contains(&addr) {
            let o = (addr - CTX_BASE) as usize;
            &self.ctx[o..o + 4]
        } else if (STACK_TOP - STACK_SIZE as u64..STACK_TOP).contains(&addr) {
            let o = (addr - (STACK_TOP - STACK_SIZE as u64)) as usize;
            &stack[o..o + 4]
        } else {
            panic!("load from {addr:#x}, outside the context and the stack")
        }
    }

    /// Runs `prog` from the first instruction to its exit: R0.
    pub fn run(&mut self, prog: &[Insn]) -> u64 {
        let mut r = [0u64; 11];
        r[1] = CTX_BASE;
        r[10] = STACK_TOP;
        let stack = [0u8; STACK_SIZE];
        let mut pc = 0usize;
        for _ in 0..=prog.len() {
            let i = prog[pc];
            pc += 1;
            let (d, s) = (i.dst() as usize, i.src() as usize);
            match i.code {
                insn::LDX_W => r[d] = self.read(&stack, r[s].wrapping_add(i.off as u64)) as u64,
                insn::STX_W => {
                    let addr = r[d].wrapping_add(i.off as u64);
                    assert!(
                        (CTX_BASE..CTX_BASE + 64).contains(&addr),
                        "store outside the context"
                    );
                    let o = (addr - CTX_BASE) as usize;
                    self.ctx[o..o + 4].copy_from_slice(&(r[s] as u32).to_ne_bytes());
                }
                insn::MOV32_K => r[d] = i.imm as u32 as u64,
                insn::MOV64_X => r[d] = r[s],
                insn::AND32_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                insn::BE => {
                    assert_eq!(i.imm, 16, "only be16 is emitted");
                    r[d] = u16::from_be_bytes((r[d] as u16).to_ne_bytes()) as u64;
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
