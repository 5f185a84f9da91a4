//! tests/fuzz_smoke.rs: the fuzz targets' checks (fuzz/checks.rs) on a fixed,
//! pseudo-random corpus, on the stable toolchain and in well under a few seconds, so
//! every `cargo test` runs them. The corpus is built from a seed: rule-like strings
//! from an alphabet of the rule grammar's own pieces, well-formed rules with random
//! numbers (for the round trip), random bytes, and sockaddrs of every interesting
//! family and length. A failure names the input; `cargo +nightly fuzz run` (see
//! fuzz/run.sh) searches further.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::time::Instant;

/// splitmix64: small, deterministic, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Pieces of the rule grammar and its near misses.
const PIECES: &[&str] = &[
    "0",
    "1",
    "7",
    "80",
    "8080",
    "65535",
    "65536",
    "99999999999",
    "-1",
    "+1",
    "00",
    "08",
    "127.0.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "::",
    "::1",
    "fe80::1",
    "::ffff:1.2.3.4",
    "2001:db8::",
    "1:2:3:4:5:6:7:8",
    "%",
    "%eth0",
    "[",
    "]",
    "[::]",
    "[::1]",
    ":",
    "::",
    "/",
    "=",
    "*",
    "-",
    ",",
    " ",
    ".",
    "fd",
    "sd",
    "fd=",
    "fd-",
    "sd=",
    "sd-",
    "allow",
    "deny",
    "ALLOW",
    "http",
    "32",
    "33",
    "128",
    "129",
    "\0",
    "é",
    "\u{202e}",
    "\n",
    "4294967295",
    "2147483647",
    "2147483648",
];

fn rule_like(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..1 + rng.below(8) {
        s.push_str(rng.pick(PIECES));
    }
    s
}

fn ip_text(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!(
            "{}.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        1 => format!("[{:x}::{:x}]", rng.below(0x10000), rng.below(0x10000)),
        2 => format!("[::ffff:127.0.0.{}]", rng.below(256)),
        _ => rng
            .pick(&["127.0.0.1", "0.0.0.0", "[::]", "[::1]", "::1"])
            .to_string(),
    }
}

fn port_text(rng: &mut Rng) -> String {
    let a = rng.below(70_000);
    match rng.below(4) {
        0 => format!(":{a}"),
        1 => format!(":{a}-{}", rng.below(70_000)),
        2 => ":*".into(),
        _ => String::new(),
    }
}

/// A rule with random numbers in every well-formed shape (and some malformed ones:
/// ports above 65535, prefixes too long, reversed ranges).
fn well_formed(rng: &mut Rng) -> String {
    let matcher = match rng.below(4) {
        0 => "*".to_string(),
        1 => format!(":{}-{}", rng.below(70_000), rng.below(70_000)),
        _ => {
            let prefix = match rng.below(3) {
                0 => format!("/{}", rng.below(140)),
                _ => String::new(),
            };
            format!("{}{}{prefix}", ip_text(rng), port_text(rng))
        }
    };
    let action = match rng.below(6) {
        0 => format!("fd={}", rng.below(2000)),
        1 => format!("sd={}", rng.pick(&["0", "3", "web", "x=y", "07"])),
        2 => rng.pick(&["allow", "deny"]).to_string(),
        _ => format!("{}{}", ip_text(rng), port_text(rng).replace('-', "")),
    };
    match rng.below(3) {
        0 => action,
        _ => format!("{matcher}={action}"),
    }
}

const FAMILIES: &[u16] = &[
    libc::AF_INET as u16,
    libc::AF_INET6 as u16,
    libc::AF_UNSPEC as u16,
    libc::AF_UNIX as u16,
    0x1234,
    0xffff,
];
const LENGTHS: &[usize] = &[
    0, 1, 2, 3, 15, 16, 17, 23, 24, 27, 28, 29, 127, 128, 129, 4096,
];

fn sockaddr_like(rng: &mut Rng) -> Vec<u8> {
    let len = rng.pick(LENGTHS);
    let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if len >= 2 {
        b[..2].copy_from_slice(&rng.pick(FAMILIES).to_ne_bytes());
    }
    // Often an all-zero address (0.0.0.0, ::), which AF_UNSPEC treats specially.
    if len >= 8 && rng.below(3) == 0 {
        b[4..8].fill(0);
    }
    b
}

const INPUTS: usize = 200_000;
const SEED: u64 = 0x5eed_f0ce_b1d0;

#[test]
fn fuzz_targets_hold_on_a_fixed_corpus() {
    let start = Instant::now();
    let mut rng = Rng(SEED);
    for i in 0..INPUTS {
        match i % 8 {
            0 | 1 => checks::rule_text(&rule_like(&mut rng)),
            2 | 3 => checks::rule_text(&well_formed(&mut rng)),
            4 => checks::rule_parser(&rng.bytes(24)),
            5 => checks::sockaddr_decode(&sockaddr_like(&mut rng)),
            6 => checks::sockaddr_decode(&rng.bytes(40)),
            _ => {
                let mut input = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let line = match rng.below(3) {
                        0 => format!("b {}", well_formed(&mut rng)),
                        1 => "-d".to_string(),
                        _ => well_formed(&mut rng),
                    };
                    input.extend_from_slice(line.as_bytes());
                    input.push(b'\n');
                }
                input.push(0);
                input.extend(sockaddr_like(&mut rng));
                checks::policy_decide(&input);
            }
        }
    }
    eprintln!("{INPUTS} inputs in {:?}", start.elapsed());
}
