//! Names a flow record's ends from what the Kubernetes API said (ADR 0009): the local end by the pod
//! UID the agent read from its cgroup, the remote end by its address *at the record's time* (pod
//! IPs are reused: an IP belongs to a pod only from its creation until it is deleted or the next
//! pod with that IP was created), a ClusterIP as its Service, a node address as its node; zone and
//! region from the node's topology labels. Fields a record already carries are kept.

use crate::model::k8s::{ClusterMeta, OwnerRef, PodMeta};
use crate::model::{Endpoint, FlowRecord, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;

/// A pod's names as a flow end shows them.
#[derive(Debug, Clone, PartialEq)]
struct PodNames {
    pod: String,
    namespace: String,
    workload_kind: String,
    workload_name: String,
    service: Option<String>,
    node: Option<String>,
}

/// One owner of an address over time: `[from, until)`.
#[derive(Debug, Clone)]
struct Tenure {
    from: Timestamp,
    until: Option<Timestamp>,
    uid: String,
}

/// A Service as a remote end: its name, and what all of its endpoint pods share (the workload
/// behind a Service is usually one Deployment; its node when there is one endpoint).
#[derive(Debug, Clone, Default)]
struct ServiceNames {
    namespace: String,
    name: String,
    workload: Option<(String, String)>,
    node: Option<String>,
}

#[derive(Debug, Default)]
pub struct Enricher {
    pods: HashMap<String, PodNames>,
    ip_owners: HashMap<IpAddr, Vec<Tenure>>,
    services: HashMap<IpAddr, ServiceNames>,
    node_ips: HashMap<IpAddr, String>,
    node_places: HashMap<String, (Option<String>, Option<String>)>,
}

impl Enricher {
    pub fn new(meta: &ClusterMeta) -> Self {
        let owners: HashMap<(&str, &str, &str), &Option<OwnerRef>> = meta
            .owners
            .iter()
            .map(|o| ((o.kind.as_str(), o.namespace.as_str(), o.name.as_str()), &o.owner))
            .collect();
        let mut service_of: HashMap<&str, String> = HashMap::new();
        let mut sorted_services: Vec<_> = meta.services.iter().collect();
        sorted_services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for s in &sorted_services {
            for uid in &s.endpoint_pods {
                service_of.entry(uid.as_str()).or_insert_with(|| s.name.clone());
            }
        }
        let mut e = Enricher::default();
        for p in &meta.pods {
            let (workload_kind, workload_name) = workload_of(p, &owners);
            e.pods.insert(
                p.uid.clone(),
                PodNames {
                    pod: p.name.clone(),
                    namespace: p.namespace.clone(),
                    workload_kind,
                    workload_name,
                    service: service_of.get(p.uid.as_str()).cloned(),
                    node: p.node.clone(),
                },
            );
        }
        e.ip_owners = tenures(&meta.pods);
        for s in sorted_services {
            let names = e.service_names(s);
            for ip in &s.cluster_ips {
                e.services.insert(ip.to_canonical(), names.clone());
            }
        }
        for n in &meta.nodes {
            for ip in &n.ips {
                e.node_ips.insert(ip.to_canonical(), n.name.clone());
            }
            e.node_places.insert(n.name.clone(), (n.zone.clone(), n.region.clone()));
        }
        e
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.services.is_empty() && self.node_places.is_empty()
    }

    /// Fills in what is known about both ends of `r`.
    pub fn enrich(&self, r: &mut FlowRecord) {
        if let Some(uid) = r.local.pod_uid.clone() {
            self.name_pod(&mut r.local, &uid);
        }
        // The local end is on the reporting node; its zone comes from that node's labels (the
        // record's `node` field, not a copy of it in every endpoint).
        let local_node = r.local.node.as_deref().unwrap_or(&r.node);
        let (zone, region) = self.node_places.get(local_node).cloned().unwrap_or_default();
        if r.local.zone.is_none() {
            r.local.zone = zone;
        }
        if r.local.region.is_none() {
            r.local.region = region;
        }
        self.name_remote(&mut r.remote, r.window_start, r.window_end);
        self.place(&mut r.remote);
    }

    fn name_remote(&self, e: &mut Endpoint, start: Timestamp, end: Timestamp) {
        let ip = e.ip.to_canonical();
        if let Some(uid) = self.owner_during(ip, start, end) {
            if e.pod_uid.is_none() {
                e.pod_uid = Some(uid.to_string());
            }
            self.name_pod(e, uid);
        } else if let Some(s) = self.services.get(&ip) {
            e.namespace.get_or_insert_with(|| s.namespace.clone());
            e.service.get_or_insert_with(|| s.name.clone());
            if let Some((kind, name)) = &s.workload {
                e.workload_kind.get_or_insert_with(|| kind.clone());
                e.workload_name.get_or_insert_with(|| name.clone());
            }
            if let Some(n) = &s.node {
                e.node.get_or_insert_with(|| n.clone());
            }
        } else if let Some(node) = self.node_ips.get(&ip) {
            e.node.get_or_insert_with(|| node.clone());
        }
    }

    fn name_pod(&self, e: &mut Endpoint, uid: &str) {
        let Some(p) = self.pods.get(uid) else { return };
        e.pod.get_or_insert_with(|| p.pod.clone());
        e.namespace.get_or_insert_with(|| p.namespace.clone());
        e.workload_kind.get_or_insert_with(|| p.workload_kind.clone());
        e.workload_name.get_or_insert_with(|| p.workload_name.clone());
        if let Some(s) = &p.service {
            e.service.get_or_insert_with(|| s.clone());
        }
        if let Some(n) = &p.node {
            e.node.get_or_insert_with(|| n.clone());
        }
    }

    /// Zone and region of the end's node, from the node's labels.
    fn place(&self, e: &mut Endpoint) {
        let Some((zone, region)) = e.node.as_ref().and_then(|n| self.node_places.get(n)) else { return };
        if e.zone.is_none() {
            e.zone = zone.clone();
        }
        if e.region.is_none() {
            e.region = region.clone();
        }
    }

    /// What a Service's endpoint pods have in common.
    fn service_names(&self, s: &crate::model::k8s::ServiceMeta) -> ServiceNames {
        let pods: Vec<&PodNames> = s.endpoint_pods.iter().filter_map(|u| self.pods.get(u)).collect();
        let same = |f: &dyn Fn(&PodNames) -> Option<String>| -> Option<String> {
            let first = f(pods.first()?)?;
            pods.iter().all(|p| f(p).as_ref() == Some(&first)).then_some(first)
        };
        let kind = same(&|p| Some(p.workload_kind.clone()));
        let name = same(&|p| Some(p.workload_name.clone()));
        ServiceNames {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            workload: kind.zip(name),
            node: same(&|p| p.node.clone()),
        }
    }

    /// The pod that had `ip` during `[start, end]`: the one whose tenure covers most of the window
    /// (a window can straddle a handover of the address; agent windows are seconds long).
    fn owner_during(&self, ip: IpAddr, start: Timestamp, end: Timestamp) -> Option<&str> {
        let list = self.ip_owners.get(&ip)?;
        let mut best: Option<(i64, &Tenure)> = None;
        for t in list {
            let from = t.from.max(start);
            let until = t.until.map_or(end, |u| u.min(end));
            let covers = if start == end {
                t.from <= start && t.until.is_none_or(|u| start < u)
            } else {
                from < until
            };
            if covers {
                let overlap = until.micros() - from.micros();
                if best.is_none_or(|(b, _)| overlap >= b) {
                    best = Some((overlap, t));
                }
            }
        }
        best.map(|(_, t)| t.uid.as_str())
    }
}

/// Deployment above a ReplicaSet, CronJob above a Job; the controller itself otherwise; the pod
/// when nothing controls it.
fn workload_of(p: &PodMeta, owners: &HashMap<(&str, &str, &str), &Option<OwnerRef>>) -> (String, String) {
    let Some(o) = &p.owner else { return ("Pod".into(), p.name.clone()) };
    if let Some(Some(up)) = owners.get(&(o.kind.as_str(), p.namespace.as_str(), o.name.as_str())) {
        return (up.kind.clone(), up.name.clone());
    }
    // A ReplicaSet no longer listed is `<deployment>-<pod-template-hash>`.
    if o.kind == "ReplicaSet"
        && let Some(h) = &p.template_hash
        && let Some(d) = o.name.strip_suffix(&format!("-{h}"))
        && !owners.contains_key(&(o.kind.as_str(), p.namespace.as_str(), o.name.as_str()))
    {
        return ("Deployment".into(), d.to_string());
    }
    (o.kind.clone(), o.name.clone())
}

/// Each IP's owners in time order; a tenure ends at its pod's deletion or when the next pod with
/// the IP was created, whichever is first.
fn tenures(pods: &[PodMeta]) -> HashMap<IpAddr, Vec<Tenure>> {
    let mut by_ip: HashMap<IpAddr, Vec<Tenure>> = HashMap::new();
    for p in pods {
        for ip in &p.ips {
            by_ip.entry(ip.to_canonical()).or_default().push(Tenure {
                from: p.created,
                until: p.deleted,
                uid: p.uid.clone(),
            });
        }
    }
    for list in by_ip.values_mut() {
        list.sort_by(|a, b| a.from.cmp(&b.from).then(a.uid.cmp(&b.uid)));
        for i in 1..list.len() {
            let next = list[i].from;
            let prev = &mut list[i - 1];
            prev.until = Some(prev.until.map_or(next, |u| u.min(next)));
        }
    }
    by_ip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::k8s::{NodeMeta, OwnerMeta, ServiceMeta};
    use crate::model::{Initiator, Proto};

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn pod(uid: &str, name: &str, ip: &str, node: &str, created: &str, deleted: Option<&str>) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            namespace: "shop".into(),
            name: name.into(),
            node: Some(node.into()),
            ips: vec![ip.parse().unwrap()],
            owner: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: format!("{}-5d8f", &name[..name.rfind('-').unwrap()]),
            }),
            template_hash: Some("5d8f".into()),
            created: t(created),
            deleted: deleted.map(t),
        }
    }

    fn meta() -> ClusterMeta {
        ClusterMeta {
            pods: vec![
                pod("u-checkout", "checkout-abc", "10.0.1.5", "node-1", "2026-11-20T10:00:00Z", None),
                pod(
                    "u-pay-old",
                    "payments-old",
                    "10.0.2.7",
                    "node-2",
                    "2026-11-20T09:00:00Z",
                    Some("2026-11-20T11:00:00Z"),
                ),
                pod("u-cart", "cart-new", "10.0.2.7", "node-2", "2026-11-20T11:00:05Z", None),
            ],
            owners: vec![OwnerMeta {
                kind: "ReplicaSet".into(),
                namespace: "shop".into(),
                name: "checkout-5d8f".into(),
                owner: Some(OwnerRef { kind: "Deployment".into(), name: "checkout".into() }),
            }],
            services: vec![ServiceMeta {
                namespace: "shop".into(),
                name: "payments".into(),
                cluster_ips: vec!["10.96.0.20".parse().unwrap()],
                created: t("2026-11-01T00:00:00Z"),
                endpoint_pods: vec!["u-pay-old".into()],
            }],
            nodes: vec![
                NodeMeta {
                    name: "node-1".into(),
                    zone: Some("us-east-1a".into()),
                    region: Some("us-east-1".into()),
                    ips: vec!["192.168.0.1".parse().unwrap()],
                },
                NodeMeta {
                    name: "node-2".into(),
                    zone: Some("us-east-1b".into()),
                    region: Some("us-east-1".into()),
                    ips: vec!["192.168.0.2".parse().unwrap()],
                },
            ],
        }
    }

    fn record(at: &str, local_uid: Option<&str>, remote: &str) -> FlowRecord {
        let mut local = Endpoint::addr("10.0.1.5".parse().unwrap(), 40000);
        local.pod_uid = local_uid.map(str::to_string);
        FlowRecord {
            window_start: t(at),
            window_end: t(at),
            node: "node-1".into(),
            local,
            remote: Endpoint::addr(remote.parse().unwrap(), 8080),
            proto: Proto::Tcp,
            ip_version: 4,
            initiator: Initiator::Local,
            bytes_out: 1,
            bytes_in: 1,
            packets_out: 1,
            packets_in: 1,
            connections_opened: 0,
            connections_closed: 0,
            batch_id: None,
            source: None,
        }
    }

    #[test]
    fn local_pod_gets_its_deployment_and_zone() {
        let e = Enricher::new(&meta());
        let mut r = record("2026-11-20T10:30:00Z", Some("u-checkout"), "10.96.0.20");
        e.enrich(&mut r);
        assert_eq!(r.local.pod.as_deref(), Some("checkout-abc"));
        assert_eq!(
            (r.local.workload_kind.as_deref(), r.local.workload_name.as_deref()),
            (Some("Deployment"), Some("checkout"))
        );
        assert_eq!(r.local.zone.as_deref(), Some("us-east-1a"));
        // A ClusterIP is its Service, and what its one endpoint pod is: workload, node, zone.
        assert_eq!(
            (r.remote.namespace.as_deref(), r.remote.service.as_deref()),
            (Some("shop"), Some("payments"))
        );
        assert_eq!(r.remote.workload_name.as_deref(), Some("payments"));
        assert_eq!(r.remote.node.as_deref(), Some("node-2"));
        assert_eq!(r.remote.zone.as_deref(), Some("us-east-1b"));
    }

    #[test]
    fn a_reused_ip_belongs_to_the_pod_that_had_it_then() {
        let e = Enricher::new(&meta());
        let mut before = record("2026-11-20T10:59:59Z", None, "10.0.2.7");
        e.enrich(&mut before);
        assert_eq!(before.remote.pod.as_deref(), Some("payments-old"));
        assert_eq!(before.remote.service.as_deref(), Some("payments"));
        assert_eq!(before.remote.node.as_deref(), Some("node-2"));
        assert_eq!(before.remote.zone.as_deref(), Some("us-east-1b"));
        let mut gap = record("2026-11-20T11:00:02Z", None, "10.0.2.7");
        e.enrich(&mut gap);
        assert_eq!(gap.remote.pod, None, "between deletion and the next pod the IP is nobody's");
        let mut after = record("2026-11-20T11:30:00Z", None, "10.0.2.7");
        e.enrich(&mut after);
        assert_eq!(after.remote.pod.as_deref(), Some("cart-new"));
        // Its ReplicaSet was never listed: the Deployment is read from the pod-template-hash.
        assert_eq!(after.remote.workload_name.as_deref(), Some("cart"));
        assert_eq!(after.remote.workload_kind.as_deref(), Some("Deployment"));
    }

    #[test]
    fn a_window_straddling_a_handover_goes_to_the_pod_that_had_the_ip_longer() {
        let e = Enricher::new(&meta());
        let mut r = record("2026-11-20T10:59:58Z", None, "10.0.2.7");
        r.window_end = t("2026-11-20T11:00:08Z");
        e.enrich(&mut r);
        assert_eq!(r.remote.pod.as_deref(), Some("cart-new"), "3 s of cart against 2 s of payments");
        let mut r = record("2026-11-20T10:59:55Z", None, "10.0.2.7");
        r.window_end = t("2026-11-20T11:00:06Z");
        e.enrich(&mut r);
        assert_eq!(r.remote.pod.as_deref(), Some("payments-old"), "5 s of payments against 1 s of cart");
    }

    #[test]
    fn node_addresses_name_the_node_and_known_fields_are_kept() {
        let e = Enricher::new(&meta());
        let mut r = record("2026-11-20T10:30:00Z", None, "192.168.0.2");
        r.local.zone = Some("from-agent".into());
        e.enrich(&mut r);
        assert_eq!(r.remote.node.as_deref(), Some("node-2"));
        assert_eq!(r.remote.zone.as_deref(), Some("us-east-1b"));
        assert_eq!(r.local.zone.as_deref(), Some("from-agent"));
    }
}
