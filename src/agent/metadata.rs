// agent/metadata.rs: a container's listenerMetadata, the force-bind rule words a
// user wrote in its seccomp profile (`-b 127.0.0.2 -m ':80=[::1]:8080'`), split as
// a POSIX shell splits words (no expansions) and parsed by the command line's own
// rule parser. Pure apart from host-name resolution in the rule parser.

use crate::rule::Rule;

/// `text` split into words as sh(1) would, without expansions: blanks separate
/// words; '...' keeps everything literally; "..." keeps everything but `\"`, `\\`,
/// `\$` and `` \` ``, which drop their backslash; outside quotes a backslash keeps the
/// next character. An unterminated quote or a trailing backslash is an error.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has begun: `''` is an empty word, blanks are none.
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("a backslash ends the text".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A container's rules: the agent's, then those of its metadata, so that the
/// metadata's override them (rules are tried last-given first). The error says
/// what is wrong with the metadata, in one line.
pub fn container_rules(agent: &[Rule], metadata: &str) -> Result<Vec<Rule>, String> {
    let words = split_words(metadata)?;
    let own = crate::cli::parse_metadata_rules(&words)?;
    Ok(agent.iter().cloned().chain(own).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_sh() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("-b 127.0.0.2", &["-b", "127.0.0.2"]),
            ("  -b\t127.0.0.2 \n -d ", &["-b", "127.0.0.2", "-d"]),
            ("-m ':80=[::1]:8080'", &["-m", ":80=[::1]:8080"]),
            (r#"-m ":80=\"x\"""#, &["-m", ":80=\"x\""]),
            (r#"a\ b"#, &["a b"]),
            (r#"'it'\''s'"#, &["it's"]),
            (r#""a\nb""#, &[r"a\nb"]),
            ("''", &[""]),
            ("a''b", &["ab"]),
        ];
        for (text, want) in cases {
            assert_eq!(split_words(text).unwrap(), *want, "{text:?}");
        }
        for bad in ["'open", "\"open", "end\\", "\"a\\"] {
            assert!(split_words(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_rules_follow_the_agents() {
        let agent = vec![crate::rule::deny_all()];
        let rules = container_rules(&agent, "-b 127.0.0.2 -m ':8000=[::1]:9000'").unwrap();
        let texts: Vec<_> = rules.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["-d", "-b 127.0.0.2", "-m :8000=[::1]:9000"]);
        assert_eq!(container_rules(&agent, "").unwrap().len(), 1);
    }

    #[test]
    fn bad_metadata_is_one_line() {
        for (metadata, needle) in [
            ("-b 300.0.0.1", "300.0.0.1"),
            ("-x", "-x"),
            ("-b", "-b"),
            ("python3 -m http.server", "python3"),
            ("-m :80=fd=3", "inherited"),
            ("-b sd=0", "inherited"),
            ("-b '127.0.0.2", "quote"),
            ("--help", "--help"),
        ] {
            let e = container_rules(&[], metadata).unwrap_err();
            assert!(e.contains(needle), "{metadata:?}: {e}");
            assert!(!e.contains('\n'), "{metadata:?}: {e}");
        }
    }
}
