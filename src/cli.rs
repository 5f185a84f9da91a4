// cli.rs: the command line, a drop-in superset of the C force-bind's. Parsing only:
// rules are turned into the policy here, everything else is handed to main as data.

use std::ffi::OsString;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum, ValueHint};
use clap_complete::Shell;

use crate::log::Level;
use crate::rule::{self, Rule, RuleError};

const EXAMPLES: &str = "\
Rules (-b, -m, -d) are tried last-given first: put the general policy first and
override it with later rules. A bind no rule matches goes through unchanged.

MATCH:  [PROTO:] then :PORT  :FIRST-LAST  HOST[:PORT][/PREFIX]  [IPv6][:PORT][/PREFIX]  *
        (PROTO: tcp udp sctp raw; PORT may be *; PREFIX defaults to the whole address)
ADDR:   HOST:PORT  HOST or HOST:* (keep the port)  [IPv6]:PORT  allow  deny (EPERM)
        fd=N  replace the socket with inherited descriptor N
        sd=N  the N-th systemd-activated socket (fd 3+N)
        sd=NAME  the activated socket of that LISTEN_FDNAMES name, family and type
HOST is an IPv4 address or a host name (resolved once, from /etc/hosts and DNS).
A v4-mapped bind is an IPv4 bind; a dual-stack [::] bind meets the IPv4 rules too,
through ::ffff:a.b.c.d. A port-0 bind keeps port 0 and is judged at listen() unless
the MATCH names port 0. A rule that cannot apply to a socket is skipped.

Examples:
  force-bind -b 127.0.0.1 python3 -m http.server 8000
      serve on 127.0.0.1:8000 whatever address the program asks for
  force-bind -m 0.0.0.0:80/0=127.0.0.1:8080 PROGRAM
      IPv4 binds of port 80 go to 127.0.0.1:8080; IPv6 binds are untouched
  force-bind -d -m '[::]:80/0=[::1]:8080' PROGRAM
      IPv6 port 80 goes to [::1]:8080; every other bind is denied
  force-bind -d -b '[::1]:8081' -b 127.0.0.1:8080 PROGRAM
  systemd-socket-activate -l 8000 force-bind -m :8000=sd=0 PROGRAM
      the program gets systemd's socket instead of binding its own
  force-bind agent -h
      containers: the seccomp listener of runc, crun, Docker and Podman

Exit status: the program's; if it died of a signal, force-bind dies of the same
one. 125: force-bind failed, 126: PROGRAM not executable, 127: not found,
2: bad command line.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    /// bpf where it can carry out the whole policy (root, cgroup2, Linux 5.7+, no
    /// events wanted), else notify where the kernel supports it, else ptrace
    Auto,
    /// seccomp user notification (Linux 5.9+)
    Notify,
    /// seccomp RET_TRACE with ptrace (any kernel)
    Ptrace,
    /// cgroup bind4/bind6 BPF programs, decided in the kernel (root, cgroup2)
    Bpf,
}

#[derive(Debug, Parser)]
#[command(
    name = "force-bind",
    about = "Run PROGRAM and take control of its bind() calls: rewrite the address, deny, allow, \
             or put an inherited (socket-activated) socket in place",
    after_help = EXAMPLES,
    disable_version_flag = true,
    max_term_width = 100
)]
struct Args {
    #[command(flatten)]
    rules: RuleArgs,

    /// Skip listen() on sockets replaced by an inherited socket (already listening)
    #[arg(short = 'L')]
    skip_listen: bool,

    /// Use the ptrace engine (same as --engine ptrace)
    #[arg(short = 'p')]
    ptrace: bool,

    /// Which engine carries the policy out
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    engine: EngineChoice,

    /// Let the program use io_uring. WARNING: binds made through io_uring
    /// (IORING_OP_BIND, Linux 6.11+) bypass every rule. By default io_uring_setup
    /// fails with ENOSYS and programs fall back to plain syscalls.
    #[arg(long)]
    allow_io_uring: bool,

    /// Events as JSON, one object per line (field names in README.md)
    #[arg(long)]
    json: bool,

    /// Write events to FILE (appended) instead of stderr
    #[arg(long, value_name = "FILE")]
    log: Option<std::path::PathBuf>,

    /// Keep LISTEN_FDS/LISTEN_FDNAMES for the program (LISTEN_PID set to its PID)
    #[arg(long)]
    pass_listen_fds: bool,

    /// Verbose: one line per bind and listen (with no rule at all, the default)
    #[arg(short = 'v')]
    verbose: bool,

    /// Debug: engine internals too
    #[arg(short = 'D')]
    debug: bool,

    /// Quiet: fatal errors only
    #[arg(short = 'q')]
    quiet: bool,

    /// Ignored (the C force-bind's timeout); accepted for compatibility
    #[arg(short = 't', value_name = "NSECS")]
    timeout: Option<String>,

    /// Print the version and the engines this kernel supports
    #[arg(short = 'V', long = "version")]
    version: bool,

    /// Print the force-bind(1) man page (roff) and exit
    #[arg(long, conflicts_with = "completions")]
    generate_man: bool,

    /// Print the completion script for SHELL and exit
    #[arg(long, value_name = "SHELL")]
    completions: Option<Shell>,

    /// The program to run, and its arguments
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        num_args = 1..,
        value_hint = ValueHint::CommandWithArguments
    )]
    command: Vec<OsString>,
}

/// -b, -m and -d: the rules, for force-bind itself, the agent and a container's
/// listenerMetadata alike.
#[derive(Debug, clap::Args)]
struct RuleArgs {
    /// Rewrite every bind of ADDR's family to ADDR
    #[arg(short = 'b', value_name = "ADDR", action = ArgAction::Append)]
    bind: Vec<String>,

    /// Rewrite binds matching MATCH to ADDR
    #[arg(short = 'm', value_name = "MATCH=ADDR", action = ArgAction::Append)]
    rewrite: Vec<String>,

    /// Deny every bind (EPERM); later rules may allow some
    // Appended (not counted) so that every occurrence keeps its own index.
    #[arg(short = 'd', action = ArgAction::Append, num_args = 0, default_missing_value = "deny")]
    deny: Vec<String>,
}

/// The clap definition, for the man page and the completions (manual.rs).
pub fn command() -> clap::Command {
    Args::command()
}

/// Documentation force-bind prints instead of running a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    ManPage,
    Completions(Shell),
}

/// Everything main needs from the command line.
#[derive(Debug)]
pub struct Options {
    pub rules: Vec<Rule>,
    pub skip_listen: bool,
    pub engine: EngineChoice,
    pub pass_listen_fds: bool,
    pub allow_io_uring: bool,
    pub json: bool,
    pub log_file: Option<std::path::PathBuf>,
    pub level: Level,
    pub ignored_timeout: Option<String>,
    pub version: bool,
    /// --generate-man or --completions: print that and exit.
    pub generate: Option<Generate>,
    /// PROGRAM and its arguments; empty only with --version or `generate`.
    pub command: Vec<OsString>,
}

/// What went wrong, as one line for stderr; `help` is the -h text (exit 0).
#[derive(Debug)]
pub enum CliError {
    Help(String),
    Usage(String),
}

pub fn parse<I: IntoIterator<Item = OsString>>(argv: I) -> Result<Options, CliError> {
    let matches = Args::command()
        .try_get_matches_from(argv)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp => CliError::Help(e.render().to_string()),
            _ => CliError::Usage(first_line(&e.render().to_string())),
        })?;
    let args = Args::from_arg_matches(&matches)
        .map_err(|e| CliError::Usage(first_line(&e.to_string())))?;

    let rules = ordered_rules(&matches, &args.rules).map_err(|e| CliError::Usage(e.reason))?;

    let generate = match (args.generate_man, args.completions) {
        (true, _) => Some(Generate::ManPage),
        (false, Some(shell)) => Some(Generate::Completions(shell)),
        (false, None) => None,
    };
    if args.command.is_empty() && !args.version && generate.is_none() {
        return Err(CliError::Usage(
            "missing PROGRAM to run (try 'force-bind -h')".into(),
        ));
    }
    let level = match (args.quiet, args.debug, args.verbose) {
        (true, _, _) => Level::Quiet,
        (_, true, _) => Level::Debug,
        (_, _, true) => Level::Verbose,
        _ => Level::Normal,
    };
    Ok(Options {
        rules,
        skip_listen: args.skip_listen,
        engine: if args.ptrace {
            EngineChoice::Ptrace
        } else {
            args.engine
        },
        pass_listen_fds: args.pass_listen_fds,
        allow_io_uring: args.allow_io_uring,
        json: args.json,
        log_file: args.log,
        level,
        ignored_timeout: args.timeout,
        version: args.version,
        generate,
        command: args.command,
    })
}

/// The rules of -b, -m and -d in the order they were given across the three (their
/// indices in `matches`), host names resolved once, here, with the system's hosts
/// file and DNS.
fn ordered_rules(matches: &clap::ArgMatches, rules: &RuleArgs) -> Result<Vec<Rule>, RuleError> {
    // Rules keep the order they were given in across -b, -m and -d.
    let mut ordered: Vec<(usize, Result<Rule, RuleError>)> = Vec::new();
    let indexed = |id: &str| {
        matches
            .indices_of(id)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };
    // Host names are resolved once, here, with the system's hosts file and DNS.
    let mut resolve = |name: &str| {
        crate::resolve::lookup(name)
            .map_err(|e| e.to_string())
            .inspect(|ips| crate::log::debug!("{name} resolves to {ips:?}"))
    };
    for (index, value) in indexed("bind").into_iter().zip(&rules.bind) {
        ordered.push((
            index,
            rule::parse_bind_with(value, &mut resolve).map_err(|e| option_error("-b", e)),
        ));
    }
    for (index, value) in indexed("rewrite").into_iter().zip(&rules.rewrite) {
        ordered.push((
            index,
            rule::parse_match_with(value, &mut resolve).map_err(|e| option_error("-m", e)),
        ));
    }
    for index in indexed("deny") {
        ordered.push((index, Ok(rule::deny_all())));
    }
    ordered.sort_by_key(|(index, _)| *index);
    ordered.into_iter().map(|(_, rule)| rule).collect()
}

const AGENT_EXAMPLES: &str = "\
The agent serves OCI runtimes (runc >= 1.1, crun >= 0.19, and Docker >= 23 and
Podman >= 4.1 through them): a container whose seccomp profile sends bind, listen
and io_uring_setup to SCMP_ACT_NOTIFY with listenerPath PATH has its binds judged
here, with the notify engine's code. A container's rules are RULES followed by the
-b, -m and -d words of its listenerMetadata, which therefore override them
(rules are tried last-given first). Bad metadata: that container's binds are
denied. fd=N and sd=N do not apply to containers.

--profile prints the linux.seccomp object to put in config.json, or to pass as
`docker run --security-opt seccomp=FILE` / `podman run --security-opt
seccomp=FILE`. Alone it allows every other syscall; with --base FILE (such as
/usr/share/containers/seccomp.json) the runtime's own profile is kept and only
bind, listen and io_uring_setup are handed to the agent, so the container keeps
its default protection.

If the agent is not listening, runtimes refuse to start such containers; if it
stops, the binds of running ones fail with ENOSYS.

Examples:
  force-bind agent -d
      deny every container's binds but those its listenerMetadata allows
  force-bind agent --profile --metadata '-b 127.0.0.2' > seccomp.json
  force-bind agent --profile --base /usr/share/containers/seccomp.json > seccomp.json";

/// Where runtimes find the agent unless --socket says otherwise.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/force-bind/agent.sock";

#[derive(Debug, Parser)]
#[command(
    name = "force-bind agent",
    about = "Judge the binds of OCI containers: the seccomp listener that runc, crun, Docker and \
             Podman hand each container's notify descriptor to",
    after_help = AGENT_EXAMPLES,
    disable_version_flag = true,
    max_term_width = 100
)]
struct AgentArgs {
    #[command(flatten)]
    rules: RuleArgs,

    /// The UNIX socket runtimes connect to (created mode 0600; under systemd socket
    /// activation, the one passed)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_AGENT_SOCKET)]
    socket: std::path::PathBuf,

    /// Print the seccomp profile for containers (OCI linux.seccomp) and exit
    #[arg(long)]
    profile: bool,

    /// With --profile: merge into this profile (the runtime's default) instead of
    /// allowing every other syscall
    #[arg(long, value_name = "FILE", requires = "profile")]
    base: Option<std::path::PathBuf>,

    /// With --profile: the listenerMetadata, this container's rules (-b, -m, -d words)
    #[arg(
        long,
        value_name = "RULES",
        requires = "profile",
        allow_hyphen_values = true
    )]
    metadata: Option<String>,

    /// Events as JSON, one object per line (field names in README.md)
    #[arg(long)]
    json: bool,

    /// Write events to FILE (appended) instead of stderr
    #[arg(long, value_name = "FILE")]
    log: Option<std::path::PathBuf>,

    /// Verbose: one line per container, bind and listen
    #[arg(short = 'v')]
    verbose: bool,

    /// Debug: engine internals too
    #[arg(short = 'D')]
    debug: bool,

    /// Quiet: fatal errors only
    #[arg(short = 'q')]
    quiet: bool,
}

/// What `force-bind agent` was asked to do.
#[derive(Debug)]
pub struct AgentOptions {
    pub socket: std::path::PathBuf,
    /// The agent's RULES, before each container's own.
    pub rules: Vec<Rule>,
    /// --profile: print it instead of serving.
    pub profile: Option<ProfileRequest>,
    pub json: bool,
    pub log_file: Option<std::path::PathBuf>,
    pub level: Level,
}

#[derive(Debug)]
pub struct ProfileRequest {
    pub base: Option<std::path::PathBuf>,
    /// The listenerMetadata to write (already checked to parse).
    pub metadata: Option<String>,
}

/// `force-bind agent ARGS...`; `argv` starts with the program name, then "agent".
pub fn parse_agent<I: IntoIterator<Item = OsString>>(argv: I) -> Result<AgentOptions, CliError> {
    let argv = argv.into_iter().skip(2);
    let matches = AgentArgs::command()
        .no_binary_name(true)
        .try_get_matches_from(argv)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp => CliError::Help(e.render().to_string()),
            _ => CliError::Usage(agent_first_line(&e.render().to_string())),
        })?;
    let args = AgentArgs::from_arg_matches(&matches)
        .map_err(|e| CliError::Usage(agent_first_line(&e.to_string())))?;
    let rules = ordered_rules(&matches, &args.rules).map_err(|e| CliError::Usage(e.reason))?;
    refuse_inherited(&rules).map_err(CliError::Usage)?;
    if let Some(metadata) = &args.metadata {
        let words = crate::agent::metadata::split_words(metadata)
            .map_err(|e| CliError::Usage(format!("--metadata: {e}")))?;
        parse_metadata_rules(&words).map_err(|e| CliError::Usage(format!("--metadata: {e}")))?;
    }
    let level = match (args.quiet, args.debug, args.verbose) {
        (true, _, _) => Level::Quiet,
        (_, true, _) => Level::Debug,
        (_, _, true) => Level::Verbose,
        _ => Level::Normal,
    };
    Ok(AgentOptions {
        socket: args.socket,
        rules,
        profile: args.profile.then_some(ProfileRequest {
            base: args.base,
            metadata: args.metadata,
        }),
        json: args.json,
        log_file: args.log,
        level,
    })
}

/// The rules of a container's listenerMetadata, already split into words: -b, -m
/// and -d only, parsed exactly as on the command line. The error is one line.
pub fn parse_metadata_rules(words: &[String]) -> Result<Vec<Rule>, String> {
    #[derive(Debug, Parser)]
    #[command(
        name = "listenerMetadata",
        no_binary_name = true,
        disable_help_flag = true
    )]
    struct MetadataArgs {
        #[command(flatten)]
        rules: RuleArgs,
    }
    let matches = MetadataArgs::command()
        .try_get_matches_from(words)
        .map_err(|e| clap_error(&e.render().to_string()))?;
    let args = MetadataArgs::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let rules = ordered_rules(&matches, &args.rules).map_err(|e| e.reason)?;
    refuse_inherited(&rules)?;
    Ok(rules)
}

/// fd=N and sd=N name the agent's own descriptors, which no container has: refused.
fn refuse_inherited(rules: &[Rule]) -> Result<(), String> {
    match rules
        .iter()
        .find(|r| matches!(r.action, rule::Action::Replace(_)))
    {
        Some(r) => Err(format!(
            "'{}': the agent cannot hand inherited sockets (fd=, sd=) to containers",
            r.text
        )),
        None => Ok(()),
    }
}

fn agent_first_line(rendered: &str) -> String {
    format!("{} (try 'force-bind agent -h')", clap_error(rendered))
}

/// What is wrong, from clap's message: its first line, without "error: ", and the
/// line after it when it ends in ':' (the missing argument's name).
fn clap_error(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("bad command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match (first.ends_with(':'), lines.next()) {
        (true, Some(what)) => format!("{first} {what}"),
        _ => first.to_string(),
    }
}

/// A rule error, carried as the whole message line in `reason`.
fn option_error(option: &str, e: RuleError) -> RuleError {
    RuleError {
        reason: format!("{option}: {e}"),
        arg: e.arg,
    }
}

/// clap's messages run to several lines (usage, tips); keep the one that says what
/// is wrong, without its "error: " prefix.
fn first_line(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or("bad command line").trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    format!("{line} (try 'force-bind -h')")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, CliError> {
        parse(
            std::iter::once("force-bind")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    fn usage(args: &[&str]) -> String {
        match parse_str(args) {
            Err(CliError::Usage(msg)) => msg,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn options_stop_at_the_program() {
        let o = parse_str(&["-b", "127.0.0.1:1", "nc", "-l", "0.0.0.0", "5"]).unwrap();
        assert_eq!(o.command, ["nc", "-l", "0.0.0.0", "5"].map(OsString::from));
        let o = parse_str(&["-p", "ls", "-d", "-b", "x"]).unwrap();
        assert!(o.rules.is_empty());
        assert_eq!(o.engine, EngineChoice::Ptrace);
        let o = parse_str(&["-d", "--", "-weird-name"]).unwrap();
        assert_eq!(o.command, ["-weird-name"].map(OsString::from));
    }

    #[test]
    fn keeps_rule_order_across_options() {
        let o = parse_str(&[
            "-m",
            ":80=allow",
            "-d",
            "-b",
            "127.0.0.1",
            "-d",
            "-m",
            ":81=deny",
            "true",
        ])
        .unwrap();
        let texts: Vec<_> = o.rules.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            ["-m :80=allow", "-d", "-b 127.0.0.1", "-d", "-m :81=deny"]
        );
    }

    #[test]
    fn flags() {
        let o = parse_str(&["-L", "-v", "-t", "5", "--pass-listen-fds", "true"]).unwrap();
        assert!(o.skip_listen && o.pass_listen_fds);
        assert_eq!(o.level, Level::Verbose);
        assert_eq!(o.ignored_timeout.as_deref(), Some("5"));
        assert_eq!(
            parse_str(&["-q", "-v", "true"]).unwrap().level,
            Level::Quiet
        );
        assert_eq!(parse_str(&["-D", "true"]).unwrap().level, Level::Debug);
        assert_eq!(
            parse_str(&["--engine", "notify", "true"]).unwrap().engine,
            EngineChoice::Notify
        );
        assert_eq!(
            parse_str(&["--engine", "bpf", "true"]).unwrap().engine,
            EngineChoice::Bpf
        );
        assert!(parse_str(&["-V"]).unwrap().version);
        assert!(matches!(parse_str(&["-h"]), Err(CliError::Help(h)) if h.contains("Examples:")));
    }

    #[test]
    fn bad_input_is_one_line_naming_it() {
        for (args, needle) in [
            (&["-m", "garbage", "true"][..], "garbage"),
            (&["-b", "300.1.1.1:5", "true"][..], "300.1.1.1:5"),
            (&["-x", "true"][..], "-x"),
            (&["--engine", "warp", "true"][..], "warp"),
            (&["-b"][..], "-b"),
            (&["-d"][..], "PROGRAM"),
            (&[][..], "PROGRAM"),
        ] {
            let msg = usage(args);
            assert!(msg.contains(needle), "{args:?}: {msg}");
            assert!(!msg.contains('\n'), "{args:?}: {msg}");
        }
    }
}
