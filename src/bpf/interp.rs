// bpf/interp.rs: a userspace interpreter of the eBPF subset codegen.rs emits, for the
// differential test (bpf/tests.rs): the generated program runs here against
// `Policy::decide` over many requests. Test-only; anything outside the subset panics,
// so a new instruction cannot slip past the test unnoticed.

use super::codegen::HELPER_SK_STORAGE_GET;
use super::insn::{self, Cmp, Insn};

/// Where things "are" in the interpreter's address space.
pub const CTX_BASE: u64 = 0x1000_0000;
pub const CTX_SIZE: usize = 80;
const STORAGE: u64 = 0x3000_0000;
/// The socket a context's `sk` points at.
pub const SK: u64 = 0x4000_0000;
/// The option value a setsockopt context's `optval` points at.
pub const OPTVAL: u64 = 0x5000_0000;
const MAP: u64 = 0x6000_0000;

/// One run's world: the context (struct bpf_sock_addr, bpf_sock or bpf_sockopt, as
/// bytes), the socket's storage in the socket-storage map (None: no entry), and a
/// setsockopt's option value.
pub struct Machine {
    pub ctx: [u8; CTX_SIZE],
    pub storage: Option<u32>,
    pub optval: Vec<u8>,
}

impl Machine {
    pub fn new(ctx: [u8; CTX_SIZE]) -> Machine {
        Machine {
            ctx,
            storage: None,
            optval: Vec::new(),
        }
    }

    fn read(&self, addr: u64, size: usize) -> u64 {
        let from = |bytes: &[u8], o: usize| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(&bytes[o..o + size]);
            u64::from_ne_bytes(b)
        };
        if (CTX_BASE..CTX_BASE + CTX_SIZE as u64).contains(&addr) {
            from(&self.ctx, (addr - CTX_BASE) as usize)
        } else if addr == STORAGE && size == 4 {
            self.storage.expect("storage read through a null pointer") as u64
        } else if (OPTVAL..OPTVAL + self.optval.len() as u64).contains(&addr) {
            from(&self.optval, (addr - OPTVAL) as usize)
        } else {
            panic!("load of {size} bytes from {addr:#x}")
        }
    }

    /// Runs `prog` from the first instruction to its exit: R0.
    pub fn run(&mut self, prog: &[Insn]) -> u64 {
        let mut r = [0u64; 11];
        r[1] = CTX_BASE;
        r[10] = 0x2000_0000;
        let mut pc = 0usize;
        for _ in 0..=prog.len() {
            let i = prog[pc];
            pc += 1;
            let (d, s) = (i.dst() as usize, i.src() as usize);
            match i.code {
                insn::LDX_W => r[d] = self.read(r[s].wrapping_add(i.off as u64), 4),
                insn::LDX_DW => r[d] = self.read(r[s].wrapping_add(i.off as u64), 8),
                insn::LD_IMM64 => {
                    assert_eq!(s as u8, insn::PSEUDO_MAP_FD, "only map loads");
                    r[d] = MAP;
                    pc += 1;
                }
                insn::STX_W => {
                    let addr = r[d].wrapping_add(i.off as u64);
                    if addr == STORAGE {
                        self.storage = Some(r[s] as u32);
                    } else {
                        assert!(
                            (CTX_BASE..CTX_BASE + CTX_SIZE as u64).contains(&addr),
                            "store to {addr:#x}"
                        );
                        let o = (addr - CTX_BASE) as usize;
                        self.ctx[o..o + 4].copy_from_slice(&(r[s] as u32).to_ne_bytes());
                    }
                }
                insn::MOV32_K => r[d] = i.imm as u32 as u64,
                insn::MOV64_X => r[d] = r[s],
                insn::MOV64_K => r[d] = i.imm as i64 as u64,
                insn::ADD64_K => r[d] = r[d].wrapping_add(i.imm as i64 as u64),
                insn::AND32_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                insn::BE => {
                    assert_eq!(i.imm, 16, "only be16 is emitted");
                    r[d] = u16::from_be_bytes((r[d] as u16).to_ne_bytes()) as u64;
                }
                insn::JA => pc += i.off as usize,
                insn::JEQ64_K => {
                    if r[d] == i.imm as i64 as u64 {
                        pc += i.off as usize
                    }
                }
                insn::JGT64_X => {
                    if r[d] > r[s] {
                        pc += i.off as usize
                    }
                }
                insn::CALL => {
                    assert_eq!(i.imm, HELPER_SK_STORAGE_GET, "only sk_storage_get");
                    assert_eq!(
                        (r[1], r[2], r[3]),
                        (MAP, SK, 0),
                        "sk_storage_get's arguments"
                    );
                    if self.storage.is_none() && r[4] & 1 != 0 {
                        self.storage = Some(0);
                    }
                    r[0] = if self.storage.is_some() { STORAGE } else { 0 };
                    for reg in &mut r[1..=5] {
                        *reg = 0xdead_beef;
                    }
                }
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
