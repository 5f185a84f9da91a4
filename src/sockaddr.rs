// sockaddr.rs: decode and encode the raw `struct sockaddr` bytes a program hands to
// bind(2). Pure: no syscalls. The engines read the bytes from the target, this module
// says what they mean, and builds the bytes of the replacement address.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub const AF_UNSPEC: u16 = libc::AF_UNSPEC as u16;
pub const AF_INET: u16 = libc::AF_INET as u16;
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// sizeof(struct sockaddr_in): inet_bind() rejects anything shorter with EINVAL.
pub const SOCKADDR_IN_LEN: usize = 16;
/// sizeof(struct sockaddr_in6): the longest address we ever write.
pub const SOCKADDR_IN6_LEN: usize = 28;
/// SIN6_LEN_RFC2133: inet6_bind() accepts a sockaddr_in6 without sin6_scope_id.
pub const SOCKADDR_IN6_MIN_LEN: usize = 24;
/// sizeof(struct sockaddr_storage): move_addr_to_kernel() refuses longer with EINVAL.
pub const SOCKADDR_MAX_LEN: usize = 128;

/// What the bytes passed to bind() are, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// An IPv4 or IPv6 address the policy can judge.
    Inet(SocketAddr),
    /// A family the policy never touches (AF_UNIX, AF_NETLINK, ...).
    OtherFamily(u16),
    /// Too short to be a valid address of its family: the kernel fails the bind with
    /// EINVAL on its own, so there is nothing to decide.
    TooShort { family: Option<u16>, len: usize },
    /// Longer than sockaddr_storage: the kernel fails the bind with EINVAL.
    TooLong(usize),
}

/// Decodes the first `bytes.len()` bytes (the addrlen the program passed, already
/// clamped by the caller to what it could read) of a sockaddr.
pub fn decode(bytes: &[u8]) -> Decoded {
    let len = bytes.len();
    if len > SOCKADDR_MAX_LEN {
        return Decoded::TooLong(len);
    }
    if len < 2 {
        return Decoded::TooShort { family: None, len };
    }
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
    match family {
        AF_INET => decode_v4(bytes).unwrap_or(Decoded::TooShort {
            family: Some(family),
            len,
        }),
        // inet_bind() accepts AF_UNSPEC with INADDR_ANY "for compatibility" and binds it
        // as AF_INET: judge it as the 0.0.0.0 bind it really is. AF_UNSPEC with any
        // other address fails with EAFNOSUPPORT, so it is nobody's business.
        AF_UNSPEC => match decode_v4(bytes) {
            Some(Decoded::Inet(SocketAddr::V4(a))) if a.ip().is_unspecified() => {
                Decoded::Inet(SocketAddr::V4(a))
            }
            Some(_) => Decoded::OtherFamily(family),
            None => Decoded::TooShort {
                family: Some(family),
                len,
            },
        },
        AF_INET6 => {
            if len < SOCKADDR_IN6_MIN_LEN {
                return Decoded::TooShort {
                    family: Some(family),
                    len,
                };
            }
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let flowinfo = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
            let octets: [u8; 16] = bytes[8..24].try_into().unwrap();
            let scope_id = if len >= SOCKADDR_IN6_LEN {
                u32::from_ne_bytes(bytes[24..28].try_into().unwrap())
            } else {
                0
            };
            Decoded::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                flowinfo,
                scope_id,
            )))
        }
        other => Decoded::OtherFamily(other),
    }
}

fn decode_v4(bytes: &[u8]) -> Option<Decoded> {
    if bytes.len() < SOCKADDR_IN_LEN {
        return None;
    }
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
    Some(Decoded::Inet(SocketAddr::V4(SocketAddrV4::new(ip, port))))
}

/// What a bind of `bytes` on an IP socket of family `domain` really binds, as far as
/// the policy must judge it; None when the kernel refuses the bytes whatever they
/// hold (too short or too long for the socket's family), so there is nothing to judge.
///
/// Not every protocol checks the family field: raw_bind() (SOCK_RAW IPv4) reads a
/// sockaddr_in whatever `sin_family` says, and SCTP on an AF_INET6 socket binds a
/// sockaddr_in as the IPv4 address. So the bytes are read as the socket's own
/// family's struct, and an AF_INET address on an AF_INET6 socket as the v4-mapped
/// address it binds. `.1` says whether the bytes were of the socket's family (when
/// not, TCP and UDP refuse them with EAFNOSUPPORT, and the others bind what was
/// judged, so the bytes may still be bound as given).
pub fn judged_address(domain: i32, bytes: &[u8]) -> Option<(SocketAddr, bool)> {
    let decoded = decode(bytes);
    match (domain, decoded) {
        (libc::AF_INET, Decoded::Inet(SocketAddr::V4(a))) => Some((SocketAddr::V4(a), true)),
        (libc::AF_INET6, Decoded::Inet(SocketAddr::V6(a))) => Some((SocketAddr::V6(a), true)),
        (libc::AF_INET6, Decoded::Inet(SocketAddr::V4(a))) => {
            Some((SocketAddr::V6(v4_mapped(a)), false))
        }
        (_, Decoded::TooLong(_)) => None,
        (libc::AF_INET, _) if bytes.len() >= SOCKADDR_IN_LEN => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some((SocketAddr::V4(SocketAddrV4::new(ip, port)), false))
        }
        (libc::AF_INET6, _) if bytes.len() >= SOCKADDR_IN6_MIN_LEN => {
            let mut as_v6 = [0u8; SOCKADDR_IN6_LEN];
            as_v6[..bytes.len().min(SOCKADDR_IN6_LEN)]
                .copy_from_slice(&bytes[..bytes.len().min(SOCKADDR_IN6_LEN)]);
            as_v6[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
            match decode(&as_v6[..bytes.len().min(SOCKADDR_IN6_LEN)]) {
                Decoded::Inet(a) => Some((a, false)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The raw bytes of a sockaddr_in or sockaddr_in6, ready to hand to the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawSockaddr {
    bytes: [u8; SOCKADDR_IN6_LEN],
    len: usize,
}

impl RawSockaddr {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for RawSockaddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawSockaddr({:02x?})", self.as_bytes())
    }
}

/// Encodes `addr` in the layout the kernel expects: sockaddr_in for V4, a full
/// sockaddr_in6 (with scope id) for V6. Byte order: family host, port and address
/// network, flowinfo network, scope id host, as in <netinet/in.h>.
pub fn encode(addr: &SocketAddr) -> RawSockaddr {
    let mut bytes = [0u8; SOCKADDR_IN6_LEN];
    let len = match addr {
        SocketAddr::V4(a) => {
            bytes[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
            bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
            bytes[4..8].copy_from_slice(&a.ip().octets());
            SOCKADDR_IN_LEN
        }
        SocketAddr::V6(a) => {
            bytes[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
            bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
            bytes[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            bytes[8..24].copy_from_slice(&a.ip().octets());
            bytes[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            SOCKADDR_IN6_LEN
        }
    };
    RawSockaddr { bytes, len }
}

/// `::ffff:a.b.c.d`, the form an IPv4 address takes on a dual-stack AF_INET6 socket.
pub fn v4_mapped(addr: SocketAddrV4) -> SocketAddrV6 {
    SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_bytes(family: u16, port: u16, ip: [u8; 4], len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len.max(16)];
        b[0..2].copy_from_slice(&family.to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b.truncate(len);
        b
    }

    #[test]
    fn decodes_table() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let v6_full = encode(&sa("[fe80::1%7]:443")).as_bytes().to_vec();
        let cases: Vec<(&str, Vec<u8>, Decoded)> = vec![
            (
                "v4",
                v4_bytes(AF_INET, 80, [127, 0, 0, 1], 16),
                Decoded::Inet(sa("127.0.0.1:80")),
            ),
            (
                "v4 long len",
                v4_bytes(AF_INET, 80, [10, 0, 0, 1], 128),
                Decoded::Inet(sa("10.0.0.1:80")),
            ),
            (
                "v4 short",
                v4_bytes(AF_INET, 80, [1, 2, 3, 4], 15),
                Decoded::TooShort {
                    family: Some(AF_INET),
                    len: 15,
                },
            ),
            (
                "unspec any",
                v4_bytes(AF_UNSPEC, 99, [0, 0, 0, 0], 16),
                Decoded::Inet(sa("0.0.0.0:99")),
            ),
            (
                "unspec addr",
                v4_bytes(AF_UNSPEC, 99, [1, 0, 0, 0], 16),
                Decoded::OtherFamily(AF_UNSPEC),
            ),
            (
                "unspec short",
                v4_bytes(AF_UNSPEC, 99, [0, 0, 0, 0], 8),
                Decoded::TooShort {
                    family: Some(AF_UNSPEC),
                    len: 8,
                },
            ),
            (
                "v6 full",
                v6_full.clone(),
                Decoded::Inet(sa("[fe80::1%7]:443")),
            ),
            (
                "v6 rfc2133",
                v6_full[..24].to_vec(),
                Decoded::Inet(sa("[fe80::1]:443")),
            ),
            (
                "v6 short",
                v6_full[..23].to_vec(),
                Decoded::TooShort {
                    family: Some(AF_INET6),
                    len: 23,
                },
            ),
            (
                "empty",
                vec![],
                Decoded::TooShort {
                    family: None,
                    len: 0,
                },
            ),
            (
                "one byte",
                vec![2],
                Decoded::TooShort {
                    family: None,
                    len: 1,
                },
            ),
            ("unix", vec![1, 0, b'/', b'x'], Decoded::OtherFamily(1)),
            ("netlink", vec![16, 0, 0, 0], Decoded::OtherFamily(16)),
            ("too long", vec![2; 129], Decoded::TooLong(129)),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode(&bytes), want, "{name}");
        }
    }

    #[test]
    fn encode_matches_libc_layout() {
        let raw = encode(&"192.0.2.7:8080".parse().unwrap());
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = 8080u16.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes([192, 0, 2, 7]);
        // SAFETY: reading the bytes of a fully initialised repr(C) struct.
        let want = unsafe {
            std::slice::from_raw_parts(&sin as *const _ as *const u8, std::mem::size_of_val(&sin))
        };
        assert_eq!(raw.as_bytes(), want);

        let raw = encode(&"[2001:db8::5%3]:53".parse().unwrap());
        // SAFETY: as above.
        let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = 53u16.to_be();
        sin6.sin6_addr.s6_addr = "2001:db8::5".parse::<Ipv6Addr>().unwrap().octets();
        sin6.sin6_scope_id = 3;
        // SAFETY: as above.
        let want = unsafe {
            std::slice::from_raw_parts(&sin6 as *const _ as *const u8, std::mem::size_of_val(&sin6))
        };
        assert_eq!(raw.as_bytes(), want);
    }

    #[test]
    fn round_trips() {
        for s in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::]:0",
            "[::ffff:127.0.0.1]:1",
            "[fe80::1%4294967295]:9",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(decode(encode(&a).as_bytes()), Decoded::Inet(a), "{s}");
        }
    }

    #[test]
    fn judges_what_the_kernel_binds() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let v4 = |family: u16| v4_bytes(family, 80, [198, 51, 100, 7], 16);
        let v6 = encode(&sa("[2001:db8::7]:80")).as_bytes().to_vec();
        let mut v6_holding_v4 = v6.clone();
        v6_holding_v4[4..8].copy_from_slice(&[198, 51, 100, 7]);
        type Case = (&'static str, i32, Vec<u8>, Option<(SocketAddr, bool)>);
        let cases: Vec<Case> = vec![
            (
                "v4 on v4",
                libc::AF_INET,
                v4(AF_INET),
                Some((sa("198.51.100.7:80"), true)),
            ),
            (
                "unspec 0.0.0.0",
                libc::AF_INET,
                v4_bytes(AF_UNSPEC, 80, [0; 4], 16),
                Some((sa("0.0.0.0:80"), true)),
            ),
            // raw_bind() reads a sockaddr_in whatever the family says.
            (
                "family 0x1234 on v4",
                libc::AF_INET,
                v4(0x1234),
                Some((sa("198.51.100.7:80"), false)),
            ),
            (
                "unspec with an address on v4",
                libc::AF_INET,
                v4(AF_UNSPEC),
                Some((sa("198.51.100.7:80"), false)),
            ),
            (
                "v6 bytes on v4",
                libc::AF_INET,
                v6_holding_v4,
                Some((sa("198.51.100.7:80"), false)),
            ),
            (
                "short on v4",
                libc::AF_INET,
                v4(0x1234)[..15].to_vec(),
                None,
            ),
            (
                "v6 on v6",
                libc::AF_INET6,
                v6.clone(),
                Some((sa("[2001:db8::7]:80"), true)),
            ),
            // SCTP on AF_INET6 binds a sockaddr_in as IPv4.
            (
                "v4 on v6",
                libc::AF_INET6,
                v4(AF_INET),
                Some((sa("[::ffff:198.51.100.7]:80"), false)),
            ),
            (
                "other family on v6",
                libc::AF_INET6,
                {
                    let mut b = v6.clone();
                    b[0] = 0x34;
                    b[1] = 0x12;
                    b
                },
                Some((sa("[2001:db8::7]:80"), false)),
            ),
            ("short on v6", libc::AF_INET6, v6[..20].to_vec(), None),
            ("too long", libc::AF_INET, vec![2; 129], None),
        ];
        for (name, domain, bytes, want) in cases {
            assert_eq!(judged_address(domain, &bytes), want, "{name}");
        }
    }

    #[test]
    fn maps_v4() {
        assert_eq!(
            v4_mapped("127.0.0.1:8080".parse().unwrap()).to_string(),
            "[::ffff:127.0.0.1]:8080"
        );
    }
}
