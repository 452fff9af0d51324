//! `#[repr(C)]` mirrors of `ebpf-probes/include/egressor.h`. That header is the one
//! definition; the sizes are asserted here and with `_Static_assert` in the probes, so a
//! change on one side only fails the build.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub(crate) const EGR_COMM_LEN: usize = 16;

pub(crate) const EGR_F_OPENED: u32 = 1 << 0;
pub(crate) const EGR_F_INIT_LOCAL: u32 = 1 << 1;
pub(crate) const EGR_F_INIT_REMOTE: u32 = 1 << 2;
pub(crate) const EGR_F_CLOSED: u32 = 1 << 3;
pub(crate) const EGR_F_MULTI_REMOTE: u32 = 1 << 4;
pub(crate) const EGR_F_LISTENER: u32 = 1 << 5;

pub(crate) const EGR_EV_TCP_CLOSE: u32 = 1;
pub(crate) const EGR_EV_SOCK_RELEASE: u32 = 2;

pub(crate) const EGR_DROP_STATS_INSERT: usize = 0;
pub(crate) const EGR_DROP_META_INSERT: usize = 1;
pub(crate) const EGR_DROP_RING_FULL: usize = 2;
pub(crate) const EGR_DROP_NO_COOKIE: usize = 3;
pub(crate) const EGR_STAT_INSERTED: usize = 4;
pub(crate) const EGR_STAT_DELETED: usize = 5;
pub(crate) const EGR_DROP_SLOTS: usize = 6;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EgrTuple {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub ip_version: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EgrSockStats {
    pub tuple: EgrTuple,
    pub cgroup_id: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub flags: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EgrSockMeta {
    pub requested_addr: [u8; 16],
    pub requested_port: u16,
    pub ip_version: u8,
    pub proto: u8,
    pub pid: u32,
    pub cgroup_id: u64,
    pub ns: u64,
    pub comm: [u8; EGR_COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EgrCloseEvent {
    pub cookie: u64,
    pub kind: u32,
    pub has_meta: u32,
    pub stats: EgrSockStats,
    pub meta: EgrSockMeta,
}

const _: () = assert!(size_of::<EgrTuple>() == 40);
const _: () = assert!(size_of::<EgrSockStats>() == 104);
const _: () = assert!(size_of::<EgrSockMeta>() == 56);
const _: () = assert!(size_of::<EgrCloseEvent>() == 176);

// SAFETY: plain `repr(C)` structs of integers and byte arrays with explicit padding
// fields: every bit pattern is valid and there are no implicit holes.
unsafe impl aya::Pod for EgrSockStats {}
unsafe impl aya::Pod for EgrSockMeta {}

impl EgrCloseEvent {
    /// Reads an event from ring buffer bytes (no alignment assumed).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked above; the type is valid for any bit pattern.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

/// An address from the probes: network byte order, IPv4 in bytes 0..4.
pub(crate) fn ip_from(version: u8, bytes: &[u8; 16]) -> IpAddr {
    match version {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        6 => IpAddr::V6(Ipv6Addr::from(*bytes)),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

pub(crate) fn sock_addr(version: u8, bytes: &[u8; 16], port: u16) -> SocketAddr {
    SocketAddr::new(ip_from(version, bytes), port)
}

/// A task comm: NUL-terminated, at most 16 bytes, not necessarily UTF-8.
pub(crate) fn comm_string(comm: &[u8; EGR_COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}
