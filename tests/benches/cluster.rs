//! Cluster benchmark: enrichment metadata for 5,000 pods on 500 nodes, from the lab's API server
//! (tests/it/lab/api.rs), through the production kube-rs client.
//!
//! Run: `cargo xtask bench cluster` (`EGRESSOR_BENCH_NODES`, `EGRESSOR_BENCH_PODS_PER_NODE` to
//! change the size). Each side runs in a child process of this binary, so its peak RSS is its own:
//! - `cli sync`: what `egressor pull` does before any flow: list Pods, ReplicaSets, Jobs,
//!   Deployments, StatefulSets, DaemonSets, CronJobs, Services, EndpointSlices and Nodes once,
//!   cluster-wide, and build the enrichment index (time to first sync, peak RSS);
//! - `agent watches`: every node's agent watch (`fieldSelector=spec.nodeName=<node>`), all 500 in
//!   one process: time until every watch has its node's pods, memory per watch, and the requests
//!   the API server served for them (its request log).

#[path = "../it/lab/api.rs"]
#[allow(dead_code, unused_imports)]
mod api;
#[path = "../it/lab/http.rs"]
#[allow(dead_code)]
mod http;

use egressor::cluster::watch::{PodLog, watch_node_pods};
use egressor::engines::enrich::Enricher;
use egressor::model::Timestamp;
use serde_json::json;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    match std::env::var("EGRESSOR_BENCH_CHILD").as_deref() {
        Ok("cli") => return cli_child(),
        Ok("agents") => return agents_child(),
        _ => {}
    }
    let nodes = env_or("EGRESSOR_BENCH_NODES", 500);
    let per_node = env_or("EGRESSOR_BENCH_PODS_PER_NODE", 10);
    let api = api::ApiServer::start();
    populate(&api, nodes, per_node);
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kc, api::ADMIN_TOKEN, "lab");
    println!("cluster               {nodes} nodes, {} pods, {} services", nodes * per_node, nodes);
    let out = child("cli", &kc, nodes);
    print!("{out}");
    let before = api.requests().len();
    let out = child("agents", &kc, nodes);
    print!("{out}");
    let reqs: Vec<_> = api.requests().into_iter().skip(before).collect();
    let lists = reqs.iter().filter(|r| r.path == "/api/v1/pods" && !r.is_watch()).count();
    let watches = reqs.iter().filter(|r| r.path == "/api/v1/pods" && r.is_watch()).count();
    println!(
        "agent requests        {lists} lists + {watches} watches for {nodes} nodes ({:.2} per node)",
        (lists + watches) as f64 / nodes as f64
    );
}

/// 500 nodes in three zones; per node `per_node` pods of Deployments (one ReplicaSet each), each
/// Deployment behind a Service with an EndpointSlice.
fn populate(api: &api::ApiServer, nodes: usize, per_node: usize) {
    for n in 0..nodes {
        let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][n % 3];
        api.put(&json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{n}"), "labels": {
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": "us-east-1"}},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("10.{}.{}.1", n / 250, n % 250)}]}}));
    }
    let deployments = nodes;
    for d in 0..deployments {
        let ns = format!("team-{}", d % 20);
        api.put(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        api.put(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("svc-{d}"), "namespace": ns}}));
        api.put(&json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("svc-{d}-5d8f9c"), "namespace": ns,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("svc-{d}"), "uid": format!("d-{d}"), "controller": true}]}}));
        api.put(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{d}"), "namespace": ns},
            "spec": {"clusterIP": format!("172.20.{}.{}", d / 250, d % 250 + 1), "ports": [{"port": 80}]}}));
    }
    let mut endpoints: Vec<Vec<serde_json::Value>> = vec![Vec::new(); deployments];
    for i in 0..nodes * per_node {
        let (node, d) = (i / per_node, i % deployments);
        let ns = format!("team-{}", d % 20);
        let name = format!("svc-{d}-5d8f9c-{i:05}");
        let ip = format!("100.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
        let pod = api.put(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"pod-template-hash": "5d8f9c"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("svc-{d}-5d8f9c"), "uid": format!("rs-{d}"), "controller": true}]},
            "spec": {"nodeName": format!("node-{node}"), "containers": [{"name": "main", "image": "app"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}));
        endpoints[d].push(json!({"addresses": [ip], "nodeName": format!("node-{node}"),
            "targetRef": {"kind": "Pod", "namespace": ns, "name": name, "uid": pod["metadata"]["uid"]}}));
    }
    for (d, eps) in endpoints.into_iter().enumerate() {
        api.put(&json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc-{d}-abcde"), "namespace": format!("team-{}", d % 20),
                "labels": {"kubernetes.io/service-name": format!("svc-{d}")}},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"port": 8080}]}));
    }
}

fn child(which: &str, kubeconfig: &std::path::Path, nodes: usize) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("EGRESSOR_BENCH_CHILD", which)
        .env("EGRESSOR_BENCH_NODES", nodes.to_string())
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run the benchmark child");
    assert!(out.status.success(), "{which}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `pull`'s metadata step, timed: connect, list everything, index it.
fn cli_child() {
    let rss0 = peak_rss_mib();
    let t0 = Instant::now();
    let cluster = egressor::cluster::connect(None).expect("connect");
    let meta = egressor::cluster::metadata::list(&cluster, Timestamp::now()).expect("list");
    let listed = t0.elapsed();
    let enricher = Enricher::new(&meta);
    let total = t0.elapsed();
    assert!(!enricher.is_empty());
    println!(
        "cli sync              {:.3} s to list ({} pods, {} owners, {} services, {} nodes), {:.3} s with the index; peak RSS {:.1} MiB (process start {:.1} MiB)",
        listed.as_secs_f64(),
        meta.pods.len(),
        meta.owners.len(),
        meta.services.len(),
        meta.nodes.len(),
        total.as_secs_f64(),
        peak_rss_mib(),
        rss0
    );
}

/// Every node's agent watch in one process: time to first sync of all of them.
fn agents_child() {
    let nodes = env_or("EGRESSOR_BENCH_NODES", 500);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rss0 = peak_rss_mib();
    rt.block_on(async {
        let cfg = kube::Config::infer().await.expect("kubeconfig");
        let client = kube::Client::try_from(cfg).expect("client");
        let logs: Vec<Arc<Mutex<PodLog>>> = (0..nodes).map(|_| Arc::new(Mutex::new(PodLog::default()))).collect();
        let t0 = Instant::now();
        for (n, log) in logs.iter().enumerate() {
            tokio::spawn(watch_node_pods(client.clone(), format!("node-{n}"), log.clone()));
        }
        loop {
            let synced = logs.iter().filter(|l| !l.lock().unwrap().pods.is_empty()).count();
            if synced == nodes {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(300), "only {synced} of {nodes} watches synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pods: usize = logs.iter().map(|l| l.lock().unwrap().pods.len()).sum();
        println!(
            "agent watches         {nodes} watches synced {pods} pods in {:.3} s; peak RSS {:.1} MiB ({:.1} KiB per watch over the process start {:.1} MiB)",
            t0.elapsed().as_secs_f64(),
            peak_rss_mib(),
            (peak_rss_mib() - rss0) * 1024.0 / nodes as f64,
            rss0
        );
    });
}
