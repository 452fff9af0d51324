//! Capture: per-socket byte and packet counters from the kernel.
//!
//! The only module that touches aya. The eBPF probes are C (`ebpf-probes/*.bpf.c`,
//! compiled by `build.rs`), embedded in the binary and attached to one cgroup v2
//! directory (the root from `/proc/mounts` by default), so they see every socket of that
//! subtree:
//!
//! ```text
//! cgroup_skb egress/ingress --(count per socket cookie)--> SOCK_STATS (LRU hash)
//! sock_ops TCP close, sock_release (UDP)  --(final counters)--> EVENTS (ring buffer)
//! connect4/6, sendmsg4/6  --(requested dst, pid, comm)--> SOCK_META (LRU hash)
//! map insert failures, ring overflows --> DROPS (per-CPU array)
//! ```
//!
//! [`KernelCapture::drain`] reads all of it into a [`Drain`]: one [`SocketSample`] per
//! socket with counters that are *cumulative* since the socket was first seen. The agent
//! computes deltas between drains. A socket appears with `closed: true` exactly once,
//! with its final counters, and then never again.
//!
//! What can be lost, and how it is made visible:
//! - a socket evicted from the LRU map between two drains loses the bytes since the last
//!   drain (all its bytes if no drain saw it); [`Drain::evicted`] counts such sockets, from
//!   the probes' insert/delete counters as well as from sockets that vanished (size the map with
//!   [`CaptureConfig::max_sockets`]);
//! - a failed map insert loses one packet's count: [`Drain::drops`];
//! - a full ring buffer loses nothing: the close is kept in the map and reported at the
//!   next drain ([`Drain::ring_full`] counts those);
//! - whatever the kernel counted after the agent's last drain is lost if the agent is
//!   killed (the maps die with it).
//!
//! UDP and other connectionless sockets have no TCP close: their counters are drained
//! cumulatively like any live socket and their final counters arrive when the socket is
//! released (`cgroup/sock_release`).
//!
//! [`EventSource`] is the seam: the agent is written against it, and tests feed it a
//! [`ReplaySource`] instead of the kernel.

mod abi;
mod cgroup;
mod job_cgroup;
mod kernel;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use cgroup::{CgroupResolver, cgroup_path_for_id, cgroup2_root, is_cgroup2_mount};
pub use job_cgroup::JobCgroup;
pub use kernel::KernelCapture;

/// What to capture and how much kernel memory to use for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// cgroup v2 directory to attach to (its whole subtree is captured).
    /// `None`: the cgroup v2 root from `/proc/mounts`.
    pub cgroup_path: Option<PathBuf>,
    /// Capacity of the per-socket maps (LRU: the least recently used socket is evicted
    /// when full; evictions are counted in [`Drain::evicted`]). About 200 bytes per
    /// socket of locked kernel memory.
    pub max_sockets: u32,
    /// Size of the close-event ring buffer in bytes, rounded up to a power of two of at
    /// least one page. Each close takes 184 bytes; a full ring loses nothing (see
    /// [`Drain::ring_full`]) but delays the report to the next drain.
    pub ring_bytes: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig { cgroup_path: None, max_sockets: 65_536, ring_bytes: 4 << 20 }
    }
}

/// Transport protocol of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// Any other IP protocol number (ICMP, SCTP, IPv6 extension headers...).
    Other(u8),
}

impl Proto {
    fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            other => Proto::Other(other),
        }
    }
}

/// Which end opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This host connected (TCP active open, or a connect() seen for the socket).
    Local,
    /// The peer connected to us (TCP passive open).
    Remote,
    /// Not observed: connectionless traffic, or a socket older than the probes.
    Unknown,
}

/// One socket's counters as of a drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSample {
    /// Kernel socket cookie: unique per socket for the life of the kernel.
    pub cookie: u64,
    /// cgroup v2 id of the socket (the cgroup of the process that created it; resolve
    /// with [`cgroup_path_for_id`]). 0 if no packet has been seen yet.
    pub cgroup_id: u64,
    /// Process (tgid) that called connect()/sendto() on the socket, if seen.
    pub pid: Option<u32>,
    /// Its task name (at most 15 bytes), if seen.
    pub comm: Option<String>,
    pub proto: Proto,
    /// 4 or 6 (0 if not known yet).
    pub ip_version: u8,
    pub local: SocketAddr,
    /// The peer as in the packets (after any DNAT on this host, for egress).
    pub remote: SocketAddr,
    /// The destination the application asked for in connect()/sendto() when it differs
    /// from `remote` (e.g. a Service VIP rewritten by DNAT).
    pub requested_remote: Option<SocketAddr>,
    pub initiator: Initiator,
    /// IP-layer bytes (IP + L4 headers + payload) sent, cumulative since first seen.
    pub bytes_out: u64,
    /// IP-layer bytes received, cumulative since first seen.
    pub bytes_in: u64,
    /// Packets sent as the cgroup hook sees them (a GSO/TSO super-packet counts once).
    pub packets_out: u64,
    /// Packets received as the cgroup hook sees them (a GRO packet counts once).
    pub packets_in: u64,
    /// TCP connection establishment observed.
    pub opened: bool,
    /// Final counters of a socket that is gone: its cookie will not appear again.
    pub closed: bool,
    /// TCP listening socket: its counters are the handshake packets (SYN, SYN-ACK, ACK)
    /// of the connections it accepted; `remote` is unspecified.
    pub listener: bool,
    /// Unconnected UDP socket that sent to several peers: `remote` is the first one and
    /// the counters cover all of them.
    pub multi_remote: bool,
    /// Kernel monotonic time (ns) when the counters started. If it changes between two
    /// drains for the same cookie, the entry was evicted and recreated: counters restarted.
    pub first_seen_ns: u64,
    /// Kernel monotonic time (ns) of the close for a closed socket, else when it was first seen
    /// (the probes do not read the clock per packet: it cost ~10% of their time).
    pub last_seen_ns: u64,
}

/// Everything read from the kernel in one drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// Live sockets (cumulative counters) and sockets closed since the last drain.
    pub sockets: Vec<SocketSample>,
    /// Cumulative count of failed map inserts in the kernel (packets not counted,
    /// connect/sendmsg metadata not recorded).
    pub drops: u64,
    /// Cumulative count of sockets evicted from the full LRU map before they closed: the
    /// bytes since their last drain (all of them, for a socket no drain saw) are lost.
    /// Counted two ways, the larger taken: sockets an earlier drain saw that vanished, and
    /// the probes' insert/delete counters against the entries walked (which also catches
    /// sockets evicted before any drain; exact when a drain runs while sockets are not churning).
    pub evicted: u64,
    /// Cumulative count of closes that found the ring buffer full (nothing lost: they
    /// are reported from the map instead, maybe one drain late).
    pub ring_full: u64,
    /// Entries in the socket map at this drain.
    pub map_entries: u32,
    /// Capacity of the socket map.
    pub map_capacity: u32,
}

/// Where the agent gets socket counters from: the kernel, or a replay in tests.
pub trait EventSource {
    fn drain(&mut self) -> Result<Drain, Error>;
}

/// An [`EventSource`] that hands out prepared drains in order, then empty ones.
#[derive(Clone, Debug, Default)]
pub struct ReplaySource {
    drains: VecDeque<Drain>,
    capacity: u32,
}

impl ReplaySource {
    pub fn new(drains: impl IntoIterator<Item = Drain>) -> Self {
        ReplaySource { drains: drains.into_iter().collect(), capacity: 0 }
    }

    /// True when every prepared drain has been handed out.
    pub fn is_exhausted(&self) -> bool {
        self.drains.is_empty()
    }
}

impl EventSource for ReplaySource {
    fn drain(&mut self) -> Result<Drain, Error> {
        match self.drains.pop_front() {
            Some(d) => {
                self.capacity = d.map_capacity;
                Ok(d)
            }
            None => Ok(Drain { map_capacity: self.capacity, ..Drain::default() }),
        }
    }
}

impl EventSource for KernelCapture {
    fn drain(&mut self) -> Result<Drain, Error> {
        KernelCapture::drain(self)
    }
}

const PRIVILEGE_HINT: &str = "run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
     (e.g. `sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which egressor)`)";

/// Why capture could not start or read the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("permission denied while {action}: {PRIVILEGE_HINT}")]
    PermissionDenied { action: String },

    #[error(
        "no cgroup v2 hierarchy in /proc/mounts: mount one \
         (`mount -t cgroup2 none /sys/fs/cgroup/unified`) or pass the cgroup directory to attach to"
    )]
    NoCgroup2,

    #[error(
        "the kernel rejected the probes' BTF ({detail}): egressor needs a kernel >= 5.8 built \
         with CONFIG_DEBUG_INFO_BTF=y (check that /sys/kernel/btf/vmlinux exists)"
    )]
    MissingBtf { detail: String },

    #[error(
        "the kernel refused to load probe `{program}`: {reason}. This kernel may be too old \
         (egressor needs >= 5.10 with BPF ring buffers) or lack a program type. \
         Verifier log:\n{verifier_log}"
    )]
    ProbeLoad { program: String, reason: String, verifier_log: String },

    #[error("cannot attach probe `{program}` to cgroup {}: {source}", cgroup.display())]
    Attach {
        program: String,
        cgroup: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot open cgroup directory {}: {source} (is it a cgroup v2 directory?)", path.display())]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("eBPF map `{map}`: {message}")]
    Map { map: String, message: String },

    #[error("cannot load the eBPF object: {0}")]
    Load(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
