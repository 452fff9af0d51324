//! What the Kubernetes API says about the cluster, reduced to what names a flow's ends: pods (with
//! the time range each owned its IPs), the owners above them, Services and their endpoints, nodes
//! and their zones. The cluster module fills these from the API; the workspace keeps them; the
//! enrichment engine joins them to flow records.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `kind` + `name` of an owner reference (`ReplicaSet` `checkout-7d9f`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodMeta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    /// The pod's own IPs; empty for host-network pods (their address is the node's).
    pub ips: Vec<IpAddr>,
    /// The controller owner reference.
    pub owner: Option<OwnerRef>,
    /// The `pod-template-hash` label: names the Deployment of a ReplicaSet no longer listed.
    pub template_hash: Option<String>,
    pub created: Timestamp,
    /// When it was deleted (deletionTimestamp or when a watch saw it go); `None` while it lives.
    pub deleted: Option<Timestamp>,
}

/// A ReplicaSet or Job and its own controller (Deployment, CronJob), or a top-level workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerMeta {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<OwnerRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMeta {
    pub namespace: String,
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    pub created: Timestamp,
    /// Pods behind it (from its EndpointSlices' target references).
    pub endpoint_pods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub name: String,
    /// `topology.kubernetes.io/zone`.
    pub zone: Option<String>,
    /// `topology.kubernetes.io/region`.
    pub region: Option<String>,
    /// InternalIP and ExternalIP addresses.
    pub ips: Vec<IpAddr>,
}

/// Everything known at one time; the workspace merges successive ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub pods: Vec<PodMeta>,
    pub owners: Vec<OwnerMeta>,
    pub services: Vec<ServiceMeta>,
    pub nodes: Vec<NodeMeta>,
}

impl ClusterMeta {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.owners.is_empty() && self.services.is_empty() && self.nodes.is_empty()
    }
}
