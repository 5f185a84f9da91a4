// bpf/events.rs: bind events under the bpf engine (issue 13). The event programs
// (event_programs.rs) write one record when a bind is asked for and one when it
// succeeded into a BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8); a thread here
// reads it and makes the same crate::event::Event the other engines make, through
// the same log layer (-v, --json, --log, watch mode).
//
// What the kernel tells and what it does not:
// - the decision and the rule are recomputed here with Policy::decide on the
//   requested address (the differential test in bpf/tests.rs proves the kernel's
//   program decides the same);
// - the bound address (port 0 resolved) is the post-bind hook's, i.e. the kernel's;
// - a bind whose post-bind record never comes failed, and its errno is not known:
//   no hook runs when bind(2) fails (EPERM when the policy denied it, which is what
//   the kernel returns for a program's 0);
// - the descriptor is not known (the hooks see the socket, not the fd table); the
//   pid and command are the kernel's (bpf_get_current_pid_tgid and _comm, allowed
//   at both hooks on Debian's 5.10 and 6.1 and on 6.18; where a kernel refuses them the
//   event has pid 0 and the command "?").
//
// Only loaded when someone will see events (crate::log::events_wanted), so an
// engine run without -v/--json/--log/watch pays nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;

use super::btf::BitPlace;
use super::event_programs::{self as ep, Family, Helpers, Hook, Maps, record};
use super::insn::Insn;
use super::loader::{self, AttachType, MapType, ProgType};
use crate::event::{Action, Call, Event, Outcome};
use crate::log::{debug, warn};
use crate::policy::{BindRequest, Decision, Policy, Purpose, SocketKind};

/// The ring buffer's data size: 4 MiB hold ~52,000 records (80 bytes with the
/// header; two per bind), which the reader drains as they come. Measured here: a
/// program binding in a tight loop (~15 µs a bind) outran a reader sharing 2 busy
/// CPUs by ~4,000 binds in 20,000 with 256 KiB; a program that outruns 4 MiB loses
/// events, and that is said.
const RING_SIZE: u32 = 4 * 1024 * 1024;
/// How long a bind's success record may lag its request record before the bind is
/// taken to have failed (when the thread has not bound again first): both hooks
/// run inside one bind(2), microseconds apart. A bind held up longer than this
/// between them (lock_sock waiting for the socket's owner) would be reported failed
/// and its late success only said with -D: the price of saying failures at all.
const FAILED_AFTER: Duration = Duration::from_millis(500);
/// Binds in flight at once that the reader keeps; older ones are concluded early.
const MAX_PENDING: usize = 4096;
/// The ring buffer's record header bits (<linux/bpf.h>).
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: usize = 8;

/// What pairs a bind's two records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    Cookie,
    Thread,
}

/// What this kernel lets the event programs do.
#[derive(Debug, Clone, Copy)]
struct Support {
    request: Helpers,
    bound: Helpers,
    pairing: Pairing,
}

/// Whether this kernel gives bind events under the bpf engine (ring buffers, and a
/// way to pair a bind's two records), probed once by loading small programs; needs
/// what loading the engine needs (root). For `auto` and -V: false means the bpf
/// engine would run with the warning that it reports no bind events.
pub fn reports_events() -> bool {
    support().is_ok()
}

fn support() -> Result<Support, String> {
    static SUPPORT: OnceLock<Result<Support, String>> = OnceLock::new();
    SUPPORT.get_or_init(probe).clone()
}

fn probe() -> Result<Support, String> {
    create_ring_of("fb_probe", page_size() as u32)
        .map_err(|e| format!("no BPF ring buffer ({e}; Linux 5.8)"))?;
    let helpers = |ty, at| {
        let can = |helper| loader::load(ty, at, "fb_probe", &ep::helper_probe(helper)).is_ok();
        Helpers {
            pid_tgid: can(ep::HELPER_GET_CURRENT_PID_TGID),
            comm: can(ep::HELPER_GET_CURRENT_COMM),
            cookie: can(ep::HELPER_GET_SOCKET_COOKIE),
        }
    };
    let request = helpers(ProgType::CgroupSockAddr, AttachType::Inet4Bind);
    let bound = helpers(ProgType::CgroupSock, AttachType::Inet4PostBind);
    debug!("bpf events: helpers at bind: {request:?}, at post-bind: {bound:?}");
    let pairing = if request.cookie && bound.cookie {
        Pairing::Cookie
    } else if request.pid_tgid && bound.pid_tgid {
        Pairing::Thread
    } else {
        return Err("the kernel lets the post-bind hook ask neither the socket cookie nor the thread, so a bind's outcome cannot be told".into());
    };
    Ok(Support {
        request,
        bound,
        pairing,
    })
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// RLIMIT_MEMLOCK as force-bind found it, when it raised it for the ring buffer.
static SAVED_MEMLOCK: OnceLock<libc::rlimit> = OnceLock::new();

/// The ring buffer. Before Linux 5.11 BPF maps are charged to RLIMIT_MEMLOCK
/// (memcg accounting replaced that in 5.11), whose usual 64 KiB the 4 MiB ring
/// exceeds (EPERM on Debian's 5.10): then force-bind, root, raises its own limit,
/// and the program gets the old one back before it execs (restore_memlock).
fn create_ring() -> Result<OwnedFd, String> {
    create_ring_of("forcebind_ev", RING_SIZE)
        .map_err(|e| format!("cannot create the ring buffer: {e}"))
}

/// A ring buffer of `size` bytes, RLIMIT_MEMLOCK raised first where the kernel
/// charges it (create_ring). The probe comes here too: the 4 MiB rings of runs just
/// ended are uncharged only when the kernel frees them, later, so even a one-page
/// probe can meet EPERM on 5.10, which says nothing about ring buffers (a kernel
/// without them says EINVAL).
fn create_ring_of(name: &str, size: u32) -> Result<OwnedFd, String> {
    let create = || loader::create_map(MapType::RingBuf, name, 0, 0, size);
    match create() {
        Err(Errno::EPERM) => {
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: getrlimit and setrlimit on locals.
            let raised = unsafe {
                libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) == 0
                    && libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) == 0
            };
            if !raised {
                return Err(format!(
                    "EPERM, and cannot raise RLIMIT_MEMLOCK: {}",
                    Errno::last()
                ));
            }
            let _ = SAVED_MEMLOCK.set(old);
            debug!("bpf events: RLIMIT_MEMLOCK raised for the ring buffer (before 5.11)");
            create().map_err(|e| e.to_string())
        }
        r => r.map_err(|e| e.to_string()),
    }
}

/// The RLIMIT_MEMLOCK the program must get back, if force-bind raised its own.
pub fn memlock_to_restore() -> Option<libc::rlimit> {
    SAVED_MEMLOCK.get().copied()
}

/// In the child, before exec: puts RLIMIT_MEMLOCK back. Async-signal-safe.
pub fn restore_memlock(saved: Option<libc::rlimit>) -> Result<(), Errno> {
    match saved {
        // SAFETY: setrlimit on a local; a raw system call, fine in the child.
        Some(r) => Errno::result(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) }).map(drop),
        None => Ok(()),
    }
}

/// The maps and programs, loaded; attached in two steps around the policy programs.
pub struct Recorder {
    support: Support,
    ring: OwnedFd,
    drops: OwnedFd,
    before: Vec<(AttachType, OwnedFd)>,
    after: Vec<(AttachType, OwnedFd)>,
}

impl Recorder {
    /// The maps and the four programs, or why there are none (said once by the
    /// caller, at the default verbosity).
    pub fn load(ipv6only: Option<BitPlace>) -> Result<Recorder, String> {
        let support = support()?;
        let ring = create_ring()?;
        let drops = loader::create_map(MapType::Array, "forcebind_drop", 4, 8, 1)
            .map_err(|e| format!("cannot create the drop counter: {e}"))?;
        let maps = Maps {
            ring: ring.as_raw_fd(),
            drops: drops.as_raw_fd(),
        };
        let load = |hook, family, at: AttachType| -> Result<(AttachType, OwnedFd), String> {
            let (ty, helpers) = match hook {
                Hook::Request => (ProgType::CgroupSockAddr, support.request),
                Hook::Bound => (ProgType::CgroupSock, support.bound),
            };
            let insns: Vec<Insn> = ep::program(hook, family, helpers, maps, ipv6only);
            let name = format!("fbev_{}", at.name());
            let fd = loader::load(ty, at, &name, &insns).map_err(|e| {
                format!(
                    "the kernel refused the {} event program: {}: {}",
                    at.name(),
                    e.errno,
                    e.log
                )
            })?;
            debug!(
                "bpf events: {} program: {} instructions",
                at.name(),
                insns.len()
            );
            Ok((at, fd))
        };
        Ok(Recorder {
            support,
            before: vec![
                load(Hook::Request, Family::V4, AttachType::Inet4Bind)?,
                load(Hook::Request, Family::V6, AttachType::Inet6Bind)?,
            ],
            after: vec![
                load(Hook::Bound, Family::V4, AttachType::Inet4PostBind)?,
                load(Hook::Bound, Family::V6, AttachType::Inet6PostBind)?,
            ],
            ring,
            drops,
        })
    }

    /// Attaches the request programs: before the policy programs, so that they see
    /// the address as asked (BPF_F_ALLOW_MULTI programs run in attach order).
    pub fn attach_before(&self, cgroup: &OwnedFd) -> Result<(), String> {
        attach_all(cgroup, &self.before)
    }

    /// Attaches the post-bind programs (after the policy programs, though their
    /// hook runs after every bind program anyway).
    pub fn attach_after(&self, cgroup: &OwnedFd) -> Result<(), String> {
        attach_all(cgroup, &self.after)
    }

    /// Starts the thread that turns records into events, until `Reader::finish`.
    pub fn start(self, policy: &'static Policy) -> Result<Reader, String> {
        let ring = Ring::map(&self.ring)?;
        // SAFETY: eventfd with constant flags; the result is checked.
        let stop = Errno::result(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
            .map_err(|e| format!("eventfd: {e}"))?;
        // SAFETY: a new descriptor that we now own.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let sink: Sink = Box::new(crate::log::emit);
        let mut state = State::new(policy, self.support.pairing, Some(self.drops), sink);
        let ring_fd = self.ring;
        let thread = std::thread::Builder::new()
            .name("bpf-events".into())
            .spawn(move || {
                state.run(&ring, ring_fd.as_raw_fd(), stop_fd);
                drop(ring_fd);
            })
            .map_err(|e| format!("cannot start the event reader: {e}"))?;
        Ok(Reader {
            stop,
            thread: Some(thread),
            _programs: [self.before, self.after],
        })
    }
}

fn attach_all(cgroup: &OwnedFd, programs: &[(AttachType, OwnedFd)]) -> Result<(), String> {
    for (at, fd) in programs {
        loader::attach(cgroup, fd, *at)
            .map_err(|e| format!("cannot attach the {} event program: {e}", at.name()))?;
    }
    Ok(())
}

/// The running reader. `finish` (or dropping it) drains what is left and stops it.
pub struct Reader {
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
    _programs: [Vec<(AttachType, OwnedFd)>; 2],
}

impl Reader {
    /// Call when the program has exited: every bind it made is in the ring buffer
    /// by then; they are all emitted before this returns.
    pub fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a local to our eventfd.
        let _ = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), 8) };
        let _ = thread.join();
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The ring buffer mapped: the consumer page read-write, the producer page and the
/// data (mapped twice in a row by the kernel, so a record that wraps is contiguous)
/// read-only.
struct Ring {
    consumer: *mut u8,
    producer: *const u8,
    page: usize,
    mask: u64,
}

// SAFETY: the mappings are owned by the one thread that reads them.
unsafe impl Send for Ring {}

impl Ring {
    fn map(fd: &OwnedFd) -> Result<Ring, String> {
        let page = page_size();
        // SAFETY: a fresh shared mapping of the ring buffer's consumer page, which
        // the kernel allows read-write (ringbuf_map_mmap_kern, 5.8).
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(format!("cannot map the ring buffer: {}", Errno::last()));
        }
        // SAFETY: the producer page and the data twice, read-only, as the kernel
        // lays them out after the consumer page.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * RING_SIZE as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let e = Errno::last();
            // SAFETY: unmaps the page mapped above.
            unsafe { libc::munmap(consumer, page) };
            return Err(format!("cannot map the ring buffer: {e}"));
        }
        Ok(Ring {
            consumer: consumer.cast(),
            producer: producer.cast(),
            page,
            mask: RING_SIZE as u64 - 1,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: consumer_pos is the first u64 of the consumer page, page-aligned,
        // mapped as long as self; the kernel reads it concurrently.
        unsafe { &*(self.consumer as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: producer_pos is the first u64 of the producer page; the kernel
        // writes it concurrently.
        unsafe { &*(self.producer as *const AtomicU64) }
    }

    /// Calls `each` on every committed record, in order, and gives their space
    /// back; stops at one still being written. At most one buffer's worth.
    fn drain(&self, mut each: impl FnMut(&[u8; record::SIZE])) {
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        let prod = self.producer_pos().load(Ordering::Acquire);
        let data = self.page;
        while cons < prod {
            let at = data + (cons & self.mask) as usize;
            // SAFETY: `at` is inside the data mapping (offset < RING_SIZE) and
            // 8-aligned (records are); the header's first u32 is the length word,
            // written by the kernel with release semantics when committed.
            let word =
                unsafe { &*(self.producer.add(at) as *const AtomicU32) }.load(Ordering::Acquire);
            if word & BUSY != 0 {
                break;
            }
            let len = (word & !(BUSY | DISCARD)) as usize;
            let next = cons + (len + HEADER).next_multiple_of(8) as u64;
            // A length past what the kernel produced is no record of its: stop
            // rather than move the consumer beyond the producer.
            if next > prod {
                break;
            }
            if word & DISCARD == 0 && len == record::SIZE {
                let mut rec = [0u8; record::SIZE];
                // SAFETY: the record follows its header and, the data being mapped
                // twice, is contiguous even when it wraps.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.producer.add(at + HEADER),
                        rec.as_mut_ptr(),
                        record::SIZE,
                    )
                };
                each(&rec);
            }
            cons = next;
            self.consumer_pos().store(cons, Ordering::Release);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the two mappings made in `map`, not used after this.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(
                self.producer as *mut libc::c_void,
                self.page + 2 * RING_SIZE as usize,
            );
        }
    }
}

/// One record, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u32,
    pub pid_tgid: u64,
    pub cookie: u64,
    pub sock: SocketKind,
    pub addr: SocketAddr,
    pub comm: Option<String>,
    /// A request's IPV6_V6ONLY as the policy's bind6 saw it: Some(true) for a
    /// dual-stack socket; None when it was not read.
    pub dual_stack: Option<bool>,
}

impl Record {
    /// None for a record of another family (cannot happen at these hooks).
    pub fn parse(r: &[u8; record::SIZE]) -> Option<Record> {
        let u32_at = |o: usize| u32::from_ne_bytes(r[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_ne_bytes(r[o..o + 8].try_into().expect("8 bytes"));
        let kind = u32_at(record::KIND);
        let raw_port = u32_at(record::PORT);
        let port = match kind {
            // user_port: network order in the low 16 bits.
            record::KIND_REQUEST => u16::from_be((raw_port & 0xffff) as u16),
            // src_port: host order.
            _ => raw_port as u16,
        };
        let ip = match u32_at(record::FAMILY) as i32 {
            libc::AF_INET => {
                let b: [u8; 4] = r[record::ADDR..record::ADDR + 4].try_into().ok()?;
                IpAddr::V4(Ipv4Addr::from(b))
            }
            libc::AF_INET6 => {
                let b: [u8; 16] = r[record::ADDR..record::ADDR + 16].try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => return None,
        };
        let comm = &r[record::COMM..record::COMM + 16];
        let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(16);
        Some(Record {
            kind,
            pid_tgid: u64_at(record::PID_TGID),
            cookie: u64_at(record::COOKIE),
            sock: SocketKind {
                sock_type: u32_at(record::TYPE) as i32,
                protocol: u32_at(record::PROTOCOL) as i32,
            },
            addr: SocketAddr::new(ip, port),
            comm: (comm_len > 0).then(|| String::from_utf8_lossy(&comm[..comm_len]).into_owned()),
            dual_stack: match u32_at(record::MODE) {
                record::MODE_DUAL => Some(true),
                record::MODE_V6ONLY => Some(false),
                _ => None,
            },
        })
    }

    fn pid(&self) -> i32 {
        (self.pid_tgid >> 32) as i32
    }
}

/// A bind asked for and let through, waiting for its post-bind record.
struct Pending {
    event: Event,
    since: Instant,
}

/// Where events go: crate::log::emit, or a test's list.
type Sink = Box<dyn FnMut(&Event) + Send>;

struct State {
    policy: &'static Policy,
    pairing: Pairing,
    /// The programs' drop counter (None in unit tests).
    drops: Option<OwnedFd>,
    sink: Sink,
    pending: HashMap<u64, Pending>,
    /// With cookie pairing, the bind each thread is in (by pid_tgid): its next
    /// request means the last one failed, said at once and in order.
    by_thread: HashMap<u64, u64>,
    dropped: u64,
    own_pid: i32,
}

impl State {
    fn new(policy: &'static Policy, pairing: Pairing, drops: Option<OwnedFd>, sink: Sink) -> Self {
        State {
            policy,
            pairing,
            drops,
            sink,
            pending: HashMap::new(),
            by_thread: HashMap::new(),
            dropped: 0,
            own_pid: std::process::id() as i32,
        }
    }

    fn key(&self, r: &Record) -> u64 {
        match self.pairing {
            Pairing::Cookie => r.cookie,
            Pairing::Thread => r.pid_tgid,
        }
    }

    /// Reads until `stop` is signalled, then drains what is left and concludes
    /// every bind still waiting (the program has exited: they failed).
    fn run(&mut self, ring: &Ring, ring_fd: i32, stop: i32) {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: ring_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two pollfds in a local array. The timeout concludes binds
            // whose post-bind record is overdue.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
            if rc < 0 && Errno::last() != Errno::EINTR {
                warn!("bpf events: poll: {}; no more bind events", Errno::last());
                return;
            }
            ring.drain(|r| self.record(r));
            self.check_drops();
            self.conclude_overdue(Instant::now());
            if fds[1].revents & libc::POLLIN != 0 {
                break;
            }
        }
        ring.drain(|r| self.record(r));
        self.check_drops();
        let mut left: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        left.sort_by_key(|p| p.since);
        for p in left {
            self.emit_failed(p.event);
        }
    }

    fn record(&mut self, raw: &[u8; record::SIZE]) {
        let Some(r) = Record::parse(raw) else {
            return;
        };
        // A bind force-bind itself makes on the program's socket (the listen
        // filter's implicit-bind check, target.rs) passes the hooks too: the hooks
        // belong to the socket's cgroup, not the caller's. It is no bind of the
        // program's; its listen event says what happened.
        if r.pid() == self.own_pid {
            return;
        }
        let key = self.key(&r);
        match r.kind {
            record::KIND_REQUEST => {
                // The same socket (or thread) binds again: its last bind failed.
                if let Some(p) = self.pending.remove(&key) {
                    self.emit_failed(p.event);
                }
                if r.pid_tgid != 0
                    && let Some(last) = self.by_thread.remove(&r.pid_tgid)
                    && let Some(p) = self.pending.remove(&last)
                {
                    self.emit_failed(p.event);
                }
                let event = request_event(self.policy, &r);
                if event.action == Action::Denied {
                    (self.sink)(&event);
                    return;
                }
                if self.pending.len() >= MAX_PENDING
                    && let Some(oldest) = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.since)
                        .map(|(k, _)| *k)
                    && let Some(p) = self.pending.remove(&oldest)
                {
                    self.emit_failed(p.event);
                }
                if self.pairing == Pairing::Cookie && r.pid_tgid != 0 {
                    if self.by_thread.len() >= MAX_PENDING {
                        let pending = &self.pending;
                        self.by_thread.retain(|_, k| pending.contains_key(k));
                    }
                    self.by_thread.insert(r.pid_tgid, key);
                }
                self.pending.insert(
                    key,
                    Pending {
                        event,
                        since: Instant::now(),
                    },
                );
            }
            record::KIND_BOUND => match self.pending.remove(&key) {
                Some(p) => {
                    self.by_thread.remove(&r.pid_tgid);
                    let mut event = p.event;
                    event.outcome = Outcome::Ok {
                        bound: Some(r.addr),
                    };
                    (self.sink)(&event);
                }
                // Its request record was lost (a full ring buffer, said once).
                None => debug!("bpf events: a bind to {} with no request record", r.addr),
            },
            _ => {}
        }
    }
    fn conclude_overdue(&mut self, now: Instant) {
        let overdue: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= FAILED_AFTER)
            .map(|(k, _)| *k)
            .collect();
        for k in overdue {
            if let Some(p) = self.pending.remove(&k) {
                self.emit_failed(p.event);
            }
        }
    }

    fn emit_failed(&mut self, mut event: Event) {
        event.note = Some(crate::log::join_notes(event.note.take(), ERRNO_UNKNOWN));
        event.outcome = Outcome::Failed {
            errno: Errno::UnknownErrno,
            holder: None,
            hint: None,
        };
        (self.sink)(&event);
    }

    fn check_drops(&mut self) {
        let Some(Ok(n)) = self.drops.as_ref().map(|m| loader::lookup_u64(m, 0)) else {
            return;
        };
        if n > 0 && self.dropped == 0 {
            warn!(
                "bpf events: the ring buffer was full and {n} bind event record(s) were lost: some binds are not reported, or reported as failed"
            );
        }
        self.dropped = n;
    }
}

/// The event for a request record, decided as the kernel's program decides it; the
/// outcome is filled in when its post-bind record comes (or does not).
pub fn request_event(policy: &Policy, r: &Record) -> Event {
    let req = BindRequest {
        addr: r.addr,
        // Read by the request program where the policy decides [::] by it (as the
        // policy's bind6 reads it); elsewhere either value decides the same.
        dual_stack: r.dual_stack.unwrap_or(false),
        kind: r.sock,
        purpose: Purpose::Bind,
    };
    let verdict = policy.decide(&req);
    let (action, outcome) = match &verdict.decision {
        Decision::Allow => (Action::Allowed, Outcome::Ok { bound: None }),
        Decision::Rewrite(to) => (Action::Rewritten(to[0]), Outcome::Ok { bound: None }),
        // Replacements are refused by codegen.rs; a program's 0 is EPERM.
        Decision::ReplaceWithFd(_) | Decision::Deny(_) => (
            Action::Denied,
            Outcome::Failed {
                errno: Errno::EPERM,
                holder: None,
                hint: None,
            },
        ),
    };
    let pid = r.pid();
    let comm = match (&r.comm, pid) {
        (Some(c), _) => c.clone(),
        (None, 0) => "?".into(),
        (None, pid) => crate::target::comm(nix::unistd::Pid::from_raw(pid)),
    };
    Event {
        time: SystemTime::now(),
        container: None,
        pid,
        comm,
        call: Call::Bind,
        fd: None,
        proto: Some(r.sock.proto()),
        requested: Some(r.addr),
        rule: verdict.rule.map(|rule| rule.text.clone()),
        action,
        note: crate::log::verdict_note(&verdict),
        outcome,
    }
}

/// What a failed bind's event says: the kernel ran no post-bind hook, and tells
/// nobody the errno.
pub const ERRNO_UNKNOWN: &str = "no post-bind hook ran; the kernel tells the bpf engine no errno";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule;

    fn raw(kind: u32, family: i32, addr: &[u8], port: u32) -> [u8; record::SIZE] {
        let mut r = [0u8; record::SIZE];
        r[record::KIND..record::KIND + 4].copy_from_slice(&kind.to_ne_bytes());
        r[record::FAMILY..record::FAMILY + 4].copy_from_slice(&(family as u32).to_ne_bytes());
        r[record::PID_TGID..record::PID_TGID + 8]
            .copy_from_slice(&((1234u64 << 32) | 1235).to_ne_bytes());
        r[record::TYPE..record::TYPE + 4]
            .copy_from_slice(&(libc::SOCK_STREAM as u32).to_ne_bytes());
        r[record::PROTOCOL..record::PROTOCOL + 4]
            .copy_from_slice(&(libc::IPPROTO_TCP as u32).to_ne_bytes());
        r[record::ADDR..record::ADDR + addr.len()].copy_from_slice(addr);
        r[record::PORT..record::PORT + 4].copy_from_slice(&port.to_ne_bytes());
        r[record::COMM..record::COMM + 4].copy_from_slice(b"srv\0");
        r
    }

    /// The reader's walk over the ring: a committed record is read, a discarded one
    /// skipped, one still being written (BUSY) stops it until committed; the
    /// consumer position gives the space back. On anonymous memory laid out like
    /// the kernel's mapping.
    #[test]
    fn drains_committed_records_in_order() {
        let page = page_size();
        let anon = |len| {
            // SAFETY: a fresh private anonymous mapping; Ring's Drop unmaps it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            p.cast::<u8>()
        };
        let ring = Ring {
            consumer: anon(page),
            producer: anon(page + 2 * RING_SIZE as usize),
            page,
            mask: RING_SIZE as u64 - 1,
        };
        let producer = ring.producer as *mut u8;
        let put = |pos: usize, word: u32, tag: u8| {
            // SAFETY: inside the data mapping made above.
            unsafe {
                producer.add(page + pos).cast::<u32>().write(word);
                producer.add(page + pos + HEADER).write(tag);
            }
        };
        let step = record::SIZE + HEADER;
        put(0, record::SIZE as u32, 1);
        put(step, record::SIZE as u32 | DISCARD, 2);
        put(2 * step, record::SIZE as u32 | BUSY, 3);
        ring.producer_pos()
            .store(3 * step as u64, Ordering::Release);
        let mut seen = Vec::new();
        ring.drain(|r| seen.push(r[0]));
        assert_eq!(seen, [1]);
        assert_eq!(ring.consumer_pos().load(Ordering::Acquire), 2 * step as u64);
        put(2 * step, record::SIZE as u32, 3);
        ring.drain(|r| seen.push(r[0]));
        assert_eq!(seen, [1, 3]);
        assert_eq!(ring.consumer_pos().load(Ordering::Acquire), 3 * step as u64);
    }

    /// A State whose events land in the returned list.
    fn state(pairing: Pairing) -> (State, std::sync::Arc<std::sync::Mutex<Vec<Event>>>) {
        let policy: &'static Policy = Box::leak(Box::new(Policy {
            rules: vec![
                rule::parse_bind("127.0.0.2").unwrap(),
                rule::parse_match(":22=deny").unwrap(),
            ],
            ..Policy::default()
        }));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = got.clone();
        let sink: Sink = Box::new(move |e| out.lock().unwrap().push(e.clone()));
        (State::new(policy, pairing, None, sink), got)
    }

    /// A record of thread `tid` of process 1234 on socket `cookie`.
    fn rec(kind: u32, ip: [u8; 4], port: u16, tid: u64, cookie: u64) -> [u8; record::SIZE] {
        let port = match kind {
            record::KIND_REQUEST => u16::to_be(port) as u32,
            _ => port as u32,
        };
        let mut r = raw(kind, libc::AF_INET, &ip, port);
        r[record::PID_TGID..record::PID_TGID + 8]
            .copy_from_slice(&((1234u64 << 32) | tid).to_ne_bytes());
        r[record::COOKIE..record::COOKIE + 8].copy_from_slice(&cookie.to_ne_bytes());
        r
    }

    fn outcomes(got: &std::sync::Mutex<Vec<Event>>) -> Vec<(u16, Action, Outcome)> {
        got.lock()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e.requested.unwrap().port(),
                    e.action.clone(),
                    e.outcome.clone(),
                )
            })
            .collect()
    }

    const ANY: [u8; 4] = [0, 0, 0, 0];
    const TO: [u8; 4] = [127, 0, 0, 2];

    fn unknown() -> Outcome {
        Outcome::Failed {
            errno: Errno::UnknownErrno,
            holder: None,
            hint: None,
        }
    }

    #[test]
    fn pairs_a_bind_by_its_socket_and_sees_failures_at_the_next_bind() {
        let (mut st, got) = state(Pairing::Cookie);
        let to = |port| Action::Rewritten(SocketAddr::new(Ipv4Addr::from(TO).into(), port));
        let bound = |port| Outcome::Ok {
            bound: Some(SocketAddr::new(Ipv4Addr::from(TO).into(), port)),
        };
        // Thread 1 binds socket 7 (ok), then socket 8 (no post-bind: failed, said
        // at its next bind, on socket 9), while thread 2's bind of socket 10 is in
        // between.
        st.record(&rec(record::KIND_REQUEST, ANY, 80, 1, 7));
        st.record(&rec(record::KIND_BOUND, TO, 80, 1, 7));
        st.record(&rec(record::KIND_REQUEST, ANY, 80, 1, 8));
        st.record(&rec(record::KIND_REQUEST, ANY, 81, 2, 10));
        st.record(&rec(record::KIND_REQUEST, ANY, 82, 1, 9));
        st.record(&rec(record::KIND_BOUND, TO, 82, 1, 9));
        st.record(&rec(record::KIND_BOUND, TO, 81, 2, 10));
        // A denied bind is said at once: no post-bind record will come.
        st.record(&rec(record::KIND_REQUEST, ANY, 22, 1, 11));
        let eperm = Outcome::Failed {
            errno: Errno::EPERM,
            holder: None,
            hint: None,
        };
        assert_eq!(
            outcomes(&got),
            [
                (80, to(80), bound(80)),
                (80, to(80), unknown()),
                (82, to(82), bound(82)),
                (81, to(81), bound(81)),
                (22, Action::Denied, eperm),
            ]
        );
        assert!(st.pending.is_empty());
        let notes: Vec<_> = got.lock().unwrap().iter().map(|e| e.note.clone()).collect();
        assert_eq!(notes[1].as_deref(), Some(ERRNO_UNKNOWN));
    }

    #[test]
    fn pairs_by_thread_without_cookies_and_concludes_overdue_binds() {
        let (mut st, got) = state(Pairing::Thread);
        st.record(&rec(record::KIND_REQUEST, ANY, 80, 1, 0));
        st.conclude_overdue(Instant::now());
        assert!(outcomes(&got).is_empty(), "not overdue yet");
        st.conclude_overdue(Instant::now() + FAILED_AFTER);
        assert_eq!(outcomes(&got).len(), 1);
        assert_eq!(outcomes(&got)[0].2, unknown());
        // force-bind's own binds on the program's sockets are not the program's.
        let mut own = rec(record::KIND_REQUEST, ANY, 80, 1, 0);
        let me = (std::process::id() as u64) << 32;
        own[record::PID_TGID..record::PID_TGID + 8].copy_from_slice(&me.to_ne_bytes());
        st.record(&own);
        assert!(st.pending.is_empty());
        assert_eq!(outcomes(&got).len(), 1);
    }

    #[test]
    fn parses_records_of_both_hooks() {
        // A request's user_port is in network order, a bound record's src_port not.
        let req = Record::parse(&raw(
            record::KIND_REQUEST,
            libc::AF_INET,
            &[0, 0, 0, 0],
            u16::to_be(8080) as u32,
        ))
        .unwrap();
        assert_eq!(req.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(req.pid(), 1234);
        assert_eq!(req.comm.as_deref(), Some("srv"));
        assert_eq!(req.sock.proto(), rule::Proto::Tcp);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        let bound = Record::parse(&raw(record::KIND_BOUND, libc::AF_INET6, &v6, 41000)).unwrap();
        assert_eq!(bound.addr, "[::1]:41000".parse().unwrap());
        assert_eq!(
            Record::parse(&raw(record::KIND_BOUND, libc::AF_UNIX, &[], 0)),
            None
        );
    }

    #[test]
    fn request_events_decide_like_the_policy() {
        let policy = Policy {
            // The last rule that matches decides.
            rules: vec![
                rule::parse_bind("127.0.0.2").unwrap(),
                rule::parse_match(":22=deny").unwrap(),
            ],
            ..Policy::default()
        };
        let r = |port: u16| {
            Record::parse(&raw(
                record::KIND_REQUEST,
                libc::AF_INET,
                &[0, 0, 0, 0],
                u16::to_be(port) as u32,
            ))
            .unwrap()
        };
        let e = request_event(&policy, &r(22));
        assert_eq!(e.action, Action::Denied);
        assert_eq!(e.rule.as_deref(), Some("-m :22=deny"));
        assert!(matches!(
            e.outcome,
            Outcome::Failed {
                errno: Errno::EPERM,
                ..
            }
        ));
        let e = request_event(&policy, &r(80));
        assert_eq!(e.action, Action::Rewritten("127.0.0.2:80".parse().unwrap()));
        assert_eq!(e.fd, None);
        assert_eq!((e.pid, e.comm.as_str()), (1234, "srv"));
    }
}
