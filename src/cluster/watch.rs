//! The agent's watch of its own node's pods (ADR 0009): a list and then a watch with
//! `fieldSelector=spec.nodeName=<node>`, relisting after a 410 (kube-runtime's watcher), so that
//! a pod living 20 seconds between two pulls is still named. The lifetimes it sees go into a
//! [`PodLog`] the agent serves at `GET /v1/pods`.

use super::metadata::pod_meta;
use crate::model::Timestamp;
use crate::model::k8s::PodMeta;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// How long a deleted pod stays in the log: longer than any sane interval between pulls.
const KEEP_DELETED_DAYS: i64 = 7;

/// Every pod of the node seen alive within [`KEEP_DELETED_DAYS`], by UID.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PodLog {
    pub pods: BTreeMap<String, PodMeta>,
    /// Changed since it was last saved.
    #[serde(skip)]
    pub dirty: bool,
}

impl PodLog {
    fn seen(&mut self, p: PodMeta) {
        let merged = match self.pods.get(&p.uid) {
            Some(old) => {
                PodMeta { created: old.created.min(p.created), deleted: p.deleted.or(old.deleted), ..p }
            }
            None => p,
        };
        if self.pods.get(&merged.uid) != Some(&merged) {
            self.pods.insert(merged.uid.clone(), merged);
            self.dirty = true;
        }
    }

    fn gone(&mut self, uid: &str, at: Timestamp) {
        if let Some(p) = self.pods.get_mut(uid)
            && p.deleted.is_none()
        {
            p.deleted = Some(at);
            self.dirty = true;
        }
    }

    /// After a (re)list: pods the log thinks alive that the list did not have went while nobody
    /// was watching; they end now.
    fn relisted(&mut self, listed: &BTreeSet<String>, now: Timestamp) {
        let vanished: Vec<String> = self
            .pods
            .values()
            .filter(|p| p.deleted.is_none() && !listed.contains(&p.uid))
            .map(|p| p.uid.clone())
            .collect();
        for uid in vanished {
            self.gone(&uid, now);
        }
    }

    /// Forgets pods deleted more than [`KEEP_DELETED_DAYS`] before `now`.
    pub fn prune(&mut self, now: Timestamp) {
        let cut = now.micros() - KEEP_DELETED_DAYS * 86_400_000_000;
        let before = self.pods.len();
        self.pods.retain(|_, p| p.deleted.is_none_or(|d| d.micros() >= cut));
        self.dirty |= self.pods.len() != before;
    }
}

/// A kube client from the agent's environment: the pod's service account in a cluster, or
/// `KUBECONFIG` (the test lab). `None` when there is neither: the agent runs outside Kubernetes.
pub async fn agent_client() -> Option<kube::Client> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let kubeconfig = std::env::var_os("KUBECONFIG").is_some();
    if !in_cluster && !kubeconfig {
        return None;
    }
    match kube::Config::infer().await.map(kube::Client::try_from) {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::warn!("pod watch off: cannot build a Kubernetes client: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("pod watch off: no usable Kubernetes configuration: {e}");
            None
        }
    }
}

/// Watches `node`'s pods into `log` until the task is dropped. Errors (a 403, the API server
/// away) are logged and retried with backoff; the log keeps what it had.
pub async fn watch_node_pods(client: kube::Client, node: String, log: Arc<Mutex<PodLog>>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Option<BTreeSet<String>> = None;
    while let Some(event) = events.next().await {
        let now = Timestamp::now();
        match event {
            Ok(Event::Init) => listing = Some(BTreeSet::new()),
            Ok(Event::InitApply(p)) => {
                if let (Some(m), Some(l)) = (pod_meta(&p, now), listing.as_mut()) {
                    l.insert(m.uid.clone());
                    log.lock().expect("pod log").seen(m);
                }
            }
            Ok(Event::InitDone) => {
                if let Some(l) = listing.take() {
                    log.lock().expect("pod log").relisted(&l, now);
                }
            }
            Ok(Event::Apply(p)) => {
                if let Some(m) = pod_meta(&p, now) {
                    log.lock().expect("pod log").seen(m);
                }
            }
            Ok(Event::Delete(p)) => {
                if let Some(m) = pod_meta(&p, now) {
                    let at = m.deleted.unwrap_or(now);
                    let mut l = log.lock().expect("pod log");
                    l.seen(m.clone());
                    l.gone(&m.uid, at);
                }
            }
            Err(e) => tracing::warn!("watching the pods of node {node}: {e} (retrying)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            namespace: "ns".into(),
            name: uid.into(),
            node: Some("n".into()),
            ips: vec!["10.0.0.1".parse().unwrap()],
            owner: None,
            template_hash: None,
            created: Timestamp::from_micros(1_000_000),
            deleted: None,
        }
    }

    #[test]
    fn pods_gone_while_unwatched_end_at_the_relist_and_old_ones_are_pruned() {
        let mut log = PodLog::default();
        log.seen(pod("a"));
        log.seen(pod("b"));
        let now = Timestamp::from_micros(5_000_000);
        log.relisted(&BTreeSet::from(["a".to_string()]), now);
        assert_eq!(log.pods["a"].deleted, None);
        assert_eq!(log.pods["b"].deleted, Some(now));
        // A deletion stays when the pod is seen again (a late event), and is kept 7 days.
        log.seen(pod("b"));
        assert_eq!(log.pods["b"].deleted, Some(now));
        log.prune(Timestamp::from_micros(now.micros() + 8 * 86_400_000_000));
        assert!(log.pods.contains_key("a") && !log.pods.contains_key("b"));
    }
}
