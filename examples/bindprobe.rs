//! bindprobe: a test helper that binds sockets and reports what the kernel bound.
//!
//! The integration tests in `tests/` run it under force-bind and compare each
//! `getsockname()` result with the rule under test. It prints one line per bind
//! attempt, written with a single write(2) so lines from threads and forked
//! children never interleave (a pipe write of less than PIPE_BUF is atomic, pipe(7)):
//!
//! ```text
//! bound 4 127.0.0.3:8080 pid=1234
//! bound 6 [::ffff:127.0.0.1]:8080 pid=1234
//! bound unix /tmp/x.sock pid=1234
//! error 1 Operation not permitted (bind) pid=1234
//! ready
//! ```
//!
//! Options (all optional):
//!   --family 4|6        address family (default 4)
//!   --addr IP           address to bind (default 127.0.0.1, or ::1 for family 6)
//!   --port N[,N...]     port(s) to bind, one socket each (default 0)
//!   --udp               SOCK_DGRAM instead of SOCK_STREAM
//!   --v6only 0|1        set IPV6_V6ONLY before bind (family 6 only)
//!   --threads N         N threads, each creating and binding its own sockets; 0 (the
//!                       default) binds from the main thread
//!   --forks N           fork N children first; each child does the same binds (default 0)
//!   --repeat N          each thread repeats its binds N times (default 1)
//!   --close-reuse       close every socket right after reporting it, so the next
//!                       socket() reuses the same descriptor number
//!   --listen            listen() after a successful TCP bind
//!   --unix PATH         bind one AF_UNIX stream socket at PATH instead
//!   --hold              keep the sockets open until stdin reaches EOF or --hold-secs pass
//!   --hold-secs N       upper bound for --hold (default 30)
//!   --ready             print `ready` once every bind (including the children's) is done
//!
//! Exit status: 0 when every bind succeeded, 1 when one failed, 2 on a bad command line.

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Most threads or children the probe accepts; keeps every loop bounded.
const MAX_WORKERS: usize = 64;
const MAX_REPEAT: usize = 64;

#[derive(Clone, Debug)]
struct Options {
    family: u8,
    addr: Option<IpAddr>,
    ports: Vec<u16>,
    udp: bool,
    v6only: Option<bool>,
    threads: usize,
    forks: usize,
    repeat: usize,
    close_reuse: bool,
    listen: bool,
    unix: Option<String>,
    hold: bool,
    hold_secs: u64,
    ready: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("bindprobe: {msg}");
    std::process::exit(2);
}

fn parse_options() -> Options {
    let mut o = Options {
        family: 4,
        addr: None,
        ports: vec![0],
        udp: false,
        v6only: None,
        threads: 0,
        forks: 0,
        repeat: 1,
        close_reuse: false,
        listen: false,
        unix: None,
        hold: false,
        hold_secs: 30,
        ready: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> T {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("bad value for {name}: {v}")))
        }
        match arg.as_str() {
            "--family" => {
                o.family = match value("--family").as_str() {
                    "4" => 4,
                    "6" => 6,
                    v => usage(&format!("bad family {v}")),
                }
            }
            "--addr" => o.addr = Some(num("--addr", &value("--addr"))),
            "--port" => {
                let v = value("--port");
                o.ports = v.split(',').map(|p| num("--port", p)).collect();
            }
            "--udp" => o.udp = true,
            "--v6only" => o.v6only = Some(num::<u8>("--v6only", &value("--v6only")) != 0),
            "--threads" => o.threads = num("--threads", &value("--threads")),
            "--forks" => o.forks = num("--forks", &value("--forks")),
            "--repeat" => o.repeat = num("--repeat", &value("--repeat")),
            "--close-reuse" => o.close_reuse = true,
            "--listen" => o.listen = true,
            "--unix" => o.unix = Some(value("--unix")),
            "--hold" => o.hold = true,
            "--hold-secs" => o.hold_secs = num("--hold-secs", &value("--hold-secs")),
            "--ready" => o.ready = true,
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    if o.threads > MAX_WORKERS || o.forks > MAX_WORKERS {
        usage("--threads and --forks must be 0..=64");
    }
    if o.repeat == 0 || o.repeat > MAX_REPEAT || o.ports.len() > MAX_WORKERS {
        usage("--repeat must be 1..=64, at most 64 ports");
    }
    if let Some(a) = o.addr {
        let fam = if a.is_ipv4() { 4 } else { 6 };
        if fam != o.family {
            usage("--addr does not match --family");
        }
    }
    o
}

/// Writes one whole line with a single write(2), so concurrent writers never interleave.
fn emit(line: &str) {
    let line = format!("{line}\n");
    // SAFETY: the buffer is valid for `line.len()` bytes for the duration of the call,
    // and fd 1 is only ever written through this function.
    let n = unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
    if n < 0 {
        // stdout is gone (the test stopped reading); there is nobody left to tell.
        // SAFETY: _exit is async-signal-safe and always sound to call.
        unsafe { libc::_exit(3) };
    }
}

fn os_error_text(err: &io::Error) -> (i32, String) {
    let errno = err.raw_os_error().unwrap_or(0);
    let text = err.to_string();
    // io::Error renders as "Operation not permitted (os error 1)"; keep strerror's part.
    let text = match text.rfind(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    (errno, text)
}

fn report_error(step: &str, err: &io::Error) {
    let (errno, text) = os_error_text(err);
    emit(&format!(
        "error {errno} {text} ({step}) pid={}",
        std::process::id()
    ));
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn new_socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers and returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2), so nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_v6only(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: `value` lives for the whole call and its size is passed alongside.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes and `len` holds the buffer size.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut storage).cast(), &mut len) })?;
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel filled in a sockaddr_in for an AF_INET socket.
            let sin = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel filled in a sockaddr_in6 for an AF_INET6 socket.
            let sin6 = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        other => Err(io::Error::other(format!("unexpected family {other}"))),
    }
}

/// One socket: create, configure, bind, report, maybe listen. Returns the socket to keep.
fn bind_one(o: &Options, port: u16) -> Option<OwnedFd> {
    let (domain, default_ip) = if o.family == 6 {
        (libc::AF_INET6, IpAddr::V6(Ipv6Addr::LOCALHOST))
    } else {
        (libc::AF_INET, IpAddr::V4(Ipv4Addr::LOCALHOST))
    };
    let ty = if o.udp {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    let fd = match new_socket(domain, ty) {
        Ok(fd) => fd,
        Err(e) => {
            report_error("socket", &e);
            return None;
        }
    };
    if let (6, Some(on)) = (o.family, o.v6only)
        && let Err(e) = set_v6only(&fd, on)
    {
        report_error("setsockopt", &e);
        return None;
    }
    let (storage, len) = to_sockaddr(SocketAddr::new(o.addr.unwrap_or(default_ip), port));
    // SAFETY: `storage` holds a sockaddr of `len` bytes that outlives the call.
    if let Err(e) = cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) }) {
        report_error("bind", &e);
        return None;
    }
    match local_addr(&fd) {
        Ok(a) => {
            let fam = if a.is_ipv4() { 4 } else { 6 };
            emit(&format!("bound {fam} {a} pid={}", std::process::id()));
        }
        Err(e) => {
            report_error("getsockname", &e);
            return None;
        }
    }
    if o.listen && !o.udp {
        // SAFETY: listen(2) on a descriptor we own.
        if let Err(e) = cvt(unsafe { libc::listen(fd.as_raw_fd(), 16) }) {
            report_error("listen", &e);
            return None;
        }
    }
    Some(fd)
}

fn bind_unix(path: &str) -> Option<OwnedFd> {
    let fd = match new_socket(libc::AF_UNIX, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(e) => {
            report_error("socket", &e);
            return None;
        }
    };
    // SAFETY: all-zero bytes are a valid sockaddr_un.
    let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = CString::new(path).unwrap_or_else(|_| usage("NUL in --unix path"));
    let bytes = bytes.as_bytes_with_nul();
    if bytes.len() > sun.sun_path.len() {
        usage("--unix path too long");
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = mem::size_of::<libc::sa_family_t>() + bytes.len();
    // SAFETY: `sun` is a valid sockaddr_un of at least `len` bytes.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sun).cast(),
            len as libc::socklen_t,
        )
    };
    if let Err(e) = cvt(ret) {
        report_error("bind", &e);
        return None;
    }
    emit(&format!("bound unix {path} pid={}", std::process::id()));
    Some(fd)
}

/// The binds of one thread: every port, `repeat` times. Returns the sockets to keep
/// and whether every bind succeeded.
fn bind_ports(o: &Options) -> (Vec<OwnedFd>, bool) {
    let mut kept = Vec::new();
    let mut ok = true;
    for _ in 0..o.repeat {
        for &port in &o.ports {
            match bind_one(o, port) {
                Some(fd) if !o.close_reuse => kept.push(fd),
                Some(fd) => drop(fd),
                None => ok = false,
            }
        }
    }
    (kept, ok)
}

/// All the binds of one process: from the main thread, or from `threads` threads
/// started together. Returns the sockets to hold and whether all succeeded.
fn bind_all(o: &Options) -> (Vec<OwnedFd>, bool) {
    if let Some(path) = &o.unix {
        let fd = bind_unix(path);
        let ok = fd.is_some();
        return (fd.into_iter().collect(), ok);
    }
    if o.threads == 0 {
        return bind_ports(o);
    }
    // The barrier makes the threads' binds race each other, which is what the
    // supervisor must cope with.
    let barrier = Barrier::new(o.threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..o.threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    bind_ports(o)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut ok = true;
        for w in workers {
            match w.join() {
                Ok((kept, good)) => {
                    all.extend(kept);
                    ok &= good;
                }
                Err(_) => ok = false,
            }
        }
        (all, ok)
    })
}

/// Blocks until stdin reaches EOF (or fails) or `limit` passes.
fn hold(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(1000) as libc::c_int;
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            continue;
        }
        // SAFETY: `buf` is valid for writes of its length.
        let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return;
        }
    }
}

/// Waits for `count` one-byte "done" notes from the children, at most `limit` in total.
fn wait_children_done(fd: &OwnedFd, count: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    while got < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as libc::c_int) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is valid for writes of its length.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return;
        }
        got += r as usize;
    }
}

fn main() {
    let o = parse_options();
    let hold_limit = Duration::from_secs(o.hold_secs);

    // Fork before any thread exists, so the children start single-threaded.
    let mut done_pipe = [0 as libc::c_int; 2];
    // SAFETY: `done_pipe` has room for the two descriptors pipe2(2) writes.
    if cvt(unsafe { libc::pipe2(done_pipe.as_mut_ptr(), libc::O_CLOEXEC) }).is_err() {
        usage("pipe2 failed");
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned by nobody else.
    let (done_r, done_w) = unsafe {
        (
            OwnedFd::from_raw_fd(done_pipe[0]),
            OwnedFd::from_raw_fd(done_pipe[1]),
        )
    };
    let mut children = Vec::new();
    for _ in 0..o.forks {
        // SAFETY: the process is single-threaded here, so the child may run any code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            report_error("fork", &io::Error::last_os_error());
            continue;
        }
        if pid == 0 {
            drop(done_r);
            let (fds, ok) = bind_all(&o);
            // SAFETY: writing one byte from a valid buffer to our own pipe.
            unsafe { libc::write(done_w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            if o.hold {
                hold(hold_limit);
            }
            drop(fds);
            // SAFETY: _exit skips the parent's atexit handlers, which a forked child must not run.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        children.push(pid);
    }
    drop(done_w);

    let (fds, mut ok) = bind_all(&o);
    if o.ready {
        wait_children_done(&done_r, children.len(), hold_limit);
        emit("ready");
    }
    if o.hold {
        hold(hold_limit);
    }
    drop(fds);

    // Reap every child; each one exits on its own after at most `hold_limit`.
    for pid in children {
        let mut status = 0;
        for _ in 0..100 {
            // SAFETY: waiting for our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            ok = false;
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
