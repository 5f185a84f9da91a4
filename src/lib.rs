//! force-bind: run a program and take control of its bind() calls.
//!
//! `run` wires the pieces: the command line (cli) becomes a policy (rule, with the
//! inherited sockets from activation), the kernel's facts are asked once (kernel), an
//! engine (notify or ptrace, chosen by engine on those facts) carries the policy out on
//! the program, and force-bind leaves with the program's status or the engine's typed
//! error (exit, spawn::RunError). The policy modules are public for the fuzz targets
//! and benchmarks.

#[path = "../arch/mod.rs"]
mod arch;

mod activation;
mod agent;
mod as_target;
mod bpf;
mod cli;
mod diagnose;
mod engine;
pub mod event;
mod exit;
mod filter;
mod handler;
mod kernel;
mod log;
mod manual;
mod memory;
mod notify;
pub mod policy;
mod ptrace;
mod resolve;
pub mod rule;
mod sidebind;
pub mod sockaddr;
mod spawn;
mod target;

use cli::CliError;
use log::warn;
use spawn::RunError;

const VERSION: &str = env!("FORCE_BIND_VERSION");

/// The whole program: parse `std::env::args_os()`, run, and say with which status
/// to exit (the program's own, when it ended by itself; a death by signal is passed
/// on before this returns).
pub fn run() -> u8 {
    runtime_setup();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `force-bind agent ...` (a program named "agent" runs as `force-bind -- agent`).
    if argv.get(1).is_some_and(|a| a == "agent") {
        return agent::main(argv);
    }
    let options = match cli::parse(argv) {
        Ok(options) => options,
        Err(CliError::Help(text)) => return print_out(&text),
        Err(CliError::Usage(message)) => {
            eprintln!("force-bind: {message}");
            return exit::USAGE as u8;
        }
    };
    log::set_level(options.level);
    let Ok(log_file) = log::open_log_file(options.log_file.as_deref()) else {
        return exit::INTERNAL as u8;
    };
    // With no rule at all force-bind only watches: every bind and listen is shown.
    log::configure_events(options.json, options.rules.is_empty(), log_file);
    if let Some(what) = options.generate {
        return print_documentation(what);
    }
    // Once, here: the engine choice and the engines only read these facts.
    let kernel = kernel::Kernel::probe();
    if options.version {
        return print_out(&format!(
            "force-bind {VERSION}\n{}\n",
            engine::describe(kernel)
        ));
    }
    if let Some(nsecs) = &options.ignored_timeout {
        warn!("-t {nsecs} is ignored: force-bind no longer needs a timeout");
    }

    // The program must not be able to attach to force-bind, read its memory or take
    // its descriptors (PTRACE_ATTACH, process_vm_readv, /proc/PID/mem, pidfd_getfd
    // all need force-bind dumpable to a process of the same user without
    // CAP_SYS_PTRACE). The child undoes it before exec (spawn.rs).
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        warn!(
            "cannot make force-bind non-dumpable: {}",
            nix::errno::Errno::last()
        );
    }
    if !options.allow_io_uring {
        for fd in activation::close_inherited_rings() {
            warn!(
                "closed inherited io_uring descriptor {fd}: its binds would bypass the rules (--allow-io-uring keeps it)"
            );
        }
    }
    let inherited = activation::inherited(&options.rules);
    let policy = policy::Policy {
        rules: options.rules,
        inherited,
        skip_listen_on_replaced: options.skip_listen,
        allow_io_uring: options.allow_io_uring,
    };
    // A rule naming a socket that was not passed would bind normally: say so now.
    for warning in policy.unpassed_sockets() {
        warn!("{warning}");
    }
    let env = activation::program_env(options.pass_listen_fds);
    let set_listen_pid = options.pass_listen_fds && policy.inherited.systemd_count > 0;
    let mut program = match spawn::Program::new(&options.command, env, set_listen_pid) {
        Ok(program) => program,
        Err(e) => return fail_spawn(&e),
    };

    // The policy lives as long as the process; the notify engine's threads share it.
    let policy: &'static policy::Policy = Box::leak(Box::new(policy));
    match engine::run(options.engine, kernel, policy, &mut program) {
        Ok(status) => exit::leave(status),
        Err(RunError::Spawn(e)) => fail_spawn(&e),
        Err(RunError::Engine(e)) => {
            eprintln!("force-bind: {e:#}");
            exit::INTERNAL as u8
        }
        Err(RunError::Refused(why)) => {
            eprintln!("force-bind: {why}");
            exit::USAGE as u8
        }
    }
}

/// What Rust's own start-up (`fn main`'s `lang_start`) would do and force-bind needs;
/// main.rs skips the rest of it (a stack-overflow handler that reads
/// /proc/self/maps and maps an alternate signal stack) because start-up time is
/// what a wrapper of short commands pays every time (issue 15).
fn runtime_setup() {
    // Descriptors 0-2 closed by our caller would otherwise be taken by the first
    // files and sockets we open, and our messages would go into them.
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll(2) on three pollfds we own, without waiting.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } >= 0 {
        for _closed in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
            // SAFETY: open(2) of a constant path. The lowest free number is taken,
            // which is the lowest closed one of 0-2: each is filled in turn and
            // stays open for good.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
    // The notify engine's threads allocate little and rarely: without this, glibc
    // maps (and trims) a 64 MiB arena for each thread's first allocation.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; no thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // A reader that goes away (`force-bind ... | head`) makes writes to it fail with
    // EPIPE instead of killing force-bind, and with it the program's supervision.
    // SAFETY: ignoring a signal installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// `--generate-man` / `--completions SHELL`: the page or script on stdout.
fn print_documentation(what: cli::Generate) -> u8 {
    let mut out = std::io::stdout().lock();
    let written = match what {
        cli::Generate::ManPage => manual::write_man_page(VERSION, &mut out),
        cli::Generate::Completions(shell) => {
            manual::write_completions(shell, &mut out);
            Ok(())
        }
    };
    match written.and_then(|()| std::io::Write::flush(&mut out)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("force-bind: cannot write to stdout: {e}");
            exit::INTERNAL as u8
        }
    }
}

fn fail_spawn(e: &spawn::SpawnError) -> u8 {
    eprintln!("force-bind: {e}");
    match e {
        spawn::SpawnError::NotFound(_) => exit::NOT_FOUND as u8,
        spawn::SpawnError::NotExecutable(..) => exit::NOT_EXECUTABLE as u8,
    }
}

/// Writes `text` (help, -V, a profile) to standard output: 0, or 125 with one line
/// when it cannot be written. A reader that went away (`force-bind -V | head -1`) is
/// no error: nothing is left to say to it.
pub(crate) fn print_out(text: &str) -> u8 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("force-bind: cannot write to stdout: {e}");
            exit::INTERNAL as u8
        }
    }
}
