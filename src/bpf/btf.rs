// bpf/btf.rs: just enough of the kernel's BTF (/sys/kernel/btf/vmlinux, Linux 5.4
// with CONFIG_DEBUG_INFO_BTF) to find where struct sock keeps sk_ipv6only, the
// IPV6_V6ONLY setting the bind6 and post_bind6 programs read (codegen.rs). Pure: a
// blob in, a bit offset out, so a synthetic blob tests it. The format is
// Documentation/bpf/btf.rst: a header, a type section of `struct btf_type` records
// each followed by kind-specific data, and a string section.

/// Where sk_ipv6only is: bit `bit` (0 the least significant) of byte `byte` of
/// struct sock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitPlace {
    pub byte: u16,
    pub bit: u8,
}

/// The layout of every kernel force-bind targets (include/net/sock.h, unchanged from
/// 3.x to 6.18): struct sock starts with struct sock_common, whose skc_family (u16 at
/// 16) and skc_state (u8 at 18) are followed by the byte holding skc_reuse:4,
/// skc_reuseport:1, skc_ipv6only:1, skc_net_refcnt:1, allocated from the least
/// significant bit on little-endian machines: bit 5 of byte 19.
pub const KNOWN_LAYOUT: BitPlace = BitPlace { byte: 19, bit: 5 };

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One struct or union of the type section.
struct Composite {
    name: u32,
    kind_flag: bool,
    /// (name offset, type id, offset word) of each member.
    members: Vec<(u32, u32, u32)>,
}

/// The types of `blob` by id (id 0 is void), composites only; None when the blob is
/// not little-endian BTF or is cut short.
fn composites(blob: &[u8]) -> Option<(Vec<Option<Composite>>, &[u8])> {
    if u16::from_le_bytes(blob.get(0..2)?.try_into().ok()?) != MAGIC {
        return None;
    }
    let hdr_len = u32_at(blob, 4)? as usize;
    let (type_off, type_len) = (u32_at(blob, 8)? as usize, u32_at(blob, 12)? as usize);
    let (str_off, str_len) = (u32_at(blob, 16)? as usize, u32_at(blob, 20)? as usize);
    let types = blob.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
    let strings = blob.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
    let mut out = vec![None];
    let mut at = 0;
    // Bounded by the section's length: every record is at least 12 bytes.
    while at < types.len() {
        let name = u32_at(types, at)?;
        let info = u32_at(types, at + 4)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        at += 12;
        // The kind-specific data after each record (btf.rst, "Type encoding").
        let extra = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            3 => 12,                   // ARRAY
            4 | 5 => 12 * vlen,        // STRUCT, UNION: btf_member
            6 | 13 => 8 * vlen,        // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen,      // DATASEC, ENUM64
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
            _ => return None,          // a kind newer than this parser: do not guess
        };
        if kind == KIND_STRUCT || kind == KIND_UNION {
            let members = (0..vlen)
                .map(|i| {
                    let m = at + 12 * i;
                    Some((
                        u32_at(types, m)?,
                        u32_at(types, m + 4)?,
                        u32_at(types, m + 8)?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            out.push(Some(Composite {
                name,
                kind_flag: info >> 31 == 1,
                members,
            }));
        } else {
            out.push(None);
        }
        at += extra;
    }
    Some((out, strings))
}

fn name(strings: &[u8], off: u32) -> &[u8] {
    let rest = strings.get(off as usize..).unwrap_or_default();
    &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
}

/// The bit offset of member `field` in composite `id`, looking into anonymous
/// struct and union members (and only those: typedefs of them do not occur here).
fn bit_offset(
    types: &[Option<Composite>],
    strings: &[u8],
    id: usize,
    field: &[u8],
    depth: u8,
) -> Option<u32> {
    let c = types.get(id)?.as_ref()?;
    for &(m_name, m_type, offset) in &c.members {
        // With kind_flag the word is bitfield_size << 24 | bit_offset.
        let bits = if c.kind_flag {
            offset & 0x00ff_ffff
        } else {
            offset
        };
        if name(strings, m_name) == field {
            return Some(bits);
        }
        if m_name == 0
            && depth < 4
            && let Some(inner) = bit_offset(types, strings, m_type as usize, field, depth + 1)
        {
            return Some(bits + inner);
        }
    }
    None
}

/// Where sk_ipv6only is according to `blob` (the contents of
/// /sys/kernel/btf/vmlinux): struct sock's __sk_common, then sock_common's
/// skc_ipv6only. None when the blob does not say (not BTF, no such struct).
pub fn ipv6only_place(blob: &[u8]) -> Option<BitPlace> {
    let (types, strings) = composites(blob)?;
    let find = |n: &[u8]| {
        types
            .iter()
            .position(|t| t.as_ref().is_some_and(|c| name(strings, c.name) == n))
    };
    let sock = find(b"sock")?;
    let common = find(b"sock_common")?;
    let in_sock = bit_offset(&types, strings, sock, b"__sk_common", 0)?;
    let bits = in_sock + bit_offset(&types, strings, common, b"skc_ipv6only", 0)?;
    Some(BitPlace {
        byte: u16::try_from(bits / 8).ok()?,
        bit: (bits % 8) as u8,
    })
}

/// Whether the kernel of `blob` undoes a bind that post_bind6 refuses: struct proto
/// has put_port, added with the fix that calls it on that path ("net: bpf: Handle
/// return value of BPF_CGROUP_RUN_PROG_INET{4,6}_POST_BIND()", 2022: not in 5.10,
/// in 6.1). Before it the refused socket kept its port in the bind hash (a TCP one
/// could listen() on it, a UDP one kept receiving). None when the blob does not say.
pub fn undoes_refused_binds(blob: &[u8]) -> Option<bool> {
    let (types, strings) = composites(blob)?;
    let proto = types
        .iter()
        .flatten()
        .find(|c| name(strings, c.name) == b"proto" && c.members.len() > 8)?;
    Some(
        proto
            .members
            .iter()
            .any(|&(m, _, _)| name(strings, m) == b"put_port"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: `types` is a list of (name, kind, kind_flag, members or extra
    /// words); strings are interned as given.
    struct Blob {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Blob {
        fn new() -> Self {
            Blob {
                types: Vec::new(),
                strings: vec![0],
            }
        }
        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            at
        }
        fn record(&mut self, name: &str, kind: u32, kind_flag: bool, vlen: usize, size: u32) {
            let n = self.string(name);
            let info = (kind << 24) | vlen as u32 | (kind_flag as u32) << 31;
            for w in [n, info, size] {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }
        fn int(&mut self, name: &str) {
            self.record(name, 1, false, 0, 1);
            self.types.extend_from_slice(&8u32.to_le_bytes());
        }
        fn composite(
            &mut self,
            name: &str,
            kind: u32,
            kind_flag: bool,
            members: &[(&str, u32, u32)],
        ) {
            self.record(name, kind, kind_flag, members.len(), 64);
            for &(m, ty, off) in members {
                let n = self.string(m);
                for w in [n, ty, off] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
        fn finish(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&MAGIC.to_le_bytes());
            b.extend_from_slice(&[1, 0]); // version, flags
            for w in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                b.extend_from_slice(&w.to_le_bytes());
            }
            b.extend_from_slice(&self.types);
            b.extend_from_slice(&self.strings);
            b
        }
    }

    /// The shapes of a real vmlinux: other kinds before, the bitfields in a
    /// kind_flag struct, sock_common reached through __sk_common.
    fn kernel_like(bitfield_at: u32) -> Vec<u8> {
        let mut b = Blob::new();
        b.int("unsigned char"); // id 1
        b.record("", 2, false, 0, 1); // id 2: a pointer to it
        b.record("E", 6, false, 2, 4); // id 3: an enum with two values
        b.types.extend_from_slice(&[0; 16]);
        // id 4: an anonymous union, as sock_common has many.
        b.composite("", KIND_UNION, false, &[("skc_hash", 1, 0)]);
        // id 5: sock_common.
        b.composite(
            "sock_common",
            KIND_STRUCT,
            true,
            &[
                ("", 4, 8 * 8),
                ("skc_family", 1, (8 << 24) | 128),
                ("skc_state", 1, (8 << 24) | 144),
                ("skc_reuse", 1, (4 << 24) | bitfield_at),
                ("skc_reuseport", 1, (1 << 24) | (bitfield_at + 4)),
                ("skc_ipv6only", 1, (1 << 24) | (bitfield_at + 5)),
            ],
        );
        // id 6: sock.
        b.composite(
            "sock",
            KIND_STRUCT,
            false,
            &[("__sk_common", 5, 0), ("sk_rx_dst", 2, 512)],
        );
        b.finish()
    }

    #[test]
    fn finds_the_bit_in_a_kernel_like_blob() {
        assert_eq!(ipv6only_place(&kernel_like(152)), Some(KNOWN_LAYOUT));
        // A layout that moved is followed, not assumed.
        assert_eq!(
            ipv6only_place(&kernel_like(200)),
            Some(BitPlace { byte: 25, bit: 5 })
        );
    }

    #[test]
    fn looks_into_anonymous_members() {
        let mut b = Blob::new();
        b.int("u8"); // 1
        b.composite("", KIND_STRUCT, true, &[("skc_ipv6only", 1, (1 << 24) | 3)]); // 2
        b.composite(
            "sock_common",
            KIND_STRUCT,
            false,
            &[("x", 1, 0), ("", 2, 64)],
        ); // 3
        b.composite(
            "sock",
            KIND_STRUCT,
            false,
            &[("pad", 1, 0), ("__sk_common", 3, 32)],
        ); // 4
        assert_eq!(
            ipv6only_place(&b.finish()),
            Some(BitPlace { byte: 12, bit: 3 })
        );
    }

    #[test]
    fn finds_whether_a_refused_bind_is_undone() {
        let proto = |put_port: bool| {
            let mut b = Blob::new();
            b.int("u8");
            // A struct proto of another header (vlen 1), to be passed over.
            b.composite("proto", KIND_STRUCT, false, &[("x", 1, 0)]);
            let mut members: Vec<(&str, u32, u32)> = [
                "close",
                "pre_connect",
                "connect",
                "disconnect",
                "accept",
                "ioctl",
                "init",
                "destroy",
                "shutdown",
                "hash",
                "unhash",
                "get_port",
            ]
            .iter()
            .enumerate()
            .map(|(i, m)| (*m, 1, 64 * i as u32))
            .collect();
            if put_port {
                members.push(("put_port", 1, 64 * 12));
            }
            b.composite("proto", KIND_STRUCT, false, &members);
            b.finish()
        };
        assert_eq!(undoes_refused_binds(&proto(true)), Some(true));
        assert_eq!(undoes_refused_binds(&proto(false)), Some(false));
        assert_eq!(undoes_refused_binds(&kernel_like(152)), None);
        assert_eq!(undoes_refused_binds(b"junk"), None);
    }

    #[test]
    fn says_nothing_for_what_it_cannot_read() {
        assert_eq!(ipv6only_place(&[]), None);
        assert_eq!(ipv6only_place(b"not btf at all, not at all"), None);
        let good = kernel_like(152);
        // Cut short, big-endian magic, an unknown kind, no such struct.
        assert_eq!(ipv6only_place(&good[..good.len() - 20]), None);
        let mut be = good.clone();
        be[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        assert_eq!(ipv6only_place(&be), None);
        let mut b = Blob::new();
        b.record("future", 31, false, 0, 0);
        assert_eq!(ipv6only_place(&b.finish()), None);
        let mut b = Blob::new();
        b.int("u8");
        b.composite("sock", KIND_STRUCT, false, &[("x", 1, 0)]);
        assert_eq!(ipv6only_place(&b.finish()), None);
    }

    /// This machine's own BTF, when it has one, agrees with the known layout (the
    /// layout codegen.rs falls back on when there is none) and, on 6.1 and later,
    /// has put_port.
    #[test]
    fn this_kernels_btf_agrees_with_the_known_layout() {
        let Ok(blob) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        assert_eq!(ipv6only_place(&blob), Some(KNOWN_LAYOUT));
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release
            .split(['.', '-'])
            .filter_map(|w| w.parse::<u32>().ok());
        if (v.next().unwrap(), v.next().unwrap()) >= (6, 1) {
            assert_eq!(undoes_refused_binds(&blob), Some(true));
        }
    }
}
