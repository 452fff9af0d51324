//! The cluster's metadata as [`ClusterMeta`]: one list of each kind, cluster-wide, at pull time
//! (Pods, ReplicaSets, Jobs, Deployments, StatefulSets, DaemonSets, CronJobs, Services,
//! EndpointSlices, Nodes), and the conversion of a Pod that the agents' watches also use.

use super::Cluster;
use super::errors::{self, ATTACH};
use crate::model::Timestamp;
use crate::model::k8s::{ClusterMeta, NodeMeta, OwnerMeta, OwnerRef, PodMeta, ServiceMeta};
use anyhow::Result;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::IpAddr;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// Lists every kind once. `now` stands in for a missing creation time.
pub fn list(cluster: &Cluster, now: Timestamp) -> Result<ClusterMeta> {
    let pods: Vec<Pod> = list_all(cluster, "pods")?;
    let mut owners = Vec::new();
    owners.extend(
        list_all::<ReplicaSet>(cluster, "replicasets")?.iter().map(|o| owner("ReplicaSet", &o.metadata)),
    );
    owners.extend(list_all::<Job>(cluster, "jobs")?.iter().map(|o| owner("Job", &o.metadata)));
    owners.extend(
        list_all::<Deployment>(cluster, "deployments")?.iter().map(|o| owner("Deployment", &o.metadata)),
    );
    owners.extend(
        list_all::<StatefulSet>(cluster, "statefulsets")?.iter().map(|o| owner("StatefulSet", &o.metadata)),
    );
    owners.extend(
        list_all::<DaemonSet>(cluster, "daemonsets")?.iter().map(|o| owner("DaemonSet", &o.metadata)),
    );
    owners.extend(list_all::<CronJob>(cluster, "cronjobs")?.iter().map(|o| owner("CronJob", &o.metadata)));
    let slices: Vec<EndpointSlice> = list_all(cluster, "endpointslices")?;
    let services: Vec<Service> = list_all(cluster, "services")?;
    let nodes: Vec<Node> = list_all(cluster, "nodes")?;
    Ok(ClusterMeta {
        pods: pods.iter().filter_map(|p| pod_meta(p, now)).collect(),
        owners,
        services: service_metas(&services, &slices, now),
        nodes: nodes.iter().map(node_meta).collect(),
    })
}

fn list_all<K>(cluster: &Cluster, what: &str) -> Result<Vec<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(cluster.client.clone());
    let list = cluster
        .block_on(api.list(&ListParams::default()))
        .map_err(|e| errors::explain(cluster, &format!("list {what}"), "pull", ATTACH, e))?;
    Ok(list.items)
}

fn time(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| Timestamp::from_micros(t.0.as_microsecond()))
}

fn controller(m: &ObjectMeta) -> Option<OwnerRef> {
    let refs = m.owner_references.as_ref()?;
    let r = refs.iter().find(|r| r.controller == Some(true)).or(refs.first())?;
    Some(OwnerRef { kind: r.kind.clone(), name: r.name.clone() })
}

fn owner(kind: &str, m: &ObjectMeta) -> OwnerMeta {
    OwnerMeta {
        kind: kind.into(),
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        owner: controller(m),
    }
}

/// A Pod as enrichment needs it; `None` without a UID (never from a real API server).
pub fn pod_meta(p: &Pod, now: Timestamp) -> Option<PodMeta> {
    let m = &p.metadata;
    let spec = p.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let ips: Vec<IpAddr> = if host_network {
        Vec::new()
    } else {
        let status = p.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|v| v.iter().filter_map(|i| i.ip.parse().ok()).collect())
            .unwrap_or_default();
        if ips.is_empty()
            && let Some(ip) = status.and_then(|s| s.pod_ip.as_ref()).and_then(|i| i.parse().ok())
        {
            ips.push(ip);
        }
        ips
    };
    Some(PodMeta {
        uid: m.uid.clone()?,
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ips,
        owner: controller(m),
        template_hash: m.labels.as_ref().and_then(|l| l.get("pod-template-hash").cloned()),
        created: time(&m.creation_timestamp).unwrap_or(now),
        deleted: time(&m.deletion_timestamp),
    })
}

fn service_metas(services: &[Service], slices: &[EndpointSlice], now: Timestamp) -> Vec<ServiceMeta> {
    // EndpointSlices name their Service in the `kubernetes.io/service-name` label.
    let mut pods_of: HashMap<(String, String), Vec<String>> = HashMap::new();
    for s in slices {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")) else {
            continue;
        };
        let uids = s.endpoints.iter().filter_map(|e| e.target_ref.as_ref()?.uid.clone());
        pods_of.entry((ns, svc.clone())).or_default().extend(uids);
    }
    services
        .iter()
        .map(|s| {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            let spec = s.spec.as_ref();
            let mut ips: Vec<String> = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
            if ips.is_empty()
                && let Some(ip) = spec.and_then(|s| s.cluster_ip.clone())
            {
                ips.push(ip);
            }
            let mut endpoint_pods = pods_of.remove(&(ns.clone(), name.clone())).unwrap_or_default();
            endpoint_pods.sort();
            endpoint_pods.dedup();
            ServiceMeta {
                namespace: ns,
                name,
                // "None" for headless Services.
                cluster_ips: ips.iter().filter_map(|i| i.parse().ok()).collect(),
                created: time(&s.metadata.creation_timestamp).unwrap_or(now),
                endpoint_pods,
            }
        })
        .collect()
}

fn node_meta(n: &Node) -> NodeMeta {
    let label = |k: &str| n.metadata.labels.as_ref().and_then(|l| l.get(k).cloned());
    let ips = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter().filter(|a| a.type_.ends_with("IP")).filter_map(|a| a.address.parse().ok()).collect()
        })
        .unwrap_or_default();
    NodeMeta {
        name: n.metadata.name.clone().unwrap_or_default(),
        zone: label(ZONE_LABEL),
        region: label(REGION_LABEL),
        ips,
    }
}
