//! tests/static_target.rs: a statically linked program (no ld.so, no shared libc) is
//! supervised like any other: the rewrite happens in the kernel-facing syscall.

mod common;

use common::*;

#[test]
fn static_bind_is_really_static() {
    let bin = static_bind();
    assert!(is_static_elf(bin), "{bin} has a PT_INTERP program header");
    match std::process::Command::new("file").arg(bin).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("statically linked"), "file(1) says: {text}");
        }
        Err(e) => skip(&format!("cannot run file(1): {e}: its view is not checked")),
    }
}

engine_tests! {
    fn static_program_is_rewritten(engine: Engine) {
        let (asked, p) = (free_port().to_string(), free_port());
        let rule = format!("127.0.0.4:{p}");
        let f = run(force_bind(engine, &["-b", &rule, static_bind(), "127.0.0.1", &asked]));
        assert_eq!(f.bound(), vec![v4("127.0.0.4", p)], "{f}");
        f.assert_success();
    }

    fn static_program_ipv6_is_rewritten(engine: Engine) {
        let (asked, p) = (free_port().to_string(), free_port());
        let rule = format!("[::1]:{p}");
        let f = run(force_bind(engine, &["-b", &rule, static_bind(), "::1", &asked]));
        assert_eq!(f.bound(), vec![v6("::1", p)], "{f}");
    }

    fn static_program_is_denied(engine: Engine) {
        let asked = free_port().to_string();
        let f = run(force_bind(engine, &["-d", static_bind(), "127.0.0.1", &asked]));
        assert_eq!(f.probe(), vec![Probe::Error(libc::EPERM)], "{f}");
        assert_eq!(f.code(), Some(1), "{f}");
    }
}
