// bpf/loader.rs: bpf(2), raw: loading a program (with the verifier's log when it is
// refused) and attaching it to a cgroup. The libc crate has no bpf_attr, so the two
// unions members used here are laid out below from <linux/bpf.h>.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::insn::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// enum bpf_prog_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgType {
    CgroupSock = 9,
    CgroupSockAddr = 18,
}

/// enum bpf_attach_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachType {
    InetSockCreate = 2,
    Inet4Bind = 8,
    Inet6Bind = 9,
    /// BPF_CGROUP_INET4_POST_BIND and INET6_POST_BIND (4.17; after INET4_CONNECT 10
    /// and INET6_CONNECT 11): CgroupSock programs.
    Inet4PostBind = 12,
    Inet6PostBind = 13,
}

impl AttachType {
    pub fn name(self) -> &'static str {
        match self {
            AttachType::InetSockCreate => "sock_create",
            AttachType::Inet4Bind => "bind4",
            AttachType::Inet6Bind => "bind6",
            AttachType::Inet4PostBind => "post_bind4",
            AttachType::Inet6PostBind => "post_bind6",
        }
    }
}

/// The BPF_PROG_LOAD member of union bpf_attr, up to expected_attach_type (4.17).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The BPF_PROG_ATTACH member.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Why a program could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    pub errno: Errno,
    /// The verifier's last lines, when it refused the program.
    pub log: String,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a live, fully initialised bpf_attr member of the size passed;
    // the pointers in it point at memory that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(rc)
}

/// Loads `insns` as a program of `prog_type` for `attach`, named `name`.
pub fn load(
    prog_type: ProgType,
    attach: AttachType,
    name: &str,
    insns: &[Insn],
) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type: prog_type as u32,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: attach as u32,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returns a new descriptor that we now own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(errno) => {
            // Again with the log, only to say why.
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let text = CStr::from_bytes_until_nul(&log)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            Err(LoadError {
                errno,
                log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            })
        }
    }
}

/// Attaches `prog` to the cgroup `cgroup` at `attach`. The attachment lives as long
/// as the cgroup, not as long as force-bind (a BPF_LINK_CREATE link would die with
/// it). BPF_F_ALLOW_MULTI because of how detaching works: a program attached without
/// it is detached by anyone with CAP_NET_ADMIN and a descriptor of the cgroup, while
/// one attached with it can only be detached with its own descriptor, which only
/// BPF_PROG_GET_FD_BY_ID (CAP_SYS_ADMIN) gives another process (bpf/confine.rs drops
/// that capability from the program).
pub fn attach(cgroup: &OwnedFd, prog: &OwnedFd, attach: AttachType) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: attach as u32,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// enum bpf_map_type: the ones force-bind creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    Array = 2,
    /// Linux 5.8.
    RingBuf = 27,
}

/// The BPF_MAP_CREATE member, up to map_name (4.15).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// The BPF_MAP_*_ELEM member.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Creates a map. A ring buffer has no key or value and `max_entries` bytes of data
/// (a power of two, a multiple of the page size).
pub fn create_map(
    map_type: MapType,
    name: &str,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd, Errno> {
    let mut attr = MapCreateAttr {
        map_type: map_type as u32,
        key_size,
        value_size,
        max_entries,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.map_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: BPF_MAP_CREATE returns a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The u64 at u32 key `key` of an array map.
pub fn lookup_u64(map: &OwnedFd, key: u32) -> Result<u64, Errno> {
    let mut value = 0u64;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &mut value as *mut u64 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    Ok(value)
}
