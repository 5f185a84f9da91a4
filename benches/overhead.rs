//! overhead: what force-bind costs a program, measured against the same program run
//! natively (issue 7). `cargo bench --bench overhead` runs it in full and prints one
//! table; `-- --json` prints the results as JSON (and the table on stderr);
//! `-- --quick` (or FORCE_BIND_BENCH_QUICK=1) runs a few iterations of everything, for
//! CI. Results and the machine they were taken on are in docs/performance.md.
//!
//! The target, `benches/c/bench_target.c`, is compiled with gcc at run time; it times
//! its own loops, so process start-up is only in the start-up figure. Every figure is
//! taken natively, under `force-bind -p` (ptrace), `force-bind --engine notify` and
//! `force-bind --engine bpf` (root), the runs alternating round by round (in a rotating order), and each
//! is the median of its rounds, so a noisy machine's drift cancels out. The spread
//! (interquartile range over the median) is printed next to each median.
//!
//! The bench fails (exit 1) only when something is broken: a run that fails or times
//! out, a bind the rule did not rewrite, output it cannot read, or a supervisor whose
//! descriptor count grows with the number of binds. Timings never fail it; goals
//! missed are reported as such.
//!
//! Options (after `--`): --quick, --json, --rounds N (every figure's round count),
//! --only FIGURE[,FIGURE...] (bind, getppid, startup, concurrency, memory). Run
//! outside `cargo bench` (without cargo's `--bench` flag, e.g. by `cargo test
//! --benches`), it does the quick mode. FORCE_BIND_BENCH_BEFORE=PATH runs that build's
//! ptrace and notify engines in the same rounds too (before/after in one run), and
//! the floors (benches/c/floor.c) run beside every figure. FORCE_BIND_BENCH_BIN=PATH measures that
//! force-bind binary instead of the one cargo built (to compare two builds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rule every force-bind run gets: it matches each bind of the target (which asks
/// for 127.0.0.1:0) and rewrites it, so the target's first bind proves it was applied.
const RULE: &str = "127.0.0.2";
const NATIVE_ADDR: &str = "127.0.0.1";
const RULE_ADDR: &str = "127.0.0.2";
/// Longest any single run may take before it is killed and the bench fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const MAX_ROUNDS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Native,
    Ptrace,
    Notify,
    /// `--engine bpf` (issue 13, root): with an IPv6 rule too, which the engine
    /// needs for the `[::]` binds an IPv4 rule alone would meet.
    Bpf,
    /// The floors (issue 15, `benches/c/floor.c`): the least any supervisor of each
    /// kind costs here. A tracer that answers each seccomp stop with PTRACE_CONT
    /// (the bind is not rewritten).
    FloorPtrace,
    /// The same tracer polling waitpid(WNOHANG) for 50 us before it blocks, as
    /// force-bind's does (an idle vCPU is slow to wake).
    FloorPtraceSpin,
    /// The polling tracer plus what a race-free one must do per bind: the registers
    /// read, pidfd_getfd, the sockaddr read, bind on the copy (rewritten), close, the
    /// call skipped with its result set.
    FloorPtraceFull,
    /// A notify supervisor answering each bind with SECCOMP_USER_NOTIF_FLAG_CONTINUE
    /// (the kernel's round trip only; the bind is not rewritten).
    FloorNotify,
    /// The same plus what a race-free supervisor must do per bind: pidfd_getfd, the
    /// sockaddr read, ID_VALID, bind on the copy (rewritten), close, SEND.
    FloorNotifyFull,
    /// Start-up only: a static C vfork, seccomp filter with a listener, exec, wait.
    FloorStart,
    /// The ptrace and notify engines of FORCE_BIND_BENCH_BEFORE=PATH, another build
    /// measured in the same rounds (a before/after comparison in one run).
    PtraceBefore,
    NotifyBefore,
}

const CONFIGS: [Config; 4] = [Config::Native, Config::Ptrace, Config::Notify, Config::Bpf];
const ENGINES: [Config; 3] = [Config::Ptrace, Config::Notify, Config::Bpf];
/// Every configuration, in the order the JSON lists them.
const ALL: [Config; 12] = [
    Config::Native,
    Config::Ptrace,
    Config::Notify,
    Config::Bpf,
    Config::FloorPtrace,
    Config::FloorPtraceSpin,
    Config::FloorPtraceFull,
    Config::FloorNotify,
    Config::FloorNotifyFull,
    Config::FloorStart,
    Config::PtraceBefore,
    Config::NotifyBefore,
];
/// Per figure, what runs side by side, alternating round by round.
const BIND_CONFIGS: [Config; 9] = [
    Config::Native,
    Config::Ptrace,
    Config::Notify,
    Config::Bpf,
    Config::FloorPtrace,
    Config::FloorPtraceSpin,
    Config::FloorPtraceFull,
    Config::FloorNotify,
    Config::FloorNotifyFull,
];
const STARTUP_CONFIGS: [Config; 5] = [
    Config::Native,
    Config::Ptrace,
    Config::Notify,
    Config::Bpf,
    Config::FloorStart,
];
const CONC_CONFIGS: [Config; 6] = [
    Config::Native,
    Config::Ptrace,
    Config::Notify,
    Config::Bpf,
    Config::FloorNotify,
    Config::FloorNotifyFull,
];

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Native => "native",
            Config::Ptrace => "ptrace",
            Config::Notify => "notify",
            Config::Bpf => "bpf",
            Config::FloorPtrace => "floor-ptrace",
            Config::FloorPtraceSpin => "floor-ptrace-spin",
            Config::FloorPtraceFull => "floor-ptrace-full",
            Config::FloorNotify => "floor-notify",
            Config::FloorNotifyFull => "floor-notify-full",
            Config::FloorStart => "floor-start",
            Config::PtraceBefore => "ptrace-before",
            Config::NotifyBefore => "notify-before",
        }
    }

    /// force-bind's options for this configuration (none: run natively).
    fn force_bind_args(self) -> Option<&'static [&'static str]> {
        match self {
            Config::Native => None,
            Config::Ptrace | Config::PtraceBefore => Some(&["-p", "-b", RULE]),
            Config::Notify | Config::NotifyBefore => Some(&["--engine", "notify", "-b", RULE]),
            Config::Bpf => Some(&["--engine", "bpf", "-b", RULE, "-b", "[::1]"]),
            _ => None,
        }
    }

    fn expected_addr(self) -> &'static str {
        match self {
            Config::Native
            | Config::FloorPtrace
            | Config::FloorPtraceSpin
            | Config::FloorNotify
            | Config::FloorStart => NATIVE_ADDR,
            _ => RULE_ADDR,
        }
    }
}

/// How much of everything to do.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    bind_iters: u64,
    bind_rounds: usize,
    getppid_iters: u64,
    getppid_rounds: usize,
    startup_rounds: usize,
    conc_procs: u64,
    conc_threads: u64,
    conc_per_thread: u64,
    conc_rounds: usize,
    mem_first: u64,
    mem_total: u64,
}

const FULL: Sizes = Sizes {
    bind_iters: 20_000,
    bind_rounds: 11,
    getppid_iters: 2_000_000,
    getppid_rounds: 11,
    startup_rounds: 301,
    conc_procs: 8,
    conc_threads: 8,
    conc_per_thread: 1_000,
    conc_rounds: 7,
    mem_first: 1_000,
    mem_total: 100_000,
};

const QUICK: Sizes = Sizes {
    bind_iters: 500,
    bind_rounds: 3,
    getppid_iters: 100_000,
    getppid_rounds: 3,
    startup_rounds: 9,
    conc_procs: 8,
    conc_threads: 8,
    conc_per_thread: 20,
    conc_rounds: 1,
    mem_first: 100,
    mem_total: 1_000,
};

const FIGURES: [&str; 5] = ["bind", "getppid", "startup", "concurrency", "memory"];

struct Options {
    quick: bool,
    json: bool,
    rounds: Option<usize>,
    only: Vec<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut opts = Options {
        quick: std::env::var_os("FORCE_BIND_BENCH_QUICK")
            .is_some_and(|v| v != "0" && !v.is_empty()),
        json: false,
        rounds: None,
        only: FIGURES.iter().map(|s| s.to_string()).collect(),
    };
    let mut under_cargo_bench = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => under_cargo_bench = true,
            "--quick" => opts.quick = true,
            "--json" => opts.json = true,
            "--rounds" => {
                let n: usize = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=MAX_ROUNDS).contains(n))
                    .ok_or(format!("--rounds takes a number from 1 to {MAX_ROUNDS}"))?;
                opts.rounds = Some(n);
            }
            "--only" => {
                let list = args.next().ok_or("--only takes a list of figures")?;
                opts.only = list.split(',').map(str::to_string).collect();
                if let Some(bad) = opts.only.iter().find(|f| !FIGURES.contains(&f.as_str())) {
                    return Err(format!(
                        "unknown figure {bad}; figures: {}",
                        FIGURES.join(",")
                    ));
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // `cargo test --benches` runs us without --bench: prove it works, quickly.
    opts.quick |= !under_cargo_bench;
    Ok(opts)
}

// ---------------------------------------------------------------------------
// Running programs, each bounded in time
// ---------------------------------------------------------------------------

/// Kills the process group of a run that outlives its deadline. The group is the one
/// the run started (`process_group(0)`): force-bind or the native target, and the
/// target's own processes under force-bind.
#[derive(Clone, Default)]
struct Watchdog {
    armed: Arc<Mutex<Option<(i32, Instant)>>>,
}

impl Watchdog {
    fn start() -> Watchdog {
        let dog = Watchdog::default();
        let armed = Arc::clone(&dog.armed);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut slot = armed.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((pgid, deadline)) = *slot
                    && Instant::now() > deadline
                {
                    eprintln!("overhead: run {pgid} timed out; killing its process group");
                    // SAFETY: kill(2) on the process group we created; its leader is
                    // not reaped yet (see `wait_unreaped`), so the id is still ours.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    *slot = None;
                }
            }
        });
        dog
    }

    fn arm(&self, pid: u32) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((pid as i32, Instant::now() + RUN_TIMEOUT));
    }

    fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Blocks until `pid` has exited without reaping it (waitid WNOWAIT), so its id
/// cannot be reused while the watchdog may still signal its group.
fn wait_unreaped(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child, writing into a local.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

#[derive(Clone)]
struct Bench {
    force_bind: PathBuf,
    target: PathBuf,
    dog: Watchdog,
    /// benches/c/floor.c, built statically.
    floor: PathBuf,
    /// The notify floors' worker threads (1 for one bind at a time).
    floor_workers: usize,
    /// FORCE_BIND_BENCH_BEFORE: a second build, run in the same rounds.
    before: Option<PathBuf>,
    /// Run everything (force-bind, its workers, the target) on this one CPU.
    pin: Option<usize>,
}

impl Bench {
    fn command(&self, config: Config, program: &Path, args: &[String]) -> Command {
        let floor = |args: &[&str]| {
            let mut cmd = Command::new(&self.floor);
            cmd.args(args).arg(program);
            cmd
        };
        let workers = self.floor_workers.to_string();
        let mut cmd = match config {
            Config::Native => Command::new(program),
            Config::FloorPtrace => floor(&["ptrace", "block"]),
            Config::FloorPtraceSpin => floor(&["ptrace", "spin"]),
            Config::FloorPtraceFull => floor(&["ptrace", "full"]),
            Config::FloorNotify => floor(&["notify", "continue", &workers]),
            Config::FloorNotifyFull => floor(&["notify", "full", &workers]),
            Config::FloorStart => floor(&["start"]),
            Config::Ptrace | Config::Notify | Config::Bpf => {
                let mut cmd = Command::new(&self.force_bind);
                cmd.args(config.force_bind_args().expect("an engine"))
                    .arg(program);
                cmd
            }
            Config::PtraceBefore | Config::NotifyBefore => {
                // Only in `configs` when there is a build to run.
                let mut cmd = Command::new(self.before.as_deref().unwrap_or(&self.force_bind));
                cmd.args(config.force_bind_args().expect("an engine"))
                    .arg(program);
                cmd
            }
        };
        cmd.args(args).process_group(0);
        if let Some(cpu) = self.pin {
            // SAFETY: the closure runs between fork and exec and makes one
            // async-signal-safe syscall on a local cpu_set_t.
            unsafe {
                cmd.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    let size = std::mem::size_of::<libc::cpu_set_t>();
                    if libc::sched_setaffinity(0, size, &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
        cmd
    }

    /// A figure's configurations, with the second build's engines when there is one.
    fn configs(&self, figure: &[Config]) -> Vec<Config> {
        let mut all = figure.to_vec();
        if self.before.is_some() {
            all.extend([Config::PtraceBefore, Config::NotifyBefore]);
        }
        all
    }

    fn finish(&self, mut child: Child) -> Result<ExitStatus, String> {
        wait_unreaped(child.id());
        self.dog.disarm();
        child.wait().map_err(|e| format!("wait: {e}"))
    }

    /// Runs `program args` in `config` to the end; its stdout.
    fn run(&self, config: Config, program: &Path, args: &[String]) -> Result<String, String> {
        let what = format!("{} {} {}", config.name(), program.display(), args.join(" "));
        let mut cmd = self.command(config, program, args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
        self.dog.arm(child.id());
        let mut stderr = child.stderr.take().expect("piped");
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        let _ = child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut stdout);
        let status = self.finish(child)?;
        let stderr = err_reader.join().unwrap_or_default();
        if !status.success() {
            return Err(format!("{what}: {status}\n{stderr}"));
        }
        Ok(stdout)
    }

    /// Spawn-to-exit time of `program` (no output captured).
    fn time_start(&self, config: Config, program: &Path) -> Result<Duration, String> {
        let mut cmd = self.command(config, program, &[]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("{} {}: {e}", config.name(), program.display()))?;
        self.dog.arm(child.id());
        let status = self.finish(child)?;
        let elapsed = start.elapsed();
        if !status.success() {
            return Err(format!("{} {}: {status}", config.name(), program.display()));
        }
        Ok(elapsed)
    }

    fn target(&self, config: Config, args: &[&str]) -> Result<BTreeMap<String, String>, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let fields = parse_fields(&self.run(config, &self.target, &args)?);
        if let Some(addr) = fields.get("addr")
            && addr != config.expected_addr()
        {
            return Err(format!(
                "{}: the target bound {addr}, expected {} (the rule was not applied)",
                config.name(),
                config.expected_addr()
            ));
        }
        Ok(fields)
    }
}

fn parse_fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field(fields: &BTreeMap<String, String>, key: &str) -> Result<f64, String> {
    fields
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("the target printed no {key}= ({fields:?})"))
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn quantile(&self, q: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        // Linear interpolation between the closest ranks.
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    }

    fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// Interquartile range over the median, in percent: how noisy the rounds were.
    fn spread(&self) -> f64 {
        100.0 * (self.quantile(0.75) - self.quantile(0.25)) / self.median()
    }
}

/// One figure, per configuration.
#[derive(Default)]
struct Figure {
    unit: &'static str,
    per: BTreeMap<&'static str, Samples>,
}

impl Figure {
    fn new(unit: &'static str) -> Figure {
        Figure {
            unit,
            per: BTreeMap::new(),
        }
    }

    fn push(&mut self, config: Config, value: f64) {
        self.per.entry(config.name()).or_default().0.push(value);
    }

    fn median(&self, config: Config) -> f64 {
        self.per
            .get(config.name())
            .map_or(f64::NAN, Samples::median)
    }
}

/// The configurations in a different order each round.
fn rotation(configs: &[Config], round: usize) -> Vec<Config> {
    let mut order = configs.to_vec();
    order.rotate_left(round % configs.len().max(1));
    order
}

// ---------------------------------------------------------------------------
// The figures
// ---------------------------------------------------------------------------

struct Results {
    figures: BTreeMap<&'static str, Figure>,
    memory: BTreeMap<&'static str, Memory>,
}

fn bind_figure(b: &Bench, s: Sizes, rounds: usize) -> Result<Figure, String> {
    let mut fig = Figure::new("us/bind");
    let iters = s.bind_iters.to_string();
    let configs = b.configs(&BIND_CONFIGS);
    for &config in &configs {
        b.target(config, &["bind", &(s.bind_iters / 10).max(1).to_string()])?;
    }
    for round in 0..rounds {
        for config in rotation(&configs, round) {
            let f = b.target(config, &["bind", &iters])?;
            fig.push(config, field(&f, "ns")? / s.bind_iters as f64 / 1e3);
        }
    }
    Ok(fig)
}

fn getppid_figure(b: &Bench, s: Sizes, rounds: usize) -> Result<Figure, String> {
    let mut fig = Figure::new("ns/call");
    let iters = s.getppid_iters.to_string();
    for round in 0..rounds {
        for config in rotation(&b.configs(&CONFIGS), round) {
            let f = b.target(config, &["getppid", &iters])?;
            fig.push(config, field(&f, "ns")? / s.getppid_iters as f64);
        }
    }
    Ok(fig)
}

fn startup_figure(b: &Bench, rounds: usize) -> Result<Figure, String> {
    let mut fig = Figure::new("ms");
    let program = Path::new("/bin/true");
    let configs = b.configs(&STARTUP_CONFIGS);
    for &config in &configs {
        b.time_start(config, program)?;
    }
    for round in 0..rounds {
        for config in rotation(&configs, round) {
            let t = b.time_start(config, program)?;
            fig.push(config, t.as_secs_f64() * 1e3);
        }
    }
    Ok(fig)
}

/// Throughput, p50 and p99 latency of one bind() with 8x8 threads binding at once.
fn concurrency_figures(b: &Bench, s: Sizes, rounds: usize) -> Result<[Figure; 3], String> {
    let mut rate = Figure::new("binds/s");
    let mut p50 = Figure::new("us");
    let mut p99 = Figure::new("us");
    let args = [
        s.conc_procs.to_string(),
        s.conc_threads.to_string(),
        s.conc_per_thread.to_string(),
    ];
    for round in 0..rounds {
        for config in rotation(&b.configs(&CONC_CONFIGS), round) {
            let f = b.target(config, &["conc", &args[0], &args[1], &args[2]])?;
            let binds = field(&f, "binds")?;
            let expected = (s.conc_procs * s.conc_threads * s.conc_per_thread) as f64;
            if binds != expected {
                return Err(format!("concurrency: {binds} binds, expected {expected}"));
            }
            rate.push(config, binds / (field(&f, "ns")? / 1e9));
            p50.push(config, field(&f, "p50")? / 1e3);
            p99.push(config, field(&f, "p99")? / 1e3);
        }
    }
    Ok([rate, p50, p99])
}

/// The supervisor's own figures: force-bind's peak RSS and open descriptors after
/// `mem_first` and after `mem_total` binds.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    hwm_kib_first: u64,
    hwm_kib: u64,
    rss_kib: u64,
    fds_first: u64,
    fds: u64,
    threads: u64,
}

fn proc_status(pid: u32, key: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(format!("no {key} in /proc/{pid}/status"))
}

fn fd_count(pid: u32) -> Result<u64, String> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count() as u64)
}

fn memory_run(b: &Bench, config: Config, s: Sizes) -> Result<Memory, String> {
    let first = s.mem_first.to_string();
    let rest = (s.mem_total - s.mem_first).to_string();
    let mut cmd = b.command(config, &b.target, &["hold".into(), first, rest]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("memory: {e}"))?;
    b.dog.arm(child.id());
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let lines = line_reader(child.stdout.take().expect("piped"));
    let expect = |want: &str| -> Result<String, String> {
        match lines.recv_timeout(RUN_TIMEOUT) {
            Ok(line) if line.starts_with(want) => Ok(line),
            Ok(line) => Err(format!("memory: expected {want}, got {line:?}")),
            Err(_) => Err(format!("memory: no {want} from the target")),
        }
    };
    let measured = (|| {
        let line = expect("phase1")?;
        if let Some(addr) = parse_fields(&line).get("addr")
            && addr != config.expected_addr()
        {
            return Err(format!("memory: the target bound {addr}, not {RULE_ADDR}"));
        }
        let mut m = Memory {
            hwm_kib_first: proc_status(pid, "VmHWM:")?,
            fds_first: fd_count(pid)?,
            ..Memory::default()
        };
        stdin.write_all(b"go\n").map_err(|e| e.to_string())?;
        expect("phase2")?;
        m.hwm_kib = proc_status(pid, "VmHWM:")?;
        m.rss_kib = proc_status(pid, "VmRSS:")?;
        m.fds = fd_count(pid)?;
        m.threads = proc_status(pid, "Threads:")?;
        stdin.write_all(b"go\n").map_err(|e| e.to_string())?;
        Ok(m)
    })();
    drop(stdin);
    let status = b.finish(child)?;
    let m = measured?;
    if !status.success() {
        return Err(format!("memory: {}: {status}", config.name()));
    }
    Ok(m)
}

fn line_reader(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// Goals and reports
// ---------------------------------------------------------------------------

struct Goal {
    name: String,
    value: f64,
    limit: f64,
    unit: &'static str,
    /// The goal is a floor (throughput), not a ceiling.
    at_least: bool,
}

impl Goal {
    fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.limit
        } else {
            self.value <= self.limit
        }
    }

    fn ceiling(name: String, value: f64, limit: f64, unit: &'static str) -> Goal {
        Goal {
            name,
            value,
            limit,
            unit,
            at_least: false,
        }
    }
}

/// Issue 15's start-up goals: the build `cargo install` makes (dynamically linked),
/// and the static one (`cargo static`, what the .deb ships), which has no dynamic
/// loader to pay for.
const STARTUP_GOAL_MS: f64 = 0.6;
const STARTUP_GOAL_STATIC_MS: f64 = 0.55;

/// Whether the ELF file at `path` is statically linked: it has no PT_INTERP
/// program header (no dynamic loader to run first).
fn is_static(path: &Path) -> bool {
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    // ELF64 little-endian only (x86_64, aarch64): e_phoff, e_phentsize, e_phnum.
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    !(0..phnum).any(|i| {
        elf.get(phoff + i * phentsize..phoff + i * phentsize + 4)
            .is_some_and(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) == PT_INTERP)
    })
}

fn goals(r: &Results, static_build: bool) -> Vec<Goal> {
    let mut goals = Vec::new();
    if let Some(f) = r.figures.get("bind") {
        let native = f.median(Config::Native);
        // Ptrace's 20 us is issue 15's (it was 25), the bpf engine's 0.2 us issue 13's.
        for (config, limit) in [
            (Config::Notify, 10.0),
            (Config::Ptrace, 20.0),
            (Config::Bpf, 0.2),
        ] {
            goals.push(Goal::ceiling(
                format!("{} bind overhead", config.name()),
                f.median(config) - native,
                limit,
                "us",
            ));
        }
    }
    if let Some(f) = r.figures.get("conc_rate") {
        // Issue 13: 8x8 throughput >= 0.95x native, as native/bpf <= 1/0.95.
        goals.push(Goal::ceiling(
            "bpf 8x8 native/bpf rate".into(),
            f.median(Config::Native) / f.median(Config::Bpf),
            1.0 / 0.95,
            "x",
        ));
    }
    if let Some(f) = r.figures.get("getppid") {
        for config in ENGINES {
            goals.push(Goal::ceiling(
                format!("{} getppid ratio", config.name()),
                f.median(config) / f.median(Config::Native),
                1.30,
                "x",
            ));
        }
    }
    if let Some(f) = r.figures.get("startup") {
        let (limit, build) = if static_build {
            (STARTUP_GOAL_STATIC_MS, "static")
        } else {
            (STARTUP_GOAL_MS, "dynamic")
        };
        for config in ENGINES {
            goals.push(Goal::ceiling(
                format!("{} start-up added ({build})", config.name()),
                f.median(config) - f.median(Config::Native),
                limit,
                "ms",
            ));
        }
    }
    // Many binds at once (issue 15): the notify engine's figures.
    if let (Some(rate), Some(p50)) = (r.figures.get("conc_rate"), r.figures.get("conc_p50")) {
        goals.push(Goal::ceiling(
            "notify 8x8 bind() p50".into(),
            p50.median(Config::Notify),
            100.0,
            "us",
        ));
        goals.push(Goal {
            name: "notify 8x8 rate vs native".into(),
            value: rate.median(Config::Notify) / rate.median(Config::Native),
            limit: 0.35,
            unit: "x",
            at_least: true,
        });
    }
    for (engine, m) in &r.memory {
        goals.push(Goal::ceiling(
            format!("{engine} supervisor peak RSS"),
            m.hwm_kib as f64 / 1024.0,
            4.0,
            "MiB",
        ));
        goals.push(Goal::ceiling(
            format!("{engine} supervisor fds added"),
            m.fds as f64 - m.fds_first as f64,
            0.0,
            "fds",
        ));
    }
    goals
}

struct Machine {
    cpus: usize,
    cpu: String,
    kernel: String,
    force_bind: String,
    /// The measured force-bind is statically linked (its start-up goal is lower).
    static_build: bool,
    load_before: String,
    load_after: String,
}

fn machine(force_bind: &Path) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let version = Command::new(force_bind)
        .arg("-V")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        force_bind: version,
        static_build: is_static(force_bind),
        load_before: loadavg(),
        load_after: String::new(),
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 10_000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

const ROWS: [(&str, &str); 7] = [
    ("bind", "bind: socket+bind+close"),
    ("bind_pinned", "bind, all on CPU 0"),
    ("getppid", "getppid"),
    ("startup", "start-up of /bin/true"),
    ("conc_rate", "8x8 threads binding: rate"),
    ("conc_p50", "8x8 threads: bind() p50"),
    ("conc_p99", "8x8 threads: bind() p99"),
];

fn table(r: &Results, m: &Machine, mode: &str, s: Sizes) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "force-bind overhead ({mode}; {} CPUs, {}, Linux {}; {}, {} build)",
        m.cpus,
        m.cpu,
        m.kernel,
        m.force_bind,
        if m.static_build { "static" } else { "dynamic" }
    );
    let _ = writeln!(
        out,
        "load average before: {}, after: {}; medians of rounds, (spread = IQR/median)",
        m.load_before, m.load_after
    );
    let _ = writeln!(
        out,
        "{:<28} {:>8}  {:>20}  {:>24}  {:>24}  {:>24}",
        "figure", "unit", "native", "ptrace (vs native)", "notify (vs native)", "bpf (vs native)"
    );
    for (key, label) in ROWS {
        let Some(f) = r.figures.get(key) else {
            continue;
        };
        let native = f.median(Config::Native);
        let cell = |c: Config| {
            let samples = f.per.get(c.name()).cloned().unwrap_or_default();
            let med = samples.median();
            let base = format!("{} ({:.0}%)", fmt_value(med), samples.spread());
            if c == Config::Native {
                return base;
            }
            let rel = match key {
                "bind" | "bind_pinned" | "startup" => format!("+{}", fmt_value(med - native)),
                _ => format!("{:.2}x", med / native),
            };
            format!("{base} {rel}")
        };
        let _ = writeln!(
            out,
            "{:<28} {:>8}  {:>20}  {:>24}  {:>24}  {:>24}",
            label,
            f.unit,
            cell(Config::Native),
            cell(Config::Ptrace),
            cell(Config::Notify),
            cell(Config::Bpf)
        );
    }
    if !r.memory.is_empty() {
        let _ = writeln!(
            out,
            "supervisor after {} / {} binds:",
            s.mem_first, s.mem_total
        );
        for (engine, mem) in &r.memory {
            let _ = writeln!(
                out,
                "  {engine}: peak RSS (VmHWM) {} / {} KiB, RSS {} KiB, fds {} / {}, threads {}",
                mem.hwm_kib_first, mem.hwm_kib, mem.rss_kib, mem.fds_first, mem.fds, mem.threads
            );
        }
    }
    let _ = writeln!(out, "goals:");
    for g in goals(r, m.static_build) {
        let verdict = if g.met() {
            "met".to_string()
        } else {
            format!(
                "MISSED by {} {}",
                fmt_value((g.value - g.limit).abs()),
                g.unit
            )
        };
        let _ = writeln!(
            out,
            "  {:<32} {:>9} {:<4} (goal {} {} {}): {verdict}",
            g.name,
            fmt_value(g.value),
            g.unit,
            if g.at_least { ">=" } else { "<=" },
            g.limit,
            g.unit
        );
    }
    let floors = floor_lines(r, m.static_build);
    if !floors.is_empty() {
        let _ = writeln!(
            out,
            "floors (the least any supervisor of the kind costs, same rounds):"
        );
        for line in floors {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Each engine's figure next to its floor (what the least supervisor of its kind
/// costs in the same rounds) and its goal, one line each: how much of a gap is the
/// kernel's and how much is force-bind's.
fn floor_lines(r: &Results, static_build: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let added = |f: &Figure, c: Config| f.median(c) - f.median(Config::Native);
    let ratio = |f: &Figure, c: Config| f.median(c) / f.median(Config::Native);
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    // " (before +X)" when a second build ran in the same rounds.
    let before = |f: &Figure, c: Config, unit: &str| {
        if f.per.contains_key(c.name()) {
            format!(" (before +{} {unit})", fmt_value(added(f, c)))
        } else {
            String::new()
        }
    };
    for (key, label) in [("bind", "bind"), ("bind_pinned", "bind, CPU 0")] {
        let Some(f) = r.figures.get(key) else {
            continue;
        };
        let pt = added(f, Config::Ptrace);
        lines.push(format!(
            "ptrace {label:<12} +{} us{}; floor (tracer: RET_TRACE, PTRACE_CONT) +{} us, polling +{} us, race-free +{} us; goal <= +20 us: {}",
            fmt_value(pt),
            before(f, Config::PtraceBefore, "us"),
            fmt_value(added(f, Config::FloorPtrace)),
            fmt_value(added(f, Config::FloorPtraceSpin)),
            fmt_value(added(f, Config::FloorPtraceFull)),
            verdict(pt <= 20.0)
        ));
        let nt = added(f, Config::Notify);
        lines.push(format!(
            "notify {label:<12} +{} us{}; floor CONTINUE +{} us, race-free +{} us; goal <= +10 us: {}",
            fmt_value(nt),
            before(f, Config::NotifyBefore, "us"),
            fmt_value(added(f, Config::FloorNotify)),
            fmt_value(added(f, Config::FloorNotifyFull)),
            verdict(nt <= 10.0)
        ));
    }
    if let (Some(rate), Some(p50)) = (r.figures.get("conc_rate"), r.figures.get("conc_p50")) {
        let n = ratio(rate, Config::Notify);
        // Only when a second build ran.
        let was = |text: String| {
            if rate.per.contains_key(Config::NotifyBefore.name()) {
                format!(" (before {text})")
            } else {
                String::new()
            }
        };
        lines.push(format!(
            "notify 8x8 rate     {n:.2}x native{}; floor CONTINUE {:.2}x, race-free {:.2}x; goal >= 0.35x: {}",
            was(format!("{:.2}x", ratio(rate, Config::NotifyBefore))),
            ratio(rate, Config::FloorNotify),
            ratio(rate, Config::FloorNotifyFull),
            verdict(n >= 0.35)
        ));
        let m = p50.median(Config::Notify);
        lines.push(format!(
            "notify 8x8 p50      {} us{}; floor CONTINUE {} us, race-free {} us; goal <= 100 us: {}",
            fmt_value(m),
            was(format!("{} us", fmt_value(p50.median(Config::NotifyBefore)))),
            fmt_value(p50.median(Config::FloorNotify)),
            fmt_value(p50.median(Config::FloorNotifyFull)),
            verdict(m <= 100.0)
        ));
    }
    if let Some(f) = r.figures.get("startup") {
        let limit = if static_build {
            STARTUP_GOAL_STATIC_MS
        } else {
            STARTUP_GOAL_MS
        };
        for c in ENGINES {
            let a = added(f, c);
            lines.push(format!(
                "{:<6} start-up     +{} ms{}; floor (static C vfork, seccomp listener, exec) +{} ms; goal <= +{limit} ms: {}",
                c.name(),
                fmt_value(a),
                match c {
                    Config::Ptrace => before(f, Config::PtraceBefore, "ms"),
                    Config::Notify => before(f, Config::NotifyBefore, "ms"),
                    _ => String::new(),
                },
                fmt_value(added(f, Config::FloorStart)),
                verdict(a <= limit)
            ));
        }
    }
    lines
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json(r: &Results, m: &Machine, mode: &str, s: Sizes) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"mode\": {},", json_str(mode));
    let _ = writeln!(
        out,
        "  \"machine\": {{\"cpus\": {}, \"cpu\": {}, \"kernel\": {}, \"force_bind\": {}, \"static\": {}, \"load_before\": {}, \"load_after\": {}}},",
        m.cpus,
        json_str(&m.cpu),
        json_str(&m.kernel),
        json_str(&m.force_bind),
        m.static_build,
        json_str(&m.load_before),
        json_str(&m.load_after)
    );
    let _ = writeln!(
        out,
        "  \"sizes\": {{\"bind_iters\": {}, \"getppid_iters\": {}, \"concurrency\": [{}, {}, {}], \"memory_binds\": [{}, {}]}},",
        s.bind_iters,
        s.getppid_iters,
        s.conc_procs,
        s.conc_threads,
        s.conc_per_thread,
        s.mem_first,
        s.mem_total
    );
    out.push_str("  \"figures\": {");
    let mut first = true;
    for (key, f) in &r.figures {
        out.push_str(if first { "\n" } else { ",\n" });
        first = false;
        let _ = write!(
            out,
            "    {}: {{\"unit\": {}",
            json_str(key),
            json_str(f.unit)
        );
        for config in ALL.into_iter().filter(|c| f.per.contains_key(c.name())) {
            let samples = f.per.get(config.name()).cloned().unwrap_or_default();
            let list: Vec<String> = samples.0.iter().map(|v| json_num(*v)).collect();
            let _ = write!(
                out,
                ", {}: {{\"median\": {}, \"q1\": {}, \"q3\": {}, \"ratio_to_native\": {}, \"samples\": [{}]}}",
                json_str(config.name()),
                json_num(samples.median()),
                json_num(samples.quantile(0.25)),
                json_num(samples.quantile(0.75)),
                json_num(samples.median() / f.median(Config::Native)),
                list.join(", ")
            );
        }
        out.push('}');
    }
    out.push_str("\n  },\n  \"supervisor\": {");
    let mut first = true;
    for (engine, mem) in &r.memory {
        out.push_str(if first { "\n" } else { ",\n" });
        first = false;
        let _ = write!(
            out,
            "    {}: {{\"vm_hwm_kib_first\": {}, \"vm_hwm_kib\": {}, \"vm_rss_kib\": {}, \"fds_first\": {}, \"fds\": {}, \"threads\": {}}}",
            json_str(engine),
            mem.hwm_kib_first,
            mem.hwm_kib,
            mem.rss_kib,
            mem.fds_first,
            mem.fds,
            mem.threads
        );
    }
    out.push_str("\n  },\n  \"goals\": [");
    let mut first = true;
    for g in goals(r, m.static_build) {
        out.push_str(if first { "\n" } else { ",\n" });
        first = false;
        let _ = write!(
            out,
            "    {{\"goal\": {}, \"value\": {}, \"limit\": {}, \"at_least\": {}, \"unit\": {}, \"met\": {}}}",
            json_str(&g.name),
            json_num(g.value),
            json_num(g.limit),
            g.at_least,
            json_str(g.unit),
            g.met()
        );
    }
    out.push_str("\n  ]\n}\n");
    out
}

// ---------------------------------------------------------------------------

/// Compiles benches/c/NAME.c into cargo's scratch directory for benches: the target
/// (dynamic, as most programs are) and the floors (static, as the start-up floor
/// must be to be the least a wrapper costs: no loader).
fn build_c(name: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("benches/c/{name}.c"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("overhead");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A private name, then a rename: a concurrent bench never runs a half-written file.
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    let out = Command::new("gcc")
        .args(["-O2", "-Wall", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("gcc (needed to build the bench target): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn main() {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("overhead: {e}");
            std::process::exit(2);
        }
    };
    match bench(&opts) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("overhead: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

fn bench(opts: &Options) -> Result<String, String> {
    let s = if opts.quick { QUICK } else { FULL };
    let mode = if opts.quick { "quick" } else { "full" };
    let rounds = |default: usize| opts.rounds.unwrap_or(default);
    let b = Bench {
        // FORCE_BIND_BENCH_BIN: another build to measure (a before/after comparison).
        force_bind: std::env::var_os("FORCE_BIND_BENCH_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_force-bind")),
            PathBuf::from,
        ),
        target: build_c("bench_target", &[])?,
        // Static, as the start-up floor must be (no loader); a host without a static
        // libc gets a dynamic one, and says so.
        floor: build_c("floor", &["-static"]).or_else(|e| {
            eprintln!("overhead: no static floor ({e}); the start-up floor includes ld.so");
            build_c("floor", &[])
        })?,
        floor_workers: 1,
        before: std::env::var_os("FORCE_BIND_BENCH_BEFORE").map(PathBuf::from),
        dog: Watchdog::start(),
        pin: None,
    };
    let mut m = machine(&b.force_bind);
    let mut r = Results {
        figures: BTreeMap::new(),
        memory: BTreeMap::new(),
    };
    let wanted = |f: &str| opts.only.iter().any(|o| o == f);
    let started = Instant::now();
    let progress = |what: &str| eprintln!("overhead: {what} ({:.0?})", started.elapsed());
    if wanted("bind") {
        progress("bind");
        r.figures
            .insert("bind", bind_figure(&b, s, rounds(s.bind_rounds))?);
    }
    if wanted("bind") {
        // The same on one CPU: the engines' own cost, without cross-CPU wake-ups
        // (which the scheduler may or may not arrange; see docs/performance.md).
        progress("bind, pinned to CPU 0");
        let pinned = Bench {
            pin: Some(0),
            ..b.clone()
        };
        r.figures.insert(
            "bind_pinned",
            bind_figure(&pinned, s, rounds(s.bind_rounds))?,
        );
    }
    if wanted("getppid") {
        progress("getppid");
        r.figures
            .insert("getppid", getppid_figure(&b, s, rounds(s.getppid_rounds))?);
    }
    if wanted("startup") {
        progress("startup");
        r.figures
            .insert("startup", startup_figure(&b, rounds(s.startup_rounds))?);
    }
    if wanted("concurrency") {
        progress("concurrency");
        // The floors with one worker per CPU: more only wake each other (all wait
        // in NOTIF_RECV, and the kernel wakes them all for each notification).
        let many = Bench {
            floor_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            ..b.clone()
        };
        let [rate, p50, p99] = concurrency_figures(&many, s, rounds(s.conc_rounds))?;
        r.figures.insert("conc_rate", rate);
        r.figures.insert("conc_p50", p50);
        r.figures.insert("conc_p99", p99);
    }
    if wanted("memory") {
        progress("memory");
        for config in ENGINES {
            let mem = memory_run(&b, config, s)?;
            if mem.fds != mem.fds_first {
                return Err(format!(
                    "{}: the supervisor held {} descriptors after {} binds and {} after {} (a leak)",
                    config.name(),
                    mem.fds_first,
                    s.mem_first,
                    mem.fds,
                    s.mem_total
                ));
            }
            r.memory.insert(config.name(), mem);
        }
    }
    progress("done");
    m.load_after = loadavg();
    let table = table(&r, &m, mode, s);
    Ok(if opts.json {
        // The table still goes to a human, on stderr.
        eprint!("{table}");
        json(&r, &m, mode, s)
    } else {
        table
    })
}
