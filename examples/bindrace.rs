//! bindrace: a hostile test target. One thread binds fresh IPv4 sockets to the
//! address in a shared sockaddr buffer while another thread keeps flipping that
//! buffer between two addresses, trying to slip the second one past a check of the
//! first. Prints how many binds the kernel placed on each address.
//!
//! usage: bindrace ASKED_IP SWAP_IP TRIES [hold]
//! output: `binds N asked A swapped S other O errors E`; with `hold`, it then waits
//! for stdin to close (at most 30 s), so a test can look at its supervisor.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The sockaddr_in both threads share, as the program would pass it to bind().
#[repr(C, align(16))]
struct Shared {
    family: u16,
    port: u16,
    addr: AtomicU32,
    zero: [u8; 8],
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 && !(args.len() == 5 && args[4] == "hold") {
        eprintln!("usage: bindrace ASKED_IP SWAP_IP TRIES [hold]");
        std::process::exit(2);
    }
    let asked: Ipv4Addr = args[1].parse().expect("ASKED_IP");
    let swap: Ipv4Addr = args[2].parse().expect("SWAP_IP");
    let tries: u32 = args[3].parse().expect("TRIES");
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        family: libc::AF_INET as u16,
        port: 0,
        addr: AtomicU32::new(u32::from_ne_bytes(asked.octets())),
        zero: [0; 8],
    }));
    let done: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let (a, s) = (
        u32::from_ne_bytes(asked.octets()),
        u32::from_ne_bytes(swap.octets()),
    );
    let flipper = std::thread::spawn(move || {
        // Bounded by the binder finishing, and by time in case it never does.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
            shared.addr.store(s, Ordering::Relaxed);
            std::hint::spin_loop();
            shared.addr.store(a, Ordering::Relaxed);
        }
    });

    let (mut on_asked, mut on_swap, mut other, mut errors) = (0u32, 0u32, 0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut n = 0;
    while n < tries && Instant::now() < deadline {
        n += 1;
        // SAFETY: plain socket syscalls on descriptors this loop owns; the sockaddr
        // pointer is to a live, 16-byte sockaddr_in-shaped struct.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            if fd < 0 {
                errors += 1;
                continue;
            }
            let rc = libc::bind(fd, (shared as *const Shared).cast(), 16);
            if rc != 0 {
                errors += 1;
            } else {
                let mut sin: libc::sockaddr_in = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                libc::getsockname(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len);
                match sin.sin_addr.s_addr {
                    x if x == a => on_asked += 1,
                    x if x == s => on_swap += 1,
                    _ => other += 1,
                }
            }
            libc::close(fd);
        }
    }
    done.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    let _ = shared.family + shared.port + shared.zero[0] as u16;
    println!("binds {n} asked {on_asked} swapped {on_swap} other {other} errors {errors}");
    if args.len() == 5 {
        use std::io::Read;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }
}
