//! uring_bind: binds a TCP socket through io_uring's IORING_OP_BIND (Linux 6.11+),
//! which never passes through seccomp, falling back to bind(2) when io_uring is not
//! available (as real programs do). Prints bindprobe's format:
//! `io_uring error ERRNO` when io_uring_setup fails, then `bound 4 ADDR` or
//! `error ERRNO ...` for the bind, and `via io_uring` or `via bind` last.
//!
//! usage: uring_bind IPV4 PORT

use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{IoUring, opcode, types};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: uring_bind IPV4 PORT");
        std::process::exit(2);
    }
    let addr = SocketAddrV4::new(
        args[1].parse().expect("IPV4"),
        args[2].parse().expect("PORT"),
    );
    // SAFETY: socket(2) returns a new descriptor that we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket failed");
    // SAFETY: fd is a fresh, open descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = addr.port().to_be();
    sin.sin_addr.s_addr = u32::from_ne_bytes(addr.ip().octets());
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

    let (result, via) = match IoUring::new(4) {
        Ok(mut ring) => {
            let bind = opcode::Bind::new(
                types::Fd(sock.as_raw_fd()),
                (&sin as *const libc::sockaddr_in).cast(),
                len,
            )
            .build()
            .user_data(1);
            // SAFETY: the sockaddr outlives the submission, which completes below.
            unsafe { ring.submission().push(&bind).expect("queue full") };
            ring.submit_and_wait(1).expect("io_uring_enter");
            let cqe = ring.completion().next().expect("a completion");
            (cqe.result(), "io_uring")
        }
        Err(e) => {
            println!("io_uring error {}", e.raw_os_error().unwrap_or(0));
            // SAFETY: bind(2) reads `len` bytes of a live sockaddr_in.
            let rc = unsafe {
                libc::bind(
                    sock.as_raw_fd(),
                    (&sin as *const libc::sockaddr_in).cast(),
                    len,
                )
            };
            (
                if rc == 0 {
                    0
                } else {
                    -std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                },
                "bind",
            )
        }
    };
    if result < 0 {
        println!("error {} (bind)", -result);
    } else {
        let listener = TcpListener::from(sock);
        println!("bound 4 {}", listener.local_addr().expect("getsockname"));
    }
    println!("via {via}");
}
