//! Kernel counters -> flow records for one window.
//!
//! The kernel keeps cumulative counters per socket; each drain is turned into per-window deltas here,
//! so summing a socket's records over windows gives exactly its kernel total. A socket's final
//! counters arrive with its close event; after that its state is forgotten. Sockets that vanish
//! without a close (UDP, LRU eviction) are forgotten too: their bytes up to the last drain were
//! already reported.

use super::attribution::{self, CgroupIdentity};
use crate::capture::{self, Drain, SocketSample};
use crate::model::{Endpoint, FlowRecord, Initiator, Proto, Source, Timestamp};
use std::collections::HashMap;
use std::path::PathBuf;

/// The process that bound a listening socket.
#[derive(Clone)]
struct Owner {
    ip: std::net::IpAddr,
    pid: Option<u32>,
    comm: Option<String>,
}

#[derive(Default, Clone, Copy)]
struct Seen {
    bytes_out: u64,
    bytes_in: u64,
    packets_out: u64,
    packets_in: u64,
    open_reported: bool,
    /// When the kernel's counters for this cookie started; a change means evicted and recreated.
    first_seen_ns: u64,
}

/// Per-cgroup facts, resolved once per cgroup id (cgroup ids are never reused within a boot).
#[derive(Clone)]
struct CgroupFacts {
    path: Option<String>,
    identity: CgroupIdentity,
}

pub struct Windower {
    node: String,
    cgroup_root: PathBuf,
    seen: HashMap<u64, Seen>,
    cgroups: HashMap<u64, CgroupFacts>,
    /// Who owns each listening port, from the listeners' bind(): an accepted socket is created
    /// in softirq with no process of its own and belongs to the listener's process.
    listeners: HashMap<(capture::Proto, u16), Owner>,
    /// The kernel's cumulative map-insert failures and evictions at the previous drain.
    drops_seen: u64,
    evicted_seen: u64,
}

/// One window's output.
pub struct WindowOutput {
    pub records: Vec<FlowRecord>,
    /// Map-insert failures during this window (packets not counted).
    pub map_insert_failures: u64,
    /// Sockets evicted from the full LRU map before they closed (bytes since their last drain lost).
    pub evicted: u64,
    pub map_entries: u32,
    pub map_capacity: u32,
}

impl Windower {
    pub fn new(node: &str, cgroup_root: PathBuf) -> Self {
        Windower {
            node: node.to_string(),
            cgroup_root,
            seen: HashMap::new(),
            cgroups: HashMap::new(),
            listeners: HashMap::new(),
            drops_seen: 0,
            evicted_seen: 0,
        }
    }

    /// Number of live sockets tracked between windows (for /metrics).
    pub fn tracked_sockets(&self) -> usize {
        self.seen.len()
    }

    fn cgroup(&mut self, id: u64) -> CgroupFacts {
        if let Some(f) = self.cgroups.get(&id) {
            return f.clone();
        }
        let path = capture::cgroup_path_for_id(&self.cgroup_root, id).map(|p| {
            let rel = p.strip_prefix(&self.cgroup_root).unwrap_or(&p);
            format!("/{}", rel.display()).replace("//", "/")
        });
        let identity = path.as_deref().map(attribution::identify).unwrap_or_default();
        let facts = CgroupFacts { path, identity };
        // Only remember hits: a cgroup created after the lookup should be found next time.
        if facts.path.is_some() {
            self.cgroups.insert(id, facts.clone());
        }
        facts
    }

    pub fn window(
        &mut self,
        drain: Drain,
        start: Timestamp,
        end: Timestamp,
        batch_hint: &str,
    ) -> WindowOutput {
        let mut records = Vec::new();
        let mut live = std::collections::HashSet::with_capacity(drain.sockets.len());
        self.learn_listeners(&drain.sockets);
        for s in &drain.sockets {
            if s.listener {
                // A listening socket only counts the handshakes of what it accepted; the accepted
                // sockets carry the connection's bytes and are reported themselves.
                continue;
            }
            let prev = match self.seen.get(&s.cookie) {
                // Evicted and re-created since the last drain: the kernel restarted from zero.
                Some(p) if p.first_seen_ns != s.first_seen_ns => {
                    Seen { open_reported: p.open_reported, ..Seen::default() }
                }
                Some(p) => *p,
                None => Seen::default(),
            };
            let d_out = s.bytes_out.saturating_sub(prev.bytes_out);
            let d_in = s.bytes_in.saturating_sub(prev.bytes_in);
            let d_pout = s.packets_out.saturating_sub(prev.packets_out);
            let d_pin = s.packets_in.saturating_sub(prev.packets_in);
            let opened = s.opened && !prev.open_reported;
            if s.closed {
                self.seen.remove(&s.cookie);
            } else {
                live.insert(s.cookie);
                self.seen.insert(
                    s.cookie,
                    Seen {
                        bytes_out: s.bytes_out.max(prev.bytes_out),
                        bytes_in: s.bytes_in.max(prev.bytes_in),
                        packets_out: s.packets_out.max(prev.packets_out),
                        packets_in: s.packets_in.max(prev.packets_in),
                        open_reported: prev.open_reported || s.opened,
                        first_seen_ns: s.first_seen_ns,
                    },
                );
            }
            if d_out == 0 && d_in == 0 && d_pout == 0 && d_pin == 0 && !opened && !s.closed {
                continue;
            }
            records.push(self.record(s, start, end, d_out, d_in, d_pout, d_pin, opened, batch_hint));
        }
        // Forget sockets the kernel no longer has (UDP sockets, LRU evictions).
        self.seen.retain(|cookie, _| live.contains(cookie));
        let failures = drain.drops.saturating_sub(self.drops_seen);
        self.drops_seen = drain.drops.max(self.drops_seen);
        let evicted = drain.evicted.saturating_sub(self.evicted_seen);
        self.evicted_seen = drain.evicted.max(self.evicted_seen);
        WindowOutput {
            records,
            map_insert_failures: failures,
            evicted,
            map_entries: drain.map_entries,
            map_capacity: drain.map_capacity,
        }
    }

    /// Remembers the owner of every listener in the drain (kept after the listener closes: its
    /// accepted sockets may outlive it). A port bound again by another process is replaced.
    fn learn_listeners(&mut self, sockets: &[SocketSample]) {
        for s in sockets.iter().filter(|s| s.listener && (s.pid.is_some() || s.comm.is_some())) {
            let owner = Owner { ip: s.local.ip(), pid: s.pid, comm: s.comm.clone() };
            self.listeners.insert((s.proto, s.local.port()), owner);
        }
    }

    /// The listener's process for a socket the kernel accepted on its port (same address, or a
    /// listener on the wildcard address).
    fn accepting_process(&self, s: &SocketSample) -> (Option<u32>, Option<String>) {
        if s.initiator != capture::Initiator::Remote {
            return (None, None);
        }
        match self.listeners.get(&(s.proto, s.local.port())) {
            Some(o) if o.ip.is_unspecified() || o.ip.to_canonical() == s.local.ip().to_canonical() => {
                (o.pid, o.comm.clone())
            }
            _ => (None, None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        s: &SocketSample,
        start: Timestamp,
        end: Timestamp,
        bytes_out: u64,
        bytes_in: u64,
        packets_out: u64,
        packets_in: u64,
        opened: bool,
        batch_hint: &str,
    ) -> FlowRecord {
        let facts = self.cgroup(s.cgroup_id);
        let mut local = Endpoint::addr(s.local.ip(), s.local.port());
        let (pid, comm) = match (s.pid, &s.comm) {
            (None, None) => self.accepting_process(s),
            _ => (s.pid, s.comm.clone()),
        };
        local.pid = pid;
        local.process = comm.or_else(|| pid.and_then(attribution::comm_of));
        local.cgroup = facts.path;
        local.container_id = facts.identity.container_id;
        local.pod_uid = facts.identity.pod_uid;
        local.node = Some(self.node.clone());
        // The address the application asked for (a Service VIP before DNAT) is the more useful
        // remote: it names the service. The post-NAT address is what the kernel saw on the wire.
        let remote_addr = s.requested_remote.unwrap_or(s.remote);
        let remote = Endpoint::addr(remote_addr.ip(), remote_addr.port());
        FlowRecord {
            window_start: start,
            window_end: end,
            node: self.node.clone(),
            ip_version: s.ip_version,
            local,
            remote,
            proto: match s.proto {
                capture::Proto::Tcp => Proto::Tcp,
                capture::Proto::Udp => Proto::Udp,
                capture::Proto::Other(_) => Proto::Other,
            },
            initiator: match s.initiator {
                capture::Initiator::Local => Initiator::Local,
                capture::Initiator::Remote => Initiator::Remote,
                capture::Initiator::Unknown => Initiator::Unknown,
            },
            bytes_out,
            bytes_in,
            packets_out,
            packets_in,
            connections_opened: u32::from(opened),
            connections_closed: u32::from(s.closed),
            batch_id: Some(batch_hint.to_string()),
            source: Some(Source::Agent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Initiator as CInit, Proto as CProto, SocketSample};

    fn sample(cookie: u64, out: u64, inn: u64, closed: bool, first_seen: u64) -> SocketSample {
        SocketSample {
            cookie,
            cgroup_id: 0,
            pid: Some(42),
            comm: Some("curl".into()),
            proto: CProto::Tcp,
            ip_version: 4,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.0.0.2:443".parse().unwrap(),
            requested_remote: Some("10.96.0.10:443".parse().unwrap()),
            initiator: CInit::Local,
            bytes_out: out,
            bytes_in: inn,
            packets_out: out / 100,
            packets_in: inn / 100,
            opened: true,
            closed,
            listener: false,
            multi_remote: false,
            first_seen_ns: first_seen,
            last_seen_ns: first_seen,
        }
    }

    fn drain(sockets: Vec<SocketSample>, drops: u64, evicted: u64) -> Drain {
        Drain { sockets, drops, evicted, ring_full: 0, map_entries: 1, map_capacity: 8 }
    }

    /// Regression (issue "Truth"): the server's accepted socket had no process name; it is the
    /// process that bound the listener.
    #[test]
    fn an_accepted_socket_carries_its_listeners_process() {
        let mut w = Windower::new("n1", std::env::temp_dir());
        let t = |s| Timestamp::from_secs(s);
        let mut listener = sample(1, 0, 0, false, 5);
        listener.listener = true;
        listener.local = "0.0.0.0:5201".parse().unwrap();
        (listener.pid, listener.comm) = (Some(7), Some("iperf3".into()));
        let mut accepted = sample(2, 100, 5000, false, 6);
        accepted.local = "127.0.0.1:5201".parse().unwrap();
        (accepted.pid, accepted.comm, accepted.initiator) = (None, None, CInit::Remote);
        let mut other_port = accepted.clone();
        other_port.cookie = 3;
        other_port.local = "127.0.0.1:6000".parse().unwrap();
        let out = w.window(drain(vec![listener, accepted, other_port], 0, 0), t(0), t(10), "b");
        let by_port = |p: u16| out.records.iter().find(|r| r.local.port == p).unwrap();
        assert_eq!(by_port(5201).local.process.as_deref(), Some("iperf3"));
        assert_eq!(by_port(5201).local.pid, Some(7));
        assert_eq!(by_port(6000).local.process, None, "no listener on that port");
        assert_eq!(out.records.len(), 2, "the listener itself is not a flow");
    }

    #[test]
    fn cumulative_counters_become_exact_window_deltas() {
        let mut w = Windower::new("n1", std::env::temp_dir());
        let t = |s| Timestamp::from_secs(s);
        let a = w.window(drain(vec![sample(1, 1000, 200, false, 5)], 0, 0), t(0), t(10), "b");
        let b = w.window(drain(vec![sample(1, 1500, 200, false, 5)], 0, 0), t(10), t(20), "b");
        let c = w.window(drain(vec![sample(1, 1500, 200, false, 5)], 2, 0), t(20), t(30), "b");
        let d = w.window(drain(vec![sample(1, 1800, 300, true, 5)], 2, 1), t(30), t(40), "b");
        let all: Vec<&FlowRecord> = [&a, &b, &c, &d].iter().flat_map(|o| o.records.iter()).collect();
        assert_eq!(all.iter().map(|r| r.bytes_out).collect::<Vec<_>>(), vec![1000, 500, 300]);
        assert_eq!(all.iter().map(|r| r.bytes_out).sum::<u64>(), 1800, "sum of windows = kernel total");
        assert_eq!(all.iter().map(|r| r.connections_opened).sum::<u32>(), 1, "opened once");
        assert_eq!(all.last().unwrap().connections_closed, 1);
        assert_eq!(all[0].remote.ip.to_string(), "10.96.0.10", "the Service VIP the app asked for");
        assert_eq!(all[0].local.process.as_deref(), Some("curl"));
        assert_eq!((c.map_insert_failures, d.map_insert_failures, d.evicted), (2, 0, 1));
        assert_eq!(w.tracked_sockets(), 0, "closed sockets are forgotten");

        // An entry evicted and re-created (new first_seen) restarts from zero.
        let e = w.window(drain(vec![sample(7, 900, 0, false, 1)], 2, 1), t(40), t(50), "b");
        let f = w.window(drain(vec![sample(7, 100, 0, false, 2)], 2, 1), t(50), t(60), "b");
        assert_eq!(e.records[0].bytes_out + f.records[0].bytes_out, 1000);
    }
}
