//! The kernel side: load the embedded probes with aya, attach them to a cgroup, drain
//! their maps.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError, SockOps,
};
use aya::{Ebpf, EbpfError, EbpfLoader};

use super::abi::{self, EgrCloseEvent, EgrSockMeta, EgrSockStats};
use super::{CaptureConfig, Drain, Error, Initiator, Proto, SocketSample, cgroup2_root};

/// The compiled probes, built from `ebpf-probes/egressor.bpf.c` by `build.rs`.
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/egressor.bpf.o"));

/// Program (C function) names in the object, in attach order: metadata first, so that a
/// connect is recorded before the packets it causes, and the TCP close path before the
/// counters it finishes.
const PROGRAMS: &[&str] = &[
    "egr_connect4",
    "egr_connect6",
    "egr_sendmsg4",
    "egr_sendmsg6",
    "egr_post_bind4",
    "egr_post_bind6",
    "egr_sockops",
    "egr_sock_release",
    "egr_egress",
    "egr_ingress",
];

/// Probes loaded and attached to one cgroup; detached when dropped (the programs own
/// their bpf_link fds, and closing those detaches).
pub struct KernelCapture {
    stats: BpfHashMap<MapData, u64, EgrSockStats>,
    meta: BpfHashMap<MapData, u64, EgrSockMeta>,
    events: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    cgroup_path: PathBuf,
    capacity: u32,
    /// Cookie -> first_ns of the live (not closed) sockets of the previous drain, to
    /// detect LRU evictions.
    previous: HashMap<u64, u64>,
    /// Evictions of sockets an earlier drain saw (exact, from `previous`).
    evicted_seen: u64,
    /// Evictions from the insert/delete counters: includes sockets evicted before any drain
    /// saw them. A lower bound while sockets come and go during the walk, exact when quiet.
    evicted_counted: u64,
    /// SOCK_STATS entries this process deleted (closed sockets whose event did not fit the ring).
    user_deleted: u64,
    // Last: dropped after the maps, detaches and unloads every program.
    _ebpf: Ebpf,
    _cgroup: File,
}

impl std::fmt::Debug for KernelCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCapture")
            .field("cgroup_path", &self.cgroup_path)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl KernelCapture {
    /// Loads the probes and attaches them to `cfg.cgroup_path` (or the cgroup v2 root).
    pub fn start(cfg: &CaptureConfig) -> Result<KernelCapture, Error> {
        let cgroup_path = match &cfg.cgroup_path {
            Some(p) => p.clone(),
            None => cgroup2_root()?,
        };
        let cgroup = File::open(&cgroup_path).map_err(|source| {
            if source.kind() == io::ErrorKind::PermissionDenied {
                Error::PermissionDenied { action: format!("opening cgroup {}", cgroup_path.display()) }
            } else {
                Error::Cgroup { path: cgroup_path.clone(), source }
            }
        })?;
        raise_memlock_limit();

        let capacity = cfg.max_sockets.max(1);
        let ring_bytes = ring_size(cfg.ring_bytes);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("SOCK_STATS", capacity)
            .map_max_entries("SOCK_META", capacity)
            .map_max_entries("EVENTS", ring_bytes)
            .load(PROBES)
            .map_err(load_error)?;

        for &name in PROGRAMS {
            attach(&mut ebpf, name, &cgroup, &cgroup_path)?;
        }

        let stats = BpfHashMap::try_from(take_map(&mut ebpf, "SOCK_STATS")?)
            .map_err(|e| map_error("SOCK_STATS", e))?;
        let meta =
            BpfHashMap::try_from(take_map(&mut ebpf, "SOCK_META")?).map_err(|e| map_error("SOCK_META", e))?;
        let events = RingBuf::try_from(take_map(&mut ebpf, "EVENTS")?).map_err(|e| map_error("EVENTS", e))?;
        let drops =
            PerCpuArray::try_from(take_map(&mut ebpf, "DROPS")?).map_err(|e| map_error("DROPS", e))?;

        tracing::debug!(cgroup = %cgroup_path.display(), capacity, ring_bytes, "eBPF capture attached");
        Ok(KernelCapture {
            stats,
            meta,
            events,
            drops,
            cgroup_path,
            capacity,
            previous: HashMap::new(),
            evicted_seen: 0,
            evicted_counted: 0,
            user_deleted: 0,
            _ebpf: ebpf,
            _cgroup: cgroup,
        })
    }

    /// The cgroup directory the probes are attached to.
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup_path
    }

    /// The close-event ring buffer, readable when it is more than a quarter full: poll it
    /// (e.g. tokio `AsyncFd`) to drain early under a burst of short connections.
    pub fn ring_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Reads every socket's cumulative counters and the sockets closed since the last
    /// drain. Cost: two map syscalls per live socket.
    pub fn drain(&mut self) -> Result<Drain, Error> {
        // Entries created so far, read before the walk, with the time of the reading on the
        // probes' clock (bpf_ktime_get_ns is CLOCK_MONOTONIC).
        let t_counted = monotonic_ns();
        let inserted_before = self.drop_counters()?[abi::EGR_STAT_INSERTED];
        let user_deleted_before = self.user_deleted;
        // The map first, then the ring: the probes submit a close event before deleting
        // the entry, so a socket missing from the map walk has its event in the ring.
        let metas: HashMap<u64, EgrSockMeta> =
            self.meta.iter().collect::<Result<_, _>>().map_err(|e| map_error("SOCK_META", e))?;
        // A HashMap because a walk that races with deletes can restart and repeat keys.
        let live: HashMap<u64, EgrSockStats> =
            self.stats.iter().collect::<Result<_, _>>().map_err(|e| map_error("SOCK_STATS", e))?;

        let mut closed: HashMap<u64, EgrCloseEvent> = HashMap::new();
        while let Some(item) = self.events.next() {
            match EgrCloseEvent::from_bytes(&item) {
                Some(ev) => {
                    closed.insert(ev.cookie, ev);
                }
                None => tracing::warn!(len = item.len(), "short close event ignored"),
            }
        }

        let mut sockets = Vec::with_capacity(live.len() + closed.len());
        let mut still_live = HashMap::with_capacity(live.len());
        let mut finalised: HashSet<u64> = HashSet::new();
        for (&cookie, stats) in &live {
            if closed.contains_key(&cookie) {
                continue; // closed during this drain: the event has the final counters
            }
            let is_closed = stats.flags & abi::EGR_F_CLOSED != 0;
            sockets.push(sample(cookie, stats, metas.get(&cookie), is_closed));
            if is_closed {
                // The probe could not send the close event (ring full): finish it here.
                if self.stats.remove(&cookie).is_ok() {
                    self.user_deleted += 1;
                }
                let _ = self.meta.remove(&cookie);
                finalised.insert(cookie);
            } else {
                still_live.insert(cookie, stats.first_ns);
            }
        }
        for (&cookie, ev) in &closed {
            let meta = if ev.has_meta != 0 { Some(&ev.meta) } else { metas.get(&cookie) };
            if ev.kind != abi::EGR_EV_TCP_CLOSE && ev.kind != abi::EGR_EV_SOCK_RELEASE {
                tracing::warn!(kind = ev.kind, "unknown close event kind");
            }
            sockets.push(sample(cookie, &ev.stats, meta, true));
        }

        for (cookie, first_ns) in &self.previous {
            let gone = match still_live.get(cookie) {
                Some(now_first) => now_first != first_ns, // evicted and recreated
                None => !closed.contains_key(cookie) && !finalised.contains(cookie),
            };
            if gone {
                self.evicted_seen += 1;
            }
        }
        self.previous = still_live;

        // Every entry created before `t_counted` was, by the end of the walk, either seen in it,
        // deleted (by a probe at close, or here), or evicted. Races with the walk (an entry seen
        // and then deleted, an insert counted a moment after its first_ns) can only make the
        // difference smaller, so it is a lower bound of the evictions; the counter keeps the
        // largest one seen, which is exact whenever a drain runs while sockets are not churning.
        let slots = self.drop_counters()?;
        let walked_before = live.values().filter(|s| s.first_ns <= t_counted).count() as u64;
        let accounted = walked_before + slots[abi::EGR_STAT_DELETED] + user_deleted_before;
        self.evicted_counted = self.evicted_counted.max(inserted_before.saturating_sub(accounted));
        Ok(Drain {
            sockets,
            drops: slots[abi::EGR_DROP_STATS_INSERT]
                + slots[abi::EGR_DROP_META_INSERT]
                + slots[abi::EGR_DROP_NO_COOKIE],
            evicted: self.evicted_seen.max(self.evicted_counted),
            ring_full: slots[abi::EGR_DROP_RING_FULL],
            map_entries: u32::try_from(live.len()).unwrap_or(u32::MAX),
            map_capacity: self.capacity,
        })
    }

    /// Sums of the DROPS slots over all CPUs.
    fn drop_counters(&self) -> Result<[u64; abi::EGR_DROP_SLOTS], Error> {
        let mut out = [0u64; abi::EGR_DROP_SLOTS];
        for (slot, total) in out.iter_mut().enumerate() {
            let values = self.drops.get(&(slot as u32), 0).map_err(|e| map_error("DROPS", e))?;
            *total = values.iter().sum();
        }
        Ok(out)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sample(cookie: u64, s: &EgrSockStats, meta: Option<&EgrSockMeta>, closed: bool) -> SocketSample {
    let t = &s.tuple;
    let ip_version = if t.ip_version != 0 { t.ip_version } else { meta.map_or(0, |m| m.ip_version) };
    let local = abi::sock_addr(ip_version, &t.local_addr, t.local_port);
    let remote = abi::sock_addr(ip_version, &t.remote_addr, t.remote_port);
    let requested = meta
        .filter(|m| m.ip_version == 4 || m.ip_version == 6)
        .map(|m| abi::sock_addr(m.ip_version, &m.requested_addr, m.requested_port));
    // An IPv4 peer reached through a dual-stack socket is asked for as ::ffff:a.b.c.d;
    // that is the same destination, not a rewrite.
    let requested_remote = requested
        .filter(|r| r.port() != remote.port() || r.ip().to_canonical() != remote.ip().to_canonical());
    let initiator = if s.flags & abi::EGR_F_INIT_LOCAL != 0 {
        Initiator::Local
    } else if s.flags & abi::EGR_F_INIT_REMOTE != 0 {
        Initiator::Remote
    } else if t.proto == 6 && meta.is_some_and(|m| m.ip_version != 0) {
        Initiator::Local // connect() seen, establishment not (socket older than probes)
    } else {
        Initiator::Unknown
    };
    let proto = if t.proto != 0 || meta.is_none() {
        Proto::from_number(t.proto)
    } else {
        Proto::from_number(meta.map_or(0, |m| m.proto))
    };
    SocketSample {
        cookie,
        cgroup_id: s.cgroup_id,
        pid: meta.map(|m| m.pid).filter(|&p| p != 0),
        comm: meta.map(|m| abi::comm_string(&m.comm)).filter(|c| !c.is_empty()),
        proto,
        ip_version,
        local,
        remote,
        requested_remote,
        initiator,
        bytes_out: s.bytes_out,
        bytes_in: s.bytes_in,
        packets_out: s.packets_out,
        packets_in: s.packets_in,
        opened: s.flags & abi::EGR_F_OPENED != 0,
        closed,
        listener: s.flags & abi::EGR_F_LISTENER != 0,
        multi_remote: s.flags & abi::EGR_F_MULTI_REMOTE != 0,
        first_seen_ns: s.first_ns,
        last_seen_ns: s.last_ns,
    }
}

/// The kernel wants a power of two, a multiple of the page size.
fn ring_size(requested: u32) -> u32 {
    requested.max(4096).checked_next_power_of_two().unwrap_or(1 << 31)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones to the memory
/// cgroup. Raising it is harmless where it is not needed and fails silently without
/// CAP_SYS_RESOURCE (the load then reports EPERM).
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid, fully initialised struct.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, Error> {
    ebpf.take_map(name).ok_or_else(|| Error::Map {
        map: name.to_owned(),
        message: "missing from the probe object (build.rs and egressor.h out of step?)".to_owned(),
    })
}

fn map_error(name: &str, e: MapError) -> Error {
    if let MapError::SyscallError(sys) = &e
        && is_eperm(&sys.io_error)
    {
        return Error::PermissionDenied { action: format!("accessing eBPF map {name}") };
    }
    Error::Map { map: name.to_owned(), message: e.to_string() }
}

fn is_eperm(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPERM) || e.kind() == io::ErrorKind::PermissionDenied
}

fn load_error(e: EbpfError) -> Error {
    match e {
        EbpfError::MapError(MapError::CreateError { name, io_error, .. }) if is_eperm(&io_error) => {
            Error::PermissionDenied { action: format!("creating eBPF map {name}") }
        }
        EbpfError::MapError(e) => Error::Map { map: String::new(), message: e.to_string() },
        EbpfError::BtfError(e) => Error::MissingBtf { detail: e.to_string() },
        EbpfError::NoBTF => Error::MissingBtf { detail: "no BTF in the probe object".to_owned() },
        other => Error::Load(other.to_string()),
    }
}

fn attach(ebpf: &mut Ebpf, name: &str, cgroup: &File, cgroup_path: &Path) -> Result<(), Error> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::Load(format!("program `{name}` missing from the probe object")))?;
    let load_err = |e: ProgramError| program_load_error(name, e);
    let attach_err = |e: ProgramError| attach_error(name, cgroup_path, e);
    // On kernels >= 5.7 aya attaches through bpf_link, which always coexists with other
    // programs on the cgroup and its ancestors (multi-attach semantics) and takes no
    // flags: passing BPF_F_ALLOW_MULTI there is EINVAL. Mode `Single` means flags = 0.
    let mode = CgroupAttachMode::Single;
    match name {
        "egr_egress" | "egr_ingress" => {
            let p: &mut CgroupSkb = program.try_into().map_err(load_err)?;
            p.load().map_err(load_err)?;
            let kind =
                if name == "egr_egress" { CgroupSkbAttachType::Egress } else { CgroupSkbAttachType::Ingress };
            p.attach(cgroup, kind, mode).map_err(attach_err)?;
        }
        "egr_sockops" => {
            let p: &mut SockOps = program.try_into().map_err(load_err)?;
            p.load().map_err(load_err)?;
            p.attach(cgroup, mode).map_err(attach_err)?;
        }
        "egr_sock_release" | "egr_post_bind4" | "egr_post_bind6" => {
            let p: &mut CgroupSock = program.try_into().map_err(load_err)?;
            p.load().map_err(load_err)?;
            p.attach(cgroup, mode).map_err(attach_err)?;
        }
        _ => {
            let p: &mut CgroupSockAddr = program.try_into().map_err(load_err)?;
            p.load().map_err(load_err)?;
            p.attach(cgroup, mode).map_err(attach_err)?;
        }
    }
    Ok(())
}

fn program_load_error(name: &str, e: ProgramError) -> Error {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            if io_error.raw_os_error() == Some(libc::EPERM) {
                Error::PermissionDenied { action: format!("loading probe {name}") }
            } else {
                Error::ProbeLoad {
                    program: name.to_owned(),
                    reason: io_error.to_string(),
                    verifier_log: verifier_log.to_string(),
                }
            }
        }
        other => Error::ProbeLoad {
            program: name.to_owned(),
            reason: other.to_string(),
            verifier_log: String::new(),
        },
    }
}

fn attach_error(name: &str, cgroup: &Path, e: ProgramError) -> Error {
    let source = match e {
        ProgramError::SyscallError(sys) => sys.io_error,
        other => io::Error::other(other.to_string()),
    };
    if is_eperm(&source) {
        return Error::PermissionDenied {
            action: format!("attaching probe {name} to cgroup {}", cgroup.display()),
        };
    }
    Error::Attach { program: name.to_owned(), cgroup: cgroup.to_path_buf(), source }
}
