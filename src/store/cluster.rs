//! What the Kubernetes API said, kept over time (docs/adr/0009-cluster-attach-and-enrichment.md):
//! one row per object in `k8s_objects`, its model form as JSON, with when it was first and last
//! seen. Pods are never forgotten when they go: their IPs' past owners name past flows.

use super::Workspace;
use crate::model::Timestamp;
use crate::model::k8s::{ClusterMeta, PodMeta};
use anyhow::{Context, Result};
use duckdb::params;
use std::collections::HashMap;

pub(crate) const CREATE_SQL: &str = "
CREATE TABLE k8s_objects (
    kind VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    PRIMARY KEY (kind, key)
);";

impl Workspace {
    /// Merges `meta`, seen at `seen`, into what the workspace knows, in one transaction.
    pub fn save_cluster_meta(&mut self, meta: &ClusterMeta, seen: Timestamp) -> Result<()> {
        let known: HashMap<String, PodMeta> =
            self.cluster_meta()?.pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT INTO k8s_objects VALUES (?, ?, ?, make_timestamp(?), make_timestamp(?))
                 ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, last_seen = excluded.last_seen",
            )?;
            let mut put = |kind: &str, key: String, body: String| -> Result<()> {
                st.execute(params![kind, key, body, seen.micros(), seen.micros()])?;
                Ok(())
            };
            for p in &meta.pods {
                let merged = merge_pod(known.get(&p.uid), p);
                put("Pod", p.uid.clone(), serde_json::to_string(&merged)?)?;
            }
            for o in &meta.owners {
                put("Owner", format!("{}/{}/{}", o.kind, o.namespace, o.name), serde_json::to_string(o)?)?;
            }
            for s in &meta.services {
                put("Service", format!("{}/{}", s.namespace, s.name), serde_json::to_string(s)?)?;
            }
            for n in &meta.nodes {
                put("Node", n.name.clone(), serde_json::to_string(n)?)?;
            }
        }
        tx.commit().context("storing the cluster's metadata")?;
        Ok(())
    }

    /// Everything the workspace knows about the cluster (empty when it never saw one).
    pub fn cluster_meta(&self) -> Result<ClusterMeta> {
        let mut meta = ClusterMeta::default();
        let mut st = self.conn.prepare("SELECT kind, key, body FROM k8s_objects ORDER BY kind, key")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (kind, key, body): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let bad = || format!("the workspace's stored {kind} {key} cannot be read");
            match kind.as_str() {
                "Pod" => meta.pods.push(serde_json::from_str(&body).with_context(bad)?),
                "Owner" => meta.owners.push(serde_json::from_str(&body).with_context(bad)?),
                "Service" => meta.services.push(serde_json::from_str(&body).with_context(bad)?),
                "Node" => meta.nodes.push(serde_json::from_str(&body).with_context(bad)?),
                _ => {}
            }
        }
        Ok(meta)
    }
}

/// A pod seen again: the earliest creation and any deletion either report knows stay.
fn merge_pod(old: Option<&PodMeta>, new: &PodMeta) -> PodMeta {
    let mut p = new.clone();
    if let Some(o) = old {
        p.created = p.created.min(o.created);
        p.deleted = match (o.deleted, new.deleted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if p.ips.is_empty() {
            p.ips = o.ips.clone();
        }
        if p.node.is_none() {
            p.node = o.node.clone();
        }
    }
    p
}
