// build.rs: stamps the version string from `git describe`, falling back to the
// Cargo.toml version when the source has no git history (a tarball, `cargo install`
// from a copy), so `force-bind -V` always says which code it is.
use std::process::Command;

fn main() {
    let fallback = format!(
        "v{}",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
    let described = Command::new("git")
        .args(["describe", "--tags", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let version = match described {
        // A bare commit hash (no tags yet) says less than the crate version: keep both.
        Some(d) if !d.starts_with('v') => format!("{fallback}-g{d}"),
        Some(d) => d,
        None => fallback,
    };
    println!("cargo:rustc-env=FORCE_BIND_VERSION={version}");
    // Re-run when HEAD moves or the index changes (commits, checkouts, edits staged).
    // A commit moves the branch's ref, not HEAD (which names the branch), so watch
    // that ref, packed-refs and HEAD's reflog too. In a linked worktree `.git` is a
    // file: HEAD, the index and the reflog are in the worktree's own git directory,
    // refs and packed-refs in the common one, so ask git where both are.
    let git_path = |what: &str| {
        Command::new("git")
            .args(["rev-parse", "--path-format=absolute", what])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let git_dir = git_path("--git-dir").unwrap_or_else(|| ".git".into());
    let common_dir = git_path("--git-common-dir").unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![
        format!("{git_dir}/HEAD"),
        format!("{git_dir}/index"),
        format!("{git_dir}/logs/HEAD"),
        format!("{common_dir}/refs/tags"),
        format!("{common_dir}/packed-refs"),
    ];
    if let Ok(head) = std::fs::read_to_string(format!("{git_dir}/HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        watched.push(format!("{common_dir}/{branch}"));
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
