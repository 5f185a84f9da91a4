// memory.rs: reading and writing a target thread's memory.
//
// A read is two: a pread of /proc/TID/mem, then process_vm_readv of the same range.
// process_vm_readv alone faults the program's pages in the way the program itself
// would, so a page registered with userfaultfd (or any fault that waits for the
// program) held the calling force-bind thread until the program let it go, killable
// only. /proc/TID/mem (the kernel's access_remote_vm) never waits for a userfault:
// such a page reads as EIO at once, and the program's bind gets EFAULT, as for any
// pointer force-bind cannot read. But it reads with FOLL_FORCE, so it also reads a
// PROT_NONE page the program's own bind would get EFAULT for: the process_vm_readv
// that follows, on pages now present, checks the program's own access (and is what
// is used). A page that is there costs about 1.1 µs a syscall here. The descriptor is
// kept per thread (target::Pidfds), since opening it costs about as much again.
// Between the two reads another thread of the program could drop the page again
// (madvise) and make the second one wait: that costs a notify worker (which then no
// longer counts, supervisor.rs) or, in the ptrace engine, holds the tracer: a
// program can stall itself that way, no more (README, Security model).
//
// Writes (the ptrace engine's scratch below the stack pointer) are a pwrite of
// /proc/TID/mem, which never waits either; with FOLL_FORCE it may write a private
// read-only page of the program's, which only the program itself can notice.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;

/// The memory of thread `tid`, for reading and writing.
pub fn open(tid: Pid) -> Result<File, Errno> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{tid}/mem"))
        .map_err(|e| match e.raw_os_error() {
            // The thread is gone.
            Some(libc::ENOENT) => Errno::ESRCH,
            Some(raw) => Errno::from_raw(raw),
            None => Errno::EIO,
        })
}

/// Fills `buf` from `addr` in thread `tid`, whose memory `mem` is; anything short of
/// all of it is EFAULT, as the kernel's own copy_from_user would report for the same
/// range.
pub fn read_at(mem: &File, tid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    present(mem, addr, buf)?;
    let len = buf.len();
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    match process_vm_readv(tid, &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) if n == len => Ok(()),
        Ok(_) | Err(Errno::EFAULT) => Err(Errno::EFAULT),
        Err(e) => Err(e),
    }
}

/// Reads the range through /proc/TID/mem into `buf`, which faults it in without
/// ever waiting for a userfault.
fn present(mem: &File, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let offset = offset_of(addr, buf.len())?;
    // SAFETY: pread writes at most buf.len() bytes into buf.
    let n = unsafe { libc::pread64(mem.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
    match n {
        n if n == buf.len() as isize => Ok(()),
        // A page that is not there (or is only a userfault away), or a range that
        // crosses into one: the program's bad pointer.
        _ => Err(Errno::EFAULT),
    }
}

/// Writes `data` at `addr` (the program's own stack, below its stack pointer).
pub fn write_at(mem: &File, addr: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let offset = offset_of(addr, data.len())?;
    // SAFETY: pwrite reads at most data.len() bytes from data.
    let n = unsafe { libc::pwrite64(mem.as_raw_fd(), data.as_ptr().cast(), data.len(), offset) };
    match n {
        n if n == data.len() as isize => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// The file offset of `addr`: a range that wraps or reaches past the largest offset
/// (kernel addresses) is no memory of the program's.
fn offset_of(addr: u64, len: usize) -> Result<i64, Errno> {
    match addr.checked_add(len as u64) {
        Some(end) if end <= i64::MAX as u64 => Ok(addr as i64),
        _ => Err(Errno::EFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(tid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        read_at(&open(tid)?, tid, addr, buf)
    }

    #[test]
    fn reads_and_writes_our_own_memory() {
        let me = Pid::this();
        let value: [u8; 8] = *b"sockaddr";
        let mut got = [0u8; 8];
        read(me, value.as_ptr() as u64, &mut got).unwrap();
        assert_eq!(&got, b"sockaddr");
        let mut cell = [0u8; 4];
        write_at(&open(me).unwrap(), cell.as_mut_ptr() as u64, b"abcd").unwrap();
        assert_eq!(std::hint::black_box(cell), *b"abcd");
    }

    #[test]
    fn unmapped_and_kernel_addresses_are_efault() {
        let me = Pid::this();
        let mut got = [0u8; 16];
        assert_eq!(read(me, 8, &mut got), Err(Errno::EFAULT));
        assert_eq!(read(me, u64::MAX - 4, &mut got), Err(Errno::EFAULT));
        assert_eq!(
            read(me, 0xffff_8000_0000_0000, &mut got),
            Err(Errno::EFAULT)
        );
        assert_eq!(read(me, 8, &mut []), Ok(()));
    }
}
