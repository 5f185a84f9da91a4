// bpf/insn.rs: eBPF instructions (struct bpf_insn, <linux/bpf.h>) and a small
// assembler with forward labels, for the few instructions force-bind's programs use:
// 32-bit loads from and stores to the context, 32-bit moves and ANDs, byte swaps,
// 32-bit conditional jumps (JMP32, Linux 5.1) and exit; and, to read IPV6_V6ONLY
// (codegen.rs), a 64-bit load (ctx->sk), a 64-bit add to a stack pointer, a helper
// call and a byte load from the stack.
//
// The conditional jumps are JMP32 on purpose: a context field is loaded zero-extended
// into a 64-bit register, while a 64-bit JMP compares it with its immediate
// sign-extended, so `user_ip4 == 0xffffffff` would never hold.

/// One struct bpf_insn: opcode, dst_reg:4 | src_reg:4, off, imm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one (little-endian bitfield order).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

#[cfg(test)]
impl Insn {
    pub fn dst(self) -> u8 {
        self.regs & 0xf
    }
    pub fn src(self) -> u8 {
        self.regs >> 4
    }
}

// Classes, sizes, modes and operations (<linux/bpf_common.h>, <linux/bpf.h>).
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;
const SIZE_W: u8 = 0x00;
const SIZE_B: u8 = 0x10;
const SIZE_DW: u8 = 0x18;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const MODE_XADD: u8 = 0xc0;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_AND: u8 = 0x50;
const OP_MOV: u8 = 0xb0;
const OP_END: u8 = 0xd0;
/// BPF_END's source bit: BPF_TO_BE.
const TO_BE: u8 = 0x08;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;

pub const LDX_W: u8 = CLASS_LDX | MODE_MEM | SIZE_W;
pub const STX_W: u8 = CLASS_STX | MODE_MEM | SIZE_W;
pub const LDX_B: u8 = CLASS_LDX | MODE_MEM | SIZE_B;
pub const LDX_DW: u8 = CLASS_LDX | MODE_MEM | SIZE_DW;
pub const ADD64_K: u8 = CLASS_ALU64 | OP_ADD | SRC_K;
pub const CALL: u8 = CLASS_JMP | OP_CALL;
pub const MOV32_K: u8 = CLASS_ALU | OP_MOV | SRC_K;
pub const MOV64_X: u8 = CLASS_ALU64 | OP_MOV | SRC_X;
pub const AND32_K: u8 = CLASS_ALU | OP_AND | SRC_K;
pub const BE: u8 = CLASS_ALU | OP_END | TO_BE;
pub const JA: u8 = CLASS_JMP | OP_JA;
pub const EXIT: u8 = CLASS_JMP | OP_EXIT;
// 64-bit stores and moves, a map descriptor as a 64-bit immediate, an atomic add
// (the event programs, event_programs.rs).
pub const STX_DW: u8 = CLASS_STX | MODE_MEM | SIZE_DW;
pub const ST_W: u8 = CLASS_ST | MODE_MEM | SIZE_W;
pub const ST_DW: u8 = CLASS_ST | MODE_MEM | SIZE_DW;
pub const LD_IMM64: u8 = CLASS_LD | MODE_IMM | SIZE_DW;
pub const XADD_DW: u8 = CLASS_STX | MODE_XADD | SIZE_DW;
pub const MOV64_K: u8 = CLASS_ALU64 | OP_MOV | SRC_K;
/// BPF_JMP|BPF_JEQ|BPF_K: the 64-bit compare the verifier needs to see a
/// map_lookup_elem result checked for NULL (it ignores JMP32 there, Linux 5.10).
pub const JEQ64_K: u8 = CLASS_JMP | 0x10 | SRC_K;
/// src_reg of LD_IMM64 when imm is a map descriptor: BPF_PSEUDO_MAP_FD.
const PSEUDO_MAP_FD: u8 = 1;

/// The 32-bit comparisons with an immediate that the programs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

impl Cmp {
    pub const fn code(self) -> u8 {
        CLASS_JMP32 | self as u8 | SRC_K
    }

    #[cfg(test)]
    pub fn from_code(code: u8) -> Option<Cmp> {
        if code & 0x0f != CLASS_JMP32 | SRC_K {
            return None;
        }
        [Cmp::Eq, Cmp::Gt, Cmp::Ne, Cmp::Lt, Cmp::Le]
            .into_iter()
            .find(|c| c.code() == code)
    }

    #[cfg(test)]
    pub fn holds(self, a: u32, b: u32) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Gt => a > b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
        }
    }
}

/// Registers: R0 the return value, R1 the context at entry, R1-R5 a helper's
/// arguments (clobbered by the call), R6-R9 general and kept across calls, R10 the
/// read-only frame pointer.
pub type Reg = u8;
pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R3: Reg = 3;
pub const R4: Reg = 4;
pub const R6: Reg = 6;
pub const R7: Reg = 7;
pub const R8: Reg = 8;
/// The read-only frame pointer: the stack is the 512 bytes below it.
pub const R10: Reg = 10;

const fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

/// A forward-only assembler: jumps name labels, resolved by `finish`.
#[derive(Default)]
pub struct Asm {
    insns: Vec<(Insn, Option<String>)>,
    labels: Vec<(String, usize)>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, i: Insn) {
        self.insns.push((i, None));
    }

    /// dst = *(u32 *)(src + off)
    pub fn load(&mut self, dst: Reg, src: Reg, off: i16) {
        self.push(insn(LDX_W, dst, src, off, 0));
    }
    /// dst = *(u8 *)(src + off)
    pub fn load8(&mut self, dst: Reg, src: Reg, off: i16) {
        self.push(insn(LDX_B, dst, src, off, 0));
    }
    /// dst = *(u64 *)(src + off)
    pub fn load64(&mut self, dst: Reg, src: Reg, off: i16) {
        self.push(insn(LDX_DW, dst, src, off, 0));
    }
    /// dst += imm (64 bits; the immediate sign-extended)
    pub fn add64(&mut self, dst: Reg, imm: i32) {
        self.push(insn(ADD64_K, dst, 0, 0, imm));
    }
    /// R0 = helper(R1, ..., R5); R1-R5 are clobbered.
    pub fn call(&mut self, helper: i32) {
        self.push(insn(CALL, 0, 0, 0, helper));
    }
    /// *(u32 *)(dst + off) = src
    pub fn store(&mut self, dst: Reg, off: i16, src: Reg) {
        self.push(insn(STX_W, dst, src, off, 0));
    }
    /// dst = imm (32 bits, zero-extended)
    pub fn mov32(&mut self, dst: Reg, imm: u32) {
        self.push(insn(MOV32_K, dst, 0, 0, imm as i32));
    }
    pub fn mov64(&mut self, dst: Reg, src: Reg) {
        self.push(insn(MOV64_X, dst, src, 0, 0));
    }
    pub fn and32(&mut self, dst: Reg, imm: u32) {
        self.push(insn(AND32_K, dst, 0, 0, imm as i32));
    }
    /// dst = the low 16 bits of dst taken as big-endian (network order to host order
    /// on a little-endian machine), zero-extended.
    pub fn be16(&mut self, dst: Reg) {
        self.push(insn(BE, dst, 0, 0, 16));
    }
    pub fn exit(&mut self) {
        self.push(insn(EXIT, 0, 0, 0, 0));
    }
    /// R0 = value; exit.
    pub fn ret(&mut self, value: u32) {
        self.mov32(0, value);
        self.exit();
    }
    /// if (u32)reg `cmp` imm goto label
    pub fn jump_if(&mut self, reg: Reg, cmp: Cmp, imm: u32, label: &str) {
        self.insns
            .push((insn(cmp.code(), reg, 0, 0, imm as i32), Some(label.into())));
    }
    pub fn goto(&mut self, label: &str) {
        self.insns.push((insn(JA, 0, 0, 0, 0), Some(label.into())));
    }
    /// *(u64 *)(dst + off) = src
    pub fn store64(&mut self, dst: Reg, off: i16, src: Reg) {
        self.push(insn(STX_DW, dst, src, off, 0));
    }
    /// *(u32 *)(dst + off) = imm
    pub fn store_imm(&mut self, dst: Reg, off: i16, imm: u32) {
        self.push(insn(ST_W, dst, 0, off, imm as i32));
    }
    /// *(u64 *)(dst + off) = imm (sign-extended)
    pub fn store64_imm(&mut self, dst: Reg, off: i16, imm: i32) {
        self.push(insn(ST_DW, dst, 0, off, imm));
    }
    /// dst = imm (sign-extended to 64 bits)
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) {
        self.push(insn(MOV64_K, dst, 0, 0, imm));
    }
    /// lock *(u64 *)(dst + off) += src
    pub fn xadd64(&mut self, dst: Reg, off: i16, src: Reg) {
        self.push(insn(XADD_DW, dst, src, off, 0));
    }
    /// dst = the map behind descriptor `fd` (two instruction slots; the kernel
    /// replaces the descriptor with the map's address at load).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) {
        self.push(insn(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd));
        self.push(insn(0, 0, 0, 0, 0));
    }
    /// if reg == 0 goto label (a 64-bit compare: a NULL check).
    pub fn jump_if_zero64(&mut self, reg: Reg, label: &str) {
        self.insns
            .push((insn(JEQ64_K, reg, 0, 0, 0), Some(label.into())));
    }
    /// Appends instructions already resolved (a self-contained section).
    pub fn extend(&mut self, insns: &[Insn]) {
        self.insns.extend(insns.iter().map(|i| (*i, None)));
    }
    pub fn label(&mut self, name: &str) {
        assert!(
            self.labels.iter().all(|(n, _)| n != name),
            "label {name} defined twice"
        );
        self.labels.push((name.into(), self.insns.len()));
    }

    /// The program, jumps resolved. Panics on an undefined label or a backward jump
    /// (the programs are loop-free by construction).
    pub fn finish(self) -> Vec<Insn> {
        self.insns
            .iter()
            .enumerate()
            .map(|(at, (i, label))| match label {
                None => *i,
                Some(name) => {
                    let target = self
                        .labels
                        .iter()
                        .find(|(n, _)| n == name)
                        .unwrap_or_else(|| panic!("undefined label {name}"))
                        .1;
                    assert!(target > at, "backward jump to {name}");
                    Insn {
                        off: i16::try_from(target - at - 1).expect("jump too long"),
                        ..*i
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel_headers() {
        // Values from <linux/bpf.h>: BPF_LDX|BPF_MEM|BPF_W, BPF_STX|BPF_MEM|BPF_W,
        // BPF_ALU|BPF_MOV|BPF_K, BPF_JMP32|BPF_JEQ|BPF_K, BPF_JMP|BPF_EXIT,
        // BPF_ALU|BPF_END|BPF_TO_BE.
        assert_eq!(LDX_W, 0x61);
        assert_eq!(STX_W, 0x63);
        assert_eq!(MOV32_K, 0xb4);
        assert_eq!(MOV64_X, 0xbf);
        assert_eq!(AND32_K, 0x54);
        assert_eq!(Cmp::Eq.code(), 0x16);
        assert_eq!(Cmp::Ne.code(), 0x56);
        assert_eq!(Cmp::Lt.code(), 0xa6);
        assert_eq!(Cmp::Gt.code(), 0x26);
        assert_eq!(EXIT, 0x95);
        assert_eq!(BE, 0xdc);
        assert_eq!(JA, 0x05);
        // BPF_LDX|BPF_MEM|BPF_B, BPF_LDX|BPF_MEM|BPF_DW, BPF_ALU64|BPF_ADD|BPF_K,
        // BPF_JMP|BPF_CALL.
        assert_eq!(LDX_B, 0x71);
        assert_eq!(LDX_DW, 0x79);
        assert_eq!(ADD64_K, 0x07);
        assert_eq!(CALL, 0x85);
        assert_eq!(size_of::<Insn>(), 8);
        let i = insn(LDX_W, R2, R6, 24, 0);
        assert_eq!((i.dst(), i.src(), i.regs), (2, 6, 0x62));
    }

    #[test]
    fn resolves_forward_labels() {
        let mut a = Asm::new();
        a.jump_if(R2, Cmp::Eq, 7, "out");
        a.goto("out");
        a.ret(1);
        a.label("out");
        a.ret(0);
        let p = a.finish();
        assert_eq!(p[0].off, 3);
        assert_eq!(p[1].off, 2);
        for c in [Cmp::Eq, Cmp::Gt, Cmp::Ne, Cmp::Lt, Cmp::Le] {
            assert_eq!(Cmp::from_code(c.code()), Some(c));
        }
    }
}
