// bpf/event_programs.rs: the programs that report binds to force-bind (issue 13,
// events), apart from the policy programs (codegen.rs) that decide them. Pure: the
// helpers this kernel allows and the maps' descriptors in, instructions out, so the
// golden vectors below are what the kernel is given.
//
// A cgroup's programs at one hook run in attach order on one context, every one of
// them even after one returned 0 (the kernel ANDs the verdicts: __BPF_PROG_RUN_ARRAY
// in 5.10, bpf_prog_run_array_cg in 6.18). Measured on the 5.10 VM and on 6.18 by
// attaching the request program after the policy program instead: it still
// recorded a denied bind, and recorded a rewritten one with the new address. So:
// - `request` (BPF_PROG_TYPE_CGROUP_SOCK_ADDR at INET4_BIND/INET6_BIND), attached
//   before the policy program, sees the address the program asked for. Returning 1
//   leaves the verdict to the policy program.
// - `bound` (BPF_PROG_TYPE_CGROUP_SOCK at INET4_POST_BIND/INET6_POST_BIND) runs in
//   __inet_bind/__inet6_bind only once the port is taken, so it sees what the kernel
//   bound (port 0 resolved) and never runs for a bind that failed or was denied. It
//   must return 1: 0 would undo the bind (EPERM).
// A bind's two records are paired by the socket cookie (bpf_get_socket_cookie) when
// both program types may call it, else by the thread (bpf_get_current_pid_tgid):
// a thread is inside one bind at a time. Which helpers a program type may call
// depends on the kernel and its configuration: events.rs probes
// get_current_pid_tgid, get_current_comm and get_socket_cookie at both hooks by
// loading a program that calls each (Debian's 5.10 and 6.1 kernels and 6.18 here
// allow all three), and these programs use the ones there are; a field a program
// cannot fill stays 0.
//
// Both write one fixed-size record with bpf_ringbuf_output (5.8) from the stack.
// When the ring buffer is full the record is lost and the program adds 1 to the
// `drops` array map instead, for force-bind to say so.

use super::btf::BitPlace;
use super::codegen::{CTX_SK, PROBE_READ_KERNEL};
use super::insn::{Asm, Cmp, Insn, R0, R1, R2, R3, R4, R6, R10};

/// The record, as the programs write it and events.rs reads it (native byte order).
pub mod record {
    pub const SIZE: usize = 72;
    /// u32: KIND_REQUEST or KIND_BOUND.
    pub const KIND: usize = 0;
    /// u32: AF_INET or AF_INET6.
    pub const FAMILY: usize = 4;
    /// u64: tgid << 32 | tid; 0 when the program could not ask.
    pub const PID_TGID: usize = 8;
    /// u64: the socket cookie; 0 when the program could not ask.
    pub const COOKIE: usize = 16;
    /// u32 each: the socket's type and protocol.
    pub const TYPE: usize = 24;
    pub const PROTOCOL: usize = 28;
    /// 16 bytes in network order; an IPv4 address in the first 4.
    pub const ADDR: usize = 32;
    /// u32: a request's user_port (network order in the low 16 bits); a bound
    /// record's src_port (host order).
    pub const PORT: usize = 48;
    /// u32, requests on AF_INET6 when the policy decides `[::]` by IPV6_V6ONLY:
    /// MODE_DUAL or MODE_V6ONLY as the policy's bind6 reads it; else 0.
    pub const MODE: usize = 52;
    /// 16 bytes, NUL-padded; zero when the program could not ask.
    pub const COMM: usize = 56;

    pub const KIND_REQUEST: u32 = 1;
    pub const KIND_BOUND: u32 = 2;

    pub const MODE_DUAL: u32 = 1;
    pub const MODE_V6ONLY: u32 = 2;
}

// Helper numbers (enum bpf_func_id, <linux/bpf.h>).
pub const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
pub const HELPER_GET_CURRENT_PID_TGID: i32 = 14;
pub const HELPER_GET_CURRENT_COMM: i32 = 16;
pub const HELPER_GET_SOCKET_COOKIE: i32 = 46;
pub const HELPER_RINGBUF_OUTPUT: i32 = 130;

/// The helpers a program type may call on this kernel, beyond the ring buffer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Helpers {
    pub pid_tgid: bool,
    pub comm: bool,
    pub cookie: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Which hook, and so which context the program reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// struct bpf_sock_addr, at INET4_BIND/INET6_BIND.
    Request,
    /// struct bpf_sock, at INET4_POST_BIND/INET6_POST_BIND.
    Bound,
}

/// Where the context's fields are, per hook (offsetof, <linux/bpf.h>).
struct Layout {
    family: i16,
    sock_type: i16,
    protocol: i16,
    ip4: i16,
    ip6: i16,
    port: i16,
}

const SOCK_ADDR: Layout = Layout {
    family: 0, // user_family
    sock_type: 32,
    protocol: 36,
    ip4: 4,   // user_ip4
    ip6: 8,   // user_ip6[4]
    port: 24, // user_port
};

const SOCK: Layout = Layout {
    family: 4,
    sock_type: 8,
    protocol: 12,
    ip4: 24,  // src_ip4 (readable at INET4_POST_BIND only)
    ip6: 28,  // src_ip6[4] (INET6_POST_BIND only)
    port: 44, // src_port
};

/// The maps the programs write to, by descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maps {
    pub ring: i32,
    pub drops: i32,
}

/// The record starts this far below the frame pointer; the drops key is below it.
const REC: i16 = -(record::SIZE as i16);
const KEY: i16 = REC - 8;

fn at(field: usize) -> i16 {
    REC + field as i16
}

/// The event program for `hook` and `family`. `ipv6only`: where sk_ipv6only is, when
/// the policy decides `[::]` by it (codegen::depends_on_ipv6only); the IPv6 request
/// program then records the mode the policy's bind6 sees, so that force-bind
/// decides the event as the kernel did.
pub fn program(
    hook: Hook,
    family: Family,
    helpers: Helpers,
    maps: Maps,
    ipv6only: Option<BitPlace>,
) -> Vec<Insn> {
    let ctx = R6;
    let layout = match hook {
        Hook::Request => &SOCK_ADDR,
        Hook::Bound => &SOCK,
    };
    let kind = match hook {
        Hook::Request => record::KIND_REQUEST,
        Hook::Bound => record::KIND_BOUND,
    };
    let mut a = Asm::new();
    a.mov64(ctx, R1);
    // The stack is uninitialised, and the verifier refuses to hand unwritten stack
    // to a helper: every byte of the record is written.
    for off in (0..record::SIZE).step_by(8) {
        a.store64_imm(R10, at(off), 0);
    }
    a.store_imm(R10, at(record::KIND), kind);
    a.load(R2, ctx, layout.family);
    a.store(R10, at(record::FAMILY), R2);
    if helpers.pid_tgid {
        a.call(HELPER_GET_CURRENT_PID_TGID);
        a.store64(R10, at(record::PID_TGID), R0);
    }
    if helpers.cookie {
        a.mov64(R1, ctx);
        a.call(HELPER_GET_SOCKET_COOKIE);
        a.store64(R10, at(record::COOKIE), R0);
    }
    a.load(R2, ctx, layout.sock_type);
    a.store(R10, at(record::TYPE), R2);
    a.load(R2, ctx, layout.protocol);
    a.store(R10, at(record::PROTOCOL), R2);
    match family {
        Family::V4 => {
            a.load(R2, ctx, layout.ip4);
            a.store(R10, at(record::ADDR), R2);
        }
        Family::V6 => {
            for word in 0..4 {
                a.load(R2, ctx, layout.ip6 + 4 * word);
                a.store(R10, at(record::ADDR) + 4 * word, R2);
            }
        }
    }
    a.load(R2, ctx, layout.port);
    a.store(R10, at(record::PORT), R2);
    if let (Hook::Request, Family::V6, Some(place)) = (hook, family, ipv6only) {
        // As codegen.rs's read_ipv6only, into the stack below the drops key; a
        // failed read leaves the mode 0 (unknown), as does a place past the copy.
        let len = (i32::from(place.byte) + 1 + 7) / 8 * 8;
        if len <= 256 && place.bit < 8 {
            let buf = KEY - len as i16;
            a.load64(R3, ctx, CTX_SK);
            a.mov64(R1, R10);
            a.add64(R1, i32::from(buf));
            a.mov64_imm(R2, len);
            a.call(PROBE_READ_KERNEL);
            a.jump_if(R0, Cmp::Ne, 0, "mode_done");
            a.load8(R2, R10, buf + place.byte as i16);
            a.and32(R2, 1 << place.bit);
            a.mov32(R3, record::MODE_DUAL);
            a.jump_if(R2, Cmp::Eq, 0, "mode_store");
            a.mov32(R3, record::MODE_V6ONLY);
            a.label("mode_store");
            a.store(R10, at(record::MODE), R3);
            a.label("mode_done");
        }
    }
    if helpers.comm {
        a.mov64(R1, R10);
        a.add64(R1, at(record::COMM) as i32);
        a.mov64_imm(R2, 16);
        a.call(HELPER_GET_CURRENT_COMM);
    }
    a.ld_map_fd(R1, maps.ring);
    a.mov64(R2, R10);
    a.add64(R2, REC as i32);
    a.mov64_imm(R3, record::SIZE as i32);
    a.mov64_imm(R4, 0);
    a.call(HELPER_RINGBUF_OUTPUT);
    a.jump_if_zero64(R0, "out");
    // Full: count the lost record (drops[0] += 1).
    a.store_imm(R10, KEY, 0);
    a.ld_map_fd(R1, maps.drops);
    a.mov64(R2, R10);
    a.add64(R2, KEY as i32);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if_zero64(R0, "out");
    a.mov64_imm(R1, 1);
    a.xadd64(R0, 0, R1);
    a.label("out");
    // Never the verdict: the policy program's (an AND of all the programs').
    a.ret(1);
    a.finish()
}

/// A program that only calls `helper` (with valid arguments) and allows: loaded to
/// learn whether this kernel lets the program type call it.
pub fn helper_probe(helper: i32) -> Vec<Insn> {
    let mut a = Asm::new();
    // get_socket_cookie takes the context, which R1 already is; the others but
    // get_current_comm take nothing.
    if helper == HELPER_GET_CURRENT_COMM {
        a.store64_imm(R10, -16, 0);
        a.store64_imm(R10, -8, 0);
        a.mov64(R1, R10);
        a.add64(R1, -16);
        a.mov64_imm(R2, 16);
    }
    a.call(helper);
    a.ret(1);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::super::insn::{
        ADD64_K, AND32_K, CALL, EXIT, JEQ64_K, LD_IMM64, LDX_B, LDX_DW, LDX_W, MOV32_K, MOV64_K,
        MOV64_X, ST_DW, ST_W, STX_DW, STX_W, XADD_DW,
    };
    use super::*;

    const MAPS: Maps = Maps { ring: 7, drops: 9 };

    fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: dst | src << 4,
            off,
            imm,
        }
    }

    #[test]
    fn encodes_like_the_kernel_headers() {
        // <linux/bpf.h>: BPF_STX|BPF_MEM|BPF_DW, BPF_ST|BPF_MEM|BPF_W and BPF_DW,
        // BPF_LD|BPF_IMM|BPF_DW, BPF_STX|BPF_XADD|BPF_DW, BPF_ALU64|BPF_MOV|BPF_K,
        // BPF_ALU64|BPF_ADD|BPF_K, BPF_JMP|BPF_CALL, BPF_JMP|BPF_JEQ|BPF_K.
        assert_eq!(STX_DW, 0x7b);
        assert_eq!(ST_W, 0x62);
        assert_eq!(ST_DW, 0x7a);
        assert_eq!(LD_IMM64, 0x18);
        assert_eq!(XADD_DW, 0xdb);
        assert_eq!(MOV64_K, 0xb7);
        assert_eq!(ADD64_K, 0x07);
        assert_eq!(CALL, 0x85);
        assert_eq!(JEQ64_K, 0x15);
    }

    /// The common tail: ringbuf_output from the stack, and the drop count.
    fn tail(v: &mut Vec<Insn>) {
        v.extend([
            i(LD_IMM64, 1, 1, 0, 7),
            i(0, 0, 0, 0, 0),
            i(MOV64_X, 2, 10, 0, 0),
            i(ADD64_K, 2, 0, 0, -72),
            i(MOV64_K, 3, 0, 0, 72),
            i(MOV64_K, 4, 0, 0, 0),
            i(CALL, 0, 0, 0, 130),
            i(JEQ64_K, 0, 0, 9, 0),
            i(ST_W, 10, 0, -80, 0),
            i(LD_IMM64, 1, 1, 0, 9),
            i(0, 0, 0, 0, 0),
            i(MOV64_X, 2, 10, 0, 0),
            i(ADD64_K, 2, 0, 0, -80),
            i(CALL, 0, 0, 0, 1),
            i(JEQ64_K, 0, 0, 2, 0),
            i(MOV64_K, 1, 0, 0, 1),
            i(XADD_DW, 0, 1, 0, 0),
            i(MOV32_K, 0, 0, 0, 1),
            i(EXIT, 0, 0, 0, 0),
        ]);
    }

    fn zero_record(v: &mut Vec<Insn>) {
        v.push(i(MOV64_X, 6, 1, 0, 0));
        for off in (-72..0).step_by(8) {
            v.push(i(ST_DW, 10, 0, off, 0));
        }
    }

    /// The request program for IPv4 with every helper (5.10 and 6.18).
    #[test]
    fn request4_with_every_helper() {
        let all = Helpers {
            pid_tgid: true,
            comm: true,
            cookie: true,
        };
        let mut want = Vec::new();
        zero_record(&mut want);
        want.extend([
            i(ST_W, 10, 0, -72, 1),
            i(LDX_W, 2, 6, 0, 0),
            i(STX_W, 10, 2, -68, 0),
            i(CALL, 0, 0, 0, 14),
            i(STX_DW, 10, 0, -64, 0),
            i(MOV64_X, 1, 6, 0, 0),
            i(CALL, 0, 0, 0, 46),
            i(STX_DW, 10, 0, -56, 0),
            i(LDX_W, 2, 6, 32, 0),
            i(STX_W, 10, 2, -48, 0),
            i(LDX_W, 2, 6, 36, 0),
            i(STX_W, 10, 2, -44, 0),
            i(LDX_W, 2, 6, 4, 0),
            i(STX_W, 10, 2, -40, 0),
            i(LDX_W, 2, 6, 24, 0),
            i(STX_W, 10, 2, -24, 0),
            i(MOV64_X, 1, 10, 0, 0),
            i(ADD64_K, 1, 0, 0, -16),
            i(MOV64_K, 2, 0, 0, 16),
            i(CALL, 0, 0, 0, 16),
        ]);
        tail(&mut want);
        assert_eq!(program(Hook::Request, Family::V4, all, MAPS, None), want);
    }

    /// A post-bind program for IPv6 on a kernel that allowed no helper beyond the
    /// ring buffer's: src_ip6 word by word.
    #[test]
    fn bound6_without_helpers() {
        let mut want = Vec::new();
        zero_record(&mut want);
        want.extend([
            i(ST_W, 10, 0, -72, 2),
            i(LDX_W, 2, 6, 4, 0),
            i(STX_W, 10, 2, -68, 0),
            i(LDX_W, 2, 6, 8, 0),
            i(STX_W, 10, 2, -48, 0),
            i(LDX_W, 2, 6, 12, 0),
            i(STX_W, 10, 2, -44, 0),
            i(LDX_W, 2, 6, 28, 0),
            i(STX_W, 10, 2, -40, 0),
            i(LDX_W, 2, 6, 32, 0),
            i(STX_W, 10, 2, -36, 0),
            i(LDX_W, 2, 6, 36, 0),
            i(STX_W, 10, 2, -32, 0),
            i(LDX_W, 2, 6, 40, 0),
            i(STX_W, 10, 2, -28, 0),
            i(LDX_W, 2, 6, 44, 0),
            i(STX_W, 10, 2, -24, 0),
        ]);
        tail(&mut want);
        assert_eq!(
            program(Hook::Bound, Family::V6, Helpers::default(), MAPS, None),
            want
        );
    }

    /// The IPv6 request program, where the policy decides `[::]` by IPV6_V6ONLY: the
    /// program without it, and the mode read (bit 5 of byte 19, a 24-byte copy below
    /// the drops key) inserted right after the port, before the ring buffer output.
    #[test]
    fn request6_records_the_mode() {
        let without = program(Hook::Request, Family::V6, Helpers::default(), MAPS, None);
        let with = program(
            Hook::Request,
            Family::V6,
            Helpers::default(),
            MAPS,
            Some(BitPlace { byte: 19, bit: 5 }),
        );
        // Where the tail starts: the LD_IMM64 of the ring buffer.
        let tail = without.iter().position(|x| x.code == LD_IMM64).unwrap();
        let block = [
            i(LDX_DW, 3, 6, 64, 0),
            i(MOV64_X, 1, 10, 0, 0),
            i(ADD64_K, 1, 0, 0, -104),
            i(MOV64_K, 2, 0, 0, 24),
            i(CALL, 0, 0, 0, 113),
            i(0x56, 0, 0, 6, 0),
            i(LDX_B, 2, 10, -85, 0),
            i(AND32_K, 2, 0, 0, 32),
            i(MOV32_K, 3, 0, 0, 1),
            i(0x16, 2, 0, 1, 0),
            i(MOV32_K, 3, 0, 0, 2),
            i(STX_W, 10, 3, -20, 0),
        ];
        let mut want = without[..tail].to_vec();
        want.extend(block);
        want.extend_from_slice(&without[tail..]);
        assert_eq!(with, want);
        // The other programs do not read it.
        for (hook, family) in [
            (Hook::Request, Family::V4),
            (Hook::Bound, Family::V4),
            (Hook::Bound, Family::V6),
        ] {
            assert_eq!(
                program(
                    hook,
                    family,
                    Helpers::default(),
                    MAPS,
                    Some(BitPlace { byte: 19, bit: 5 })
                ),
                program(hook, family, Helpers::default(), MAPS, None)
            );
        }
    }

    /// A post-bind program with the thread but no cookie (paired by thread)
    /// reads src_ip4 and src_port.
    #[test]
    fn bound4_with_pid_only() {
        let helpers = Helpers {
            pid_tgid: true,
            ..Helpers::default()
        };
        let mut want = Vec::new();
        zero_record(&mut want);
        want.extend([
            i(ST_W, 10, 0, -72, 2),
            i(LDX_W, 2, 6, 4, 0),
            i(STX_W, 10, 2, -68, 0),
            i(CALL, 0, 0, 0, 14),
            i(STX_DW, 10, 0, -64, 0),
            i(LDX_W, 2, 6, 8, 0),
            i(STX_W, 10, 2, -48, 0),
            i(LDX_W, 2, 6, 12, 0),
            i(STX_W, 10, 2, -44, 0),
            i(LDX_W, 2, 6, 24, 0),
            i(STX_W, 10, 2, -40, 0),
            i(LDX_W, 2, 6, 44, 0),
            i(STX_W, 10, 2, -24, 0),
        ]);
        tail(&mut want);
        assert_eq!(program(Hook::Bound, Family::V4, helpers, MAPS, None), want);
    }

    #[test]
    fn probes() {
        assert_eq!(
            helper_probe(HELPER_GET_CURRENT_PID_TGID),
            vec![
                i(CALL, 0, 0, 0, 14),
                i(MOV32_K, 0, 0, 0, 1),
                i(EXIT, 0, 0, 0, 0)
            ]
        );
        assert_eq!(
            helper_probe(HELPER_GET_CURRENT_COMM),
            vec![
                i(ST_DW, 10, 0, -16, 0),
                i(ST_DW, 10, 0, -8, 0),
                i(MOV64_X, 1, 10, 0, 0),
                i(ADD64_K, 1, 0, 0, -16),
                i(MOV64_K, 2, 0, 0, 16),
                i(CALL, 0, 0, 0, 16),
                i(MOV32_K, 0, 0, 0, 1),
                i(EXIT, 0, 0, 0, 0)
            ]
        );
    }
}
