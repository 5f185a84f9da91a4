//! tests/syscall_tables.rs: arch/'s syscall numbers, every one, against the kernel's own
//! headers (issue 12). A wrong number for a foreign ABI is a silent bypass: the filter
//! would trap some other syscall and let i386's bind through untouched.
//!
//! Each ABI's <asm/unistd.h> is run through the C preprocessor (`gcc -E -dM`) as that
//! ABI's compiler would see it: the host compiler with -m64, -m32 and -mx32 for x86_64,
//! i386 and x32, and Debian's cross headers (linux-libc-dev-arm64-cross,
//! linux-libc-dev-armhf-cross) for aarch64 and AArch32 EABI. Preprocessing needs no
//! 32-bit C library or foreign CPU, and gives the same numbers a compiled probe would
//! print. The `#define`s are evaluated here (integers, macros, `+`, `|`), and every
//! field of every `Abi` and `Syscalls` is compared, as is `SOCKETCALL` with
//! <linux/net.h>. Missing headers are a skip (tests/common), or a failure under
//! FORCE_BIND_REQUIRE=all.

#[allow(dead_code, unused_imports)] // only the tables are used here
#[path = "../arch/mod.rs"]
mod arch;
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use arch::aarch64::Aarch64;
use arch::x86_64::X86_64;
use arch::{Abi, Arch, SOCKETCALL, SocketCalls, Syscalls};
use common::skip;

// ---------------------------------------------------------------------------
// The headers
// ---------------------------------------------------------------------------

/// What the probe includes: the syscall table, AUDIT_ARCH_*, and socketcall's calls.
const PROBE: &str = "#include <asm/unistd.h>\n#include <linux/audit.h>\n#include <linux/net.h>\n";

/// Where one ABI's numbers come from.
struct Source {
    /// `Abi::name`.
    abi: &'static str,
    headers: Headers,
    /// The <linux/audit.h> name of its seccomp_data.arch.
    audit_arch: &'static str,
    /// The macro `Abi::nr_base` must equal (x32's bit), if not 0.
    nr_base: Option<&'static str>,
}

enum Headers {
    /// The host compiler's headers for one of its own targets (x86_64 hosts only).
    Host { flag: &'static str },
    /// A cross-headers tree, read on its own (-nostdinc) and without the host
    /// compiler's predefined macros (-undef), so nothing of x86_64 leaks in.
    Cross {
        dir: &'static str,
        package: &'static str,
        /// What that ABI's compiler predefines and <asm/unistd.h> looks at.
        defines: &'static [&'static str],
    },
}

const SOURCES: &[Source] = &[
    Source {
        abi: "x86_64",
        headers: Headers::Host { flag: "-m64" },
        audit_arch: "AUDIT_ARCH_X86_64",
        nr_base: None,
    },
    Source {
        abi: "i386",
        headers: Headers::Host { flag: "-m32" },
        audit_arch: "AUDIT_ARCH_I386",
        nr_base: None,
    },
    Source {
        abi: "x32",
        headers: Headers::Host { flag: "-mx32" },
        audit_arch: "AUDIT_ARCH_X86_64",
        nr_base: Some("__X32_SYSCALL_BIT"),
    },
    Source {
        abi: "aarch64",
        headers: Headers::Cross {
            dir: "/usr/aarch64-linux-gnu/include",
            package: "linux-libc-dev-arm64-cross",
            defines: &[],
        },
        audit_arch: "AUDIT_ARCH_AARCH64",
        nr_base: None,
    },
    // arm64 runs AArch32 tasks with the EABI table only (no OABI, so no socketcall).
    Source {
        abi: "arm",
        headers: Headers::Cross {
            dir: "/usr/arm-linux-gnueabihf/include",
            package: "linux-libc-dev-armhf-cross",
            defines: &["-D__ARM_EABI__"],
        },
        audit_arch: "AUDIT_ARCH_ARM",
        nr_base: None,
    },
];

fn source(abi: &str) -> &'static Source {
    SOURCES.iter().find(|s| s.abi == abi).unwrap_or_else(|| {
        panic!("arch/'s ABI {abi} has no Source: say which headers hold its numbers")
    })
}

/// Object-like macros, name to replacement text, as `gcc -E -dM` lists them.
struct Defines {
    /// Which headers, for messages.
    what: String,
    macros: HashMap<String, String>,
}

impl Source {
    /// Preprocesses the probe for this ABI; Err says why it cannot be done here.
    fn defines(&self) -> Result<Defines, String> {
        let mut gcc = Command::new("gcc");
        gcc.args(["-E", "-dM", "-x", "c", "-"]);
        let what = match self.headers {
            Headers::Host { flag } => {
                if !cfg!(target_arch = "x86_64") {
                    return Err(format!(
                        "{}'s headers come from the host compiler (gcc {flag}), and this host is not x86_64",
                        self.abi
                    ));
                }
                gcc.arg(flag);
                format!("<asm/unistd.h> of gcc {flag}")
            }
            Headers::Cross {
                dir,
                package,
                defines,
            } => {
                let header = Path::new(dir).join("asm/unistd.h");
                if !header.exists() {
                    return Err(format!(
                        "{} not found: install {package} (tests/install-deps.sh)",
                        header.display()
                    ));
                }
                gcc.args(["-undef", "-nostdinc", "-isystem", dir])
                    .args(defines);
                [header.display().to_string()]
                    .into_iter()
                    .chain(defines.iter().map(|d| d.to_string()))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let mut child = gcc
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run gcc ({e}); tests/install-deps.sh installs it"))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(PROBE.as_bytes())
            .map_err(|e| format!("cannot write the probe to gcc: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("gcc: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{what}: gcc cannot preprocess the probe ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Defines {
            what,
            macros: parse_defines(&String::from_utf8_lossy(&out.stdout)),
        })
    }
}

/// `#define NAME TEXT` lines; function-like macros (a '(' right after the name) are
/// left out, as none of the numbers is one.
fn parse_defines(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("#define "))
        .filter_map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, text) = rest.split_at(end);
            match text.chars().next() {
                Some('(') => None,
                _ => Some((name.to_string(), text.trim().to_string())),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Evaluating a macro
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Number(u64),
    Op(char),
}

impl Defines {
    /// The value of macro `name`: None when the headers do not define it.
    fn value(&self, name: &str) -> Result<Option<u64>, String> {
        if !self.macros.contains_key(name) {
            return Ok(None);
        }
        let mut tokens = Vec::new();
        self.expand(name, 0, &mut tokens)?;
        let mut at = 0;
        let value = or_expr(&tokens, &mut at)
            .filter(|_| at == tokens.len())
            .ok_or_else(|| {
                format!(
                    "{name} = {}: not an expression this test reads",
                    self.macros[name]
                )
            })?;
        Ok(Some(value))
    }

    /// `name`'s replacement text as tokens, macros inside it expanded in turn (as the
    /// preprocessor does for object-like macros: text for text, no parentheses added).
    fn expand(&self, name: &str, depth: usize, out: &mut Vec<Token>) -> Result<(), String> {
        let text = self
            .macros
            .get(name)
            .ok_or_else(|| format!("{name} is used but not defined"))?;
        if depth > 16 {
            return Err(format!("{name}: macros nested too deep"));
        }
        let mut rest = text.as_str();
        while let Some(c) = rest.chars().next() {
            let word_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if c.is_whitespace() {
                rest = &rest[c.len_utf8()..];
            } else if "+|()".contains(c) {
                out.push(Token::Op(c));
                rest = &rest[1..];
            } else if c.is_ascii_digit() {
                let literal = &rest[..word_end];
                let digits = literal.trim_end_matches(['u', 'U', 'l', 'L']);
                let number = match digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None if digits.len() > 1 && digits.starts_with('0') => {
                        u64::from_str_radix(&digits[1..], 8)
                    }
                    None => digits.parse(),
                };
                let number =
                    number.map_err(|e| format!("{name} = {text}: bad number {literal}: {e}"))?;
                out.push(Token::Number(number));
                rest = &rest[word_end..];
            } else if c.is_ascii_alphabetic() || c == '_' {
                self.expand(&rest[..word_end], depth + 1, out)?;
                rest = &rest[word_end..];
            } else {
                return Err(format!("{name} = {text}: cannot read {c:?}"));
            }
        }
        Ok(())
    }
}

/// a | b | ... (C: `|` binds looser than `+`).
fn or_expr(tokens: &[Token], at: &mut usize) -> Option<u64> {
    let mut value = add_expr(tokens, at)?;
    while tokens.get(*at) == Some(&Token::Op('|')) {
        *at += 1;
        value |= add_expr(tokens, at)?;
    }
    Some(value)
}

fn add_expr(tokens: &[Token], at: &mut usize) -> Option<u64> {
    let mut value = atom(tokens, at)?;
    while tokens.get(*at) == Some(&Token::Op('+')) {
        *at += 1;
        value = value.checked_add(atom(tokens, at)?)?;
    }
    Some(value)
}

fn atom(tokens: &[Token], at: &mut usize) -> Option<u64> {
    let token = tokens.get(*at)?.clone();
    *at += 1;
    match token {
        Token::Number(n) => Some(n),
        Token::Op('(') => {
            let value = or_expr(tokens, at)?;
            if tokens.get(*at) != Some(&Token::Op(')')) {
                return None;
            }
            *at += 1;
            Some(value)
        }
        Token::Op(_) => None,
    }
}

// ---------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------

/// Every problem with one ABI's numbers, each naming the entry.
struct Report<'a> {
    defines: &'a Defines,
    problems: Vec<String>,
}

impl Report<'_> {
    /// `entry` (say "i386.bind") holds `ours`; the headers say `macro_name`.
    fn compare(&mut self, entry: &str, ours: Option<u64>, macro_name: &str) {
        // x32's numbers and the audit arches are flag bits plus a small number.
        let show = |v: Option<u64>| match v {
            Some(v) if v >= 0x1000 => format!("{v:#x} (= {:#x} + {})", v & !0xfff, v & 0xfff),
            Some(v) => v.to_string(),
            None => "none".to_string(),
        };
        let problem = match self.defines.value(macro_name) {
            Ok(theirs) if theirs == ours => return,
            Ok(Some(theirs)) => format!(
                "{entry}: arch/ has {}, the headers have {macro_name} = {}",
                show(ours),
                show(Some(theirs))
            ),
            Ok(None) => format!(
                "{entry}: arch/ has {}, the headers do not define {macro_name}",
                show(ours)
            ),
            Err(e) => format!("{entry}: {e}"),
        };
        self.problems.push(problem);
    }

    fn new(defines: &Defines) -> Report<'_> {
        Report {
            defines,
            problems: Vec::new(),
        }
    }

    fn failure(self) -> Option<String> {
        (!self.problems.is_empty()).then(|| {
            format!(
                "arch/ disagrees with {}:\n  {}",
                self.defines.what,
                self.problems.join("\n  ")
            )
        })
    }
}

/// Every field of `abi` (the pattern names them all, so a new field must be added
/// here before this compiles) against `source`'s headers.
fn compare_abi(report: &mut Report, abi: &Abi, source: &Source) {
    let Abi {
        name,
        kind: _,
        audit_arch,
        nr_base,
        bind,
        listen,
        setsockopt,
        io_uring_setup,
        clone,
        clone3,
        seccomp,
        socketcall,
        dup2,
        dup3,
    } = *abi;
    report.compare(
        &format!("{name}.audit_arch"),
        Some(audit_arch.into()),
        source.audit_arch,
    );
    match source.nr_base {
        Some(base) => report.compare(&format!("{name}.nr_base"), Some(nr_base.into()), base),
        None if nr_base != 0 => report.problems.push(format!(
            "{name}.nr_base: arch/ has {nr_base:#x}, the ABI has none"
        )),
        None => {}
    }
    let calls = [
        ("bind", Some(bind)),
        ("listen", Some(listen)),
        ("setsockopt", Some(setsockopt)),
        ("io_uring_setup", Some(io_uring_setup)),
        ("clone", Some(clone)),
        ("clone3", Some(clone3)),
        ("seccomp", Some(seccomp)),
        ("socketcall", socketcall),
        ("dup2", dup2),
        ("dup3", Some(dup3)),
    ];
    for (call, nr) in calls {
        // The filter compares seccomp_data.nr with nr_base + the table's number.
        let nr = nr.map(|n| u64::from(nr_base) + u64::from(n));
        report.compare(&format!("{name}.{call}"), nr, &format!("__NR_{call}"));
    }
}

/// Every field of an architecture's `Syscalls` against its native headers.
fn compare_syscalls(report: &mut Report, arch: &str, syscalls: &Syscalls) {
    let Syscalls {
        bind,
        listen,
        dup2,
        dup3,
        getppid,
        exit_group,
        getsockopt,
    } = *syscalls;
    let calls = [
        ("bind", Some(bind)),
        ("listen", Some(listen)),
        ("dup2", dup2),
        ("dup3", Some(dup3)),
        ("getppid", Some(getppid)),
        ("exit_group", Some(exit_group)),
        ("getsockopt", Some(getsockopt)),
    ];
    for (call, nr) in calls {
        report.compare(
            &format!("{arch}::SYSCALLS.{call}"),
            nr.map(u64::from),
            &format!("__NR_{call}"),
        );
    }
}

/// Every ABI of `A`, and `A::SYSCALLS` with the native one, against its headers: one
/// failure listing every wrong entry. An ABI whose headers are not here is skipped
/// (one `SKIPPED` line each) and the others are still checked.
fn check_arch<A: Arch>() {
    let mut failures = Vec::new();
    for abi in std::iter::once(&A::NATIVE).chain(A::FOREIGN) {
        let source = source(abi.name);
        let defines = match source.defines() {
            Ok(defines) => defines,
            Err(why) => {
                skip(&format!("{}: {why}", abi.name));
                continue;
            }
        };
        let mut report = Report::new(&defines);
        compare_abi(&mut report, abi, source);
        if abi.name == A::NATIVE.name {
            compare_syscalls(&mut report, A::NAME, &A::SYSCALLS);
        }
        failures.extend(report.failure());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// x86_64 itself, i386 (int $0x80 and 32-bit programs) and x32.
#[test]
fn x86_64_abis_match_the_headers() {
    check_arch::<X86_64>();
}

/// aarch64 itself and AArch32 EABI.
#[test]
fn aarch64_abis_match_the_headers() {
    check_arch::<Aarch64>();
}

/// socketcall(2)'s first argument, from <linux/net.h> (i386 is the ABI that has it).
#[test]
fn socketcall_calls_match_linux_net_h() {
    let defines = match source("i386").defines() {
        Ok(defines) => defines,
        Err(why) => return skip(&why),
    };
    let SocketCalls {
        bind,
        listen,
        setsockopt,
    } = SOCKETCALL;
    let mut report = Report::new(&defines);
    for (call, ours, name) in [
        ("bind", bind, "SYS_BIND"),
        ("listen", listen, "SYS_LISTEN"),
        ("setsockopt", setsockopt, "SYS_SETSOCKOPT"),
    ] {
        report.compare(&format!("SOCKETCALL.{call}"), Some(ours.into()), name);
    }
    if let Some(failure) = report.failure() {
        panic!("{failure}");
    }
}

/// The evaluator reads the forms the headers use, and refuses what it cannot read.
#[test]
fn evaluates_header_macros() {
    let defines = Defines {
        what: "a made-up header".to_string(),
        macros: parse_defines(
            "#define __X32_SYSCALL_BIT 0x40000000\n\
             #define __NR_bind (__X32_SYSCALL_BIT + 49)\n\
             #define EM_386 3\n\
             #define __AUDIT_ARCH_LE 0x40000000U\n\
             #define AUDIT_ARCH_I386 (EM_386|__AUDIT_ARCH_LE)\n\
             #define SUM 1 + 2 | 8\n\
             #define OCTAL 010\n\
             #define __SYSCALL(nr, call) nothing\n\
             #define SHIFTED (1 << 3)\n\
             #define DANGLING (UNDEFINED + 1)\n",
        ),
    };
    let v = |name| defines.value(name);
    assert_eq!(v("__NR_bind"), Ok(Some(0x4000_0031)));
    assert_eq!(v("AUDIT_ARCH_I386"), Ok(Some(0x4000_0003)));
    assert_eq!(v("SUM"), Ok(Some(11)));
    assert_eq!(v("OCTAL"), Ok(Some(8)));
    assert_eq!(v("__NR_dup2"), Ok(None));
    assert_eq!(v("__SYSCALL"), Ok(None));
    assert!(v("SHIFTED").is_err());
    assert!(v("DANGLING").is_err());
}
