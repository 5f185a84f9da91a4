//! tests/packaging.rs: what users install. The static release build (`cargo static`)
//! has no dynamic dependency and runs on an emulated pre-5.0 kernel; the Debian
//! package (packaging/deb.sh, cargo-deb) installs with `dpkg -i` and its
//! `/usr/bin/force-bind` runs; `-V` says which code it is (`git describe`).
//!
//! The static build and the package take a release build (about a minute from
//! scratch). Where the oldkernel wrapper, cargo-deb, dpkg, root, man or a git
//! checkout is missing, the test that needs it skips, saying why: a failure under
//! FORCE_BIND_REQUIRE=all (tests/common/mod.rs), which .ci/run sets.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A release build from scratch takes about a minute on two cores.
const BUILD_WAIT: Duration = Duration::from_secs(900);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo static` (the alias in .cargo/config.toml), once per test process; the path
/// of the static force-bind.
fn static_force_bind() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = command(&cargo, &["static", "--quiet", "--bin", "force-bind"]);
        cmd.current_dir(repo());
        Proc::spawn(cmd).finish(BUILD_WAIT).assert_success();
        repo().join("target/x86_64-unknown-linux-gnu/release/force-bind")
    })
}

#[test]
fn static_build_has_no_dynamic_dependency() {
    let bin = static_force_bind();
    let path = bin.to_str().expect("utf-8 path");
    assert!(is_static_elf(path), "{path} has a PT_INTERP header");
    // ldd says "not a dynamic executable" for a static non-PIE binary and
    // "statically linked" for a static PIE (what rustc's crt-static makes on x86_64).
    let f = run(command("ldd", &[path]));
    let said = format!("{}{}", f.stdout, f.stderr);
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "{f}"
    );
    assert!(!said.contains("=>"), "{f}");
}

#[test]
fn static_build_runs_on_an_emulated_old_kernel() {
    let oldkernel = match oldkernel() {
        Ok(path) => path,
        Err(why) => return skip(&why),
    };
    let bin = static_force_bind().to_str().expect("utf-8 path");
    let (asked, p) = (free_port().to_string(), free_port());
    let rule = format!("127.0.0.4:{p}");
    let old = [oldkernel, "--as", "4.19", "--", bin];
    let mut args = old.to_vec();
    args.extend_from_slice(&["-v", "-b", &rule, bindprobe(), "--port", &asked]);
    let f = run(command(oldkernel, &args[1..]));
    assert_eq!(f.bound(), vec![v4("127.0.0.4", p)], "{f}");
    assert!(
        f.stderr.contains("engine: ptrace"),
        "auto should fall back\n{f}"
    );
    f.assert_success();
    let f = run(command(oldkernel, &[&old[1..], &["-V"]].concat()));
    assert!(f.stdout.contains("notify unavailable"), "{f}");
}

/// Why the Debian package cannot be built and installed here, if it cannot.
fn deb_unavailable() -> Option<String> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !works(&cargo, &["deb", "--version"]) {
        return Some("cargo-deb is not installed (cargo install cargo-deb --locked)".into());
    }
    if !works("dpkg", &["--version"]) {
        return Some("no dpkg on this machine".into());
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("dpkg -i needs root".into());
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "force-bind"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if installed {
        return Some("a force-bind package is already installed; not replacing it".into());
    }
    None
}

/// Removes the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let f = Proc::spawn(command("dpkg", &["-r", "force-bind"])).finish(BUILD_WAIT);
        if f.code() != Some(0) {
            eprintln!("dpkg -r force-bind failed:\n{f}");
        }
    }
}

#[test]
fn debian_package_installs_and_runs() {
    if let Some(why) = deb_unavailable() {
        return skip(&why);
    }
    let deb_sh = repo().join("packaging/deb.sh");
    let built = Proc::spawn(command("bash", &[deb_sh.to_str().unwrap()])).finish(BUILD_WAIT);
    built.assert_success();
    let deb = repo().join(built.stdout.lines().last().expect("deb.sh prints the .deb"));
    assert!(deb.exists(), "{} missing\n{built}", deb.display());

    let contents = run(command("dpkg-deb", &["-c", deb.to_str().unwrap()]));
    contents.assert_success();
    for path in [
        "./usr/bin/force-bind",
        "./usr/share/man/man1/force-bind.1.gz",
        "./usr/share/bash-completion/completions/force-bind",
        "./usr/share/zsh/vendor-completions/_force-bind",
        "./usr/share/fish/vendor_completions.d/force-bind.fish",
        "./usr/share/doc/force-bind/copyright",
        "./usr/share/doc/force-bind/examples/webapp-activated.socket",
    ] {
        assert!(contents.stdout.contains(path), "{path} missing\n{contents}");
    }

    let install = Proc::spawn(command("dpkg", &["-i", deb.to_str().unwrap()])).finish(BUILD_WAIT);
    let _installed = Installed;
    install.assert_success();

    let installed = run(command("/usr/bin/force-bind", &["-V"]));
    installed.assert_success();
    let built_here = run(force_bind_plain(&["-V"]));
    // The same commit; "-dirty" depends on when each build ran in a working tree
    // with changes, not on the code.
    let version = |f: &Finished| {
        f.stdout
            .lines()
            .next()
            .map(|l| l.trim_end_matches("-dirty").to_string())
    };
    assert_eq!(
        version(&installed),
        version(&built_here),
        "the package should carry this code\n{installed}\n{built_here}"
    );
    assert!(installed.stdout.contains("engines:"), "{installed}");

    // The installed binary does its job too.
    let (asked, p) = (free_port().to_string(), free_port());
    let rule = format!("127.0.0.4:{p}");
    let f = run(command(
        "/usr/bin/force-bind",
        &["-b", &rule, bindprobe(), "--port", &asked],
    ));
    assert_eq!(f.bound(), vec![v4("127.0.0.4", p)], "{f}");

    if !Path::new("/usr/bin/man").exists() {
        return skip("no /usr/bin/man (man-db): the installed man page is not checked");
    }
    let f = run(command("man", &["-w", "force-bind"]));
    assert!(
        f.stdout
            .trim_end()
            .ends_with("/usr/share/man/man1/force-bind.1.gz"),
        "{f}"
    );
}

#[test]
fn version_is_git_describe() {
    let f = run(force_bind_plain(&["-V"]));
    f.assert_success();
    let first = f.stdout.lines().next().unwrap_or_default();
    let version = first
        .strip_prefix("force-bind ")
        .expect("force-bind VERSION");
    let described = Command::new("git")
        .args(["describe", "--tags", "--always"])
        .current_dir(repo())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success() && repo().join(".git").exists());
    let Some(described) = described else {
        return skip("not a git checkout (or no git)");
    };
    let described = String::from_utf8_lossy(&described.stdout)
        .trim()
        .to_string();
    // build.rs's rule: a bare hash (no tag yet) is appended to the crate version.
    let expected = if described.starts_with('v') {
        described
    } else {
        format!("v{}-g{described}", env!("CARGO_PKG_VERSION"))
    };
    // "-dirty" follows edits of the working tree, which need not re-run build.rs.
    assert_eq!(version.trim_end_matches("-dirty"), expected, "{f}");
    assert!(
        f.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("engines: ")),
        "{f}"
    );
}
