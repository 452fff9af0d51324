//! Synthetic agent-shaped flow records shared by the benchmarks: ~300 pods on 40 nodes in three
//! zones, 10-second windows, ~2,000 active socket pairs per window, a quarter to S3 addresses.

use egressor::engines::enrich::Enricher;
use egressor::model::k8s::{ClusterMeta, NodeMeta, OwnerMeta, OwnerRef, PodMeta};
use egressor::model::{Endpoint, FlowRecord, Initiator, Proto, Source, Timestamp};
use egressor::store::Workspace;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub struct PodInfo {
    ip: IpAddr,
    pod: String,
    ns: String,
    workload: String,
    node: String,
    zone: String,
    container: String,
    cgroup: String,
    process: String,
}

pub fn pods(n: usize) -> Vec<PodInfo> {
    (0..n)
        .map(|i| {
            let w = i / 3;
            let node = i % 40;
            let container = format!("{:016x}{:016x}{:016x}{:016x}", mix(i as u64), mix(i as u64 + 1), mix(i as u64 + 2), mix(i as u64 + 3));
            PodInfo {
                ip: IpAddr::V4(Ipv4Addr::new(10, (node / 13) as u8, (node % 13) as u8, 10 + (i % 200) as u8)),
                pod: format!("svc-{w}-7d9c8b6f5-{:05x}", mix(i as u64) & 0xfffff),
                ns: format!("team-{}", w % 12),
                workload: format!("svc-{w}"),
                node: format!("ip-10-0-{node}-10.ec2.internal"),
                zone: ["us-east-1a", "us-east-1b", "us-east-1c"][node % 3].into(),
                cgroup: format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{:x}.slice/cri-containerd-{container}.scope", mix(i as u64 + 9)),
                container,
                process: ["java", "node", "python3", "envoy"][w % 4].into(),
            }
        })
        .collect()
}

fn endpoint(p: &PodInfo, port: u16, full: bool) -> Endpoint {
    let mut e = Endpoint::addr(p.ip, port);
    if full {
        e.process = Some(p.process.clone());
        e.pid = Some(1000 + (mix(port as u64) % 5000) as u32);
        e.cgroup = Some(p.cgroup.clone());
        e.container_id = Some(p.container.clone());
    }
    e.pod_uid = Some(p.uid());
    e.pod = Some(p.pod.clone());
    e.namespace = Some(p.ns.clone());
    e.workload_kind = Some("Deployment".into());
    e.workload_name = Some(p.workload.clone());
    e.node = Some(p.node.clone());
    e.zone = Some(p.zone.clone());
    e.region = Some("us-east-1".into());
    e
}

/// Record `i` of the stream: 10-second windows, ~2,000 active socket pairs per window cluster-wide,
/// three quarters in-cluster, the rest to a few hundred external addresses.
pub fn record(pods: &[PodInfo], i: u64, batch: &str) -> FlowRecord {
    let window = i / 2000;
    let pair = mix(i % 2000 + 7);
    let local = &pods[(pair % pods.len() as u64) as usize];
    let ws = Timestamp::from_secs(1_760_000_000 + window as i64 * 10);
    let r = mix(i);
    let remote = if pair.is_multiple_of(4) {
        Endpoint::addr(IpAddr::V4(Ipv4Addr::new(52, 216, (pair >> 8) as u8 % 4, (pair >> 16) as u8)), 443)
    } else {
        endpoint(&pods[((pair >> 20) % pods.len() as u64) as usize], 8080, false)
    };
    let bytes_out = (r % 200_000) + 60;
    FlowRecord {
        window_start: ws,
        window_end: ws.add_micros(10_000_000),
        node: local.node.clone(),
        local: endpoint(local, 32768 + (pair % 28000) as u16, true),
        remote,
        proto: Proto::Tcp,
        ip_version: 4,
        initiator: Initiator::Local,
        bytes_out,
        bytes_in: (r >> 20) % 1_000_000,
        packets_out: bytes_out / 1400 + 1,
        packets_in: ((r >> 20) % 1_000_000) / 1400 + 1,
        connections_opened: (r >> 40) as u32 % 2,
        connections_closed: (r >> 41) as u32 % 2,
        batch_id: Some(batch.to_string()),
        source: Some(Source::Agent),
    }
}

/// Ingests `total` records in pulls of 100,000 (10 batches each), as `egressor pull` writes them:
/// each pull is sent to commit in the background and waited for after the next one is converted.
/// Returns the time spent ingesting.
///
/// Generating records costs more than ingesting them, and generating pull N+1 while pull N commits
/// would hide the commit; so two pulls' worth of records are generated once (untimed) and each pull
/// re-stamps one of them with its own windows and batch ids inside the timed part (`pull` itself
/// clones every record it receives to set those fields). Endpoints depend only on a record's place
/// in its window (`record`), so the stream is the same as generating every record.
pub fn ingest(ws: &mut Workspace, total: u64) -> Duration {
    ingest_with(ws, total, None)
}

/// [`ingest`] of the records as an agent sends them (addresses and pod UIDs, no names), named on
/// the way in by `enricher` as `egressor pull` does when given one.
#[allow(dead_code)]
pub fn ingest_unnamed(ws: &mut Workspace, total: u64, enricher: Option<&Enricher>) -> Duration {
    ingest_with(ws, total, Some(enricher))
}

fn ingest_with(ws: &mut Workspace, total: u64, unnamed: Option<Option<&Enricher>>) -> Duration {
    let per_pull: u64 = 100_000;
    let per_batch: u64 = 10_000;
    let pods = pods(300);
    let mut pool: Vec<FlowRecord> = (0..2 * per_pull).map(|i| record(&pods, i, "pool")).collect();
    if unnamed.is_some() {
        pool.iter_mut().for_each(strip_names);
    }
    let t0 = Instant::now();
    let mut pending = None;
    let mut done = 0u64;
    while done < total {
        let n = per_pull.min(total - done);
        let half = ((done / per_pull) % 2 * per_pull) as usize;
        let mut s = ws.begin_ingest("bench").expect("session");
        let mut batch_id = String::new();
        for (k, r) in pool[half..half + n as usize].iter_mut().enumerate() {
            let i = done + k as u64;
            if i.is_multiple_of(per_batch) {
                batch_id = format!("agent-bench-{:012}", i / per_batch);
            }
            r.window_start = Timestamp::from_secs(1_760_000_000 + (i / 2000) as i64 * 10);
            r.window_end = r.window_start.add_micros(10_000_000);
            r.batch_id = Some(batch_id.clone());
            match unnamed {
                // Naming works on a copy: the pool stays unnamed for its next use.
                Some(Some(e)) => {
                    let mut named = r.clone();
                    e.enrich(&mut named);
                    s.push(&named).expect("push");
                }
                _ => s.push(r).expect("push"),
            }
        }
        let sent = s.commit_in_background().expect("commit");
        if let Some(p) = pending.replace(sent) {
            ws.wait_ingest(p).expect("commit");
        }
        done += n;
    }
    if let Some(p) = pending {
        ws.wait_ingest(p).expect("commit");
    }
    t0.elapsed()
}

impl PodInfo {
    /// A UUID-shaped UID from the pod's (unique) name.
    fn uid(&self) -> String {
        let h = self
            .pod
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{:08x}-0000-4000-8000-{:012x}", mix(h) as u32, mix(h + 1) & 0xffff_ffff_ffff)
    }
}

/// What an agent knows of an end: its address, and its pod's UID when it is local.
fn strip_names(r: &mut FlowRecord) {
    for e in [&mut r.local, &mut r.remote] {
        e.pod = None;
        e.namespace = None;
        e.workload_kind = None;
        e.workload_name = None;
        e.node = None;
        e.zone = None;
        e.region = None;
    }
    r.remote.pod_uid = None;
}

/// The Kubernetes metadata behind the synthetic pods: what `pull` would have listed.
#[allow(dead_code)]
pub fn cluster_meta() -> ClusterMeta {
    let pods = pods(300);
    let mut meta = ClusterMeta::default();
    for p in &pods {
        let rs = format!("{}-7d9c8b6f5", p.workload);
        meta.pods.push(PodMeta {
            uid: p.uid(),
            namespace: p.ns.clone(),
            name: p.pod.clone(),
            node: Some(p.node.clone()),
            ips: vec![p.ip],
            owner: Some(OwnerRef { kind: "ReplicaSet".into(), name: rs.clone() }),
            template_hash: Some("7d9c8b6f5".into()),
            created: Timestamp::from_secs(1_700_000_000),
            deleted: None,
        });
        meta.owners.push(OwnerMeta {
            kind: "ReplicaSet".into(),
            namespace: p.ns.clone(),
            name: rs,
            owner: Some(OwnerRef { kind: "Deployment".into(), name: p.workload.clone() }),
        });
        if !meta.nodes.iter().any(|n| n.name == p.node) {
            meta.nodes.push(NodeMeta {
                name: p.node.clone(),
                zone: Some(p.zone.clone()),
                region: Some("us-east-1".into()),
                ips: Vec::new(),
            });
        }
    }
    meta
}
