// memory.rs: reading and writing a target thread's memory with
// process_vm_readv/writev (one syscall each, no word-at-a-time PEEK/POKE).

use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

/// Fills `buf` from `addr` in `pid`; a short read is EFAULT, as the kernel's own
/// copy_from_user would report for the same range.
pub fn read(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let len = buf.len();
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote)? {
        n if n == len => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Writes `data` at `addr` in `pid` (the page must be writable to the tracee).
pub fn write(pid: Pid, addr: u64, data: &[u8]) -> Result<(), Errno> {
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: data.len(),
    }];
    match process_vm_writev(pid, &[IoSlice::new(data)], &remote)? {
        n if n == data.len() => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}
