//! tests/manual.rs: force-bind(1) from `--generate-man` renders and documents every
//! option `-h` lists; the completion scripts from `--completions SHELL` know the
//! options too, and bash's really completes them.

mod common;

use common::*;
use std::fs;

/// The options `force-bind -h` lists (`-b`, `--engine`, ...), so that an option added
/// to the clap definition is checked here without editing this test.
fn help_options() -> Vec<String> {
    let f = run(force_bind_plain(&["-h"]));
    f.assert_success();
    let mut options = Vec::new();
    for line in f.stdout.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        // "-V, --version   Print ..." or "--engine <ENGINE>  Which ..."
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(',');
            if word.starts_with('-') && word.len() > 1 {
                options.push(word.to_string());
            } else {
                break;
            }
        }
    }
    assert!(options.len() >= 12, "too few options in -h:\n{f}");
    options
}

fn generated(args: &[&str]) -> String {
    let f = run(force_bind_plain(args));
    f.assert_success();
    assert_eq!(f.stderr, "", "{f}");
    f.stdout
}

#[test]
fn man_page_renders_with_every_option() {
    let roff = generated(&["--generate-man"]);
    assert!(roff.contains("\n.TH force-bind 1 "), "{roff}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "RULES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(roff.contains(&format!(".SH {section}")), "no {section}");
    }
    let page = tmp_path("force-bind.1");
    fs::write(&page, &roff).unwrap();
    let page = page.to_str().unwrap();

    // `man -l` renders the file as man(1) would show it (plain text when piped);
    // without man-db, groff itself; without either, the roff source.
    let rendered = if which("man") {
        let mut cmd = command("man", &["--warnings", "-l", page]);
        cmd.env("MANWIDTH", "100").env("LANG", "C.UTF-8");
        let f = run(cmd);
        f.assert_success();
        assert_eq!(f.stderr.trim(), "", "man/groff warnings:\n{f}");
        f.stdout
    } else if which("groff") {
        skip("no man (man-db): rendered with groff, without man's warnings check");
        let f = run(command("groff", &["-man", "-Tutf8", "-ww", page]));
        f.assert_success();
        f.stdout
    } else {
        skip("neither man nor groff: the page is not rendered, only its roff source checked");
        roff.replace("\\-", "-")
    };
    // Minus signs may be typeset as U+2212; backspace overstrikes mark bold.
    let text = strip_overstrike(&rendered).replace('\u{2212}', "-");
    for option in help_options() {
        let found = text
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '(' | ')'))
            .any(|w| w == option || w.starts_with(&format!("{option}=")));
        assert!(found, "man page lacks {option}:\n{text}");
    }
    assert!(
        text.contains("sd=NAME") && text.contains("LISTEN_FDNAMES"),
        "{text}"
    );
}

#[test]
fn completions_name_every_option() {
    let options = help_options();
    for shell in ["bash", "zsh", "fish"] {
        let script = generated(&["--completions", shell]);
        for option in &options {
            let bare = option.trim_start_matches('-');
            let named = match (shell, option.starts_with("--")) {
                ("fish", true) => script.contains(&format!("-l {bare}")),
                ("fish", false) => script.contains(&format!("-s {bare}")),
                _ => script.contains(option.as_str()),
            };
            assert!(named, "{shell} completion lacks {option}:\n{script}");
        }
    }
}

#[test]
fn bash_completes_options_and_engines() {
    if !which("bash") {
        return skip("no bash");
    }
    let script = tmp_path("force-bind.bash");
    fs::write(&script, generated(&["--completions", "bash"])).unwrap();
    // Call the completion function the way bash's `complete -F` does.
    let complete = |words: &str| {
        let code = format!(
            "source {}\n\
             COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
             fn=$(complete -p force-bind | sed 's/.*-F \\([^ ]*\\).*/\\1/')\n\
             \"$fn\" force-bind \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let f = run(command("bash", &["--norc", "-c", &code]));
        f.assert_success();
        f.stdout
    };
    let long = complete("force-bind --e");
    assert!(long.lines().any(|l| l == "--engine"), "{long}");
    let engines = complete("force-bind --engine ''");
    for engine in ["auto", "notify", "ptrace"] {
        assert!(engines.lines().any(|l| l == engine), "{engines}");
    }
}

#[test]
fn bad_shell_is_a_one_line_usage_error() {
    let f = run(force_bind_plain(&["--completions", "tcsh"]));
    assert_eq!(f.code(), Some(2), "{f}");
    assert_eq!(f.stderr_lines().len(), 1, "{f}");
    assert!(f.stderr.contains("tcsh"), "{f}");
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Removes `x\x08x` (bold) and `_\x08x` (underline) overstrikes.
fn strip_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    // After a backspace the next char replaces the popped one; nothing else to do.
    out.into_iter().collect()
}
