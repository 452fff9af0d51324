//! The objects `egressor deploy` applies, built from k8s-openapi's types (the API's own schema in
//! Rust), in the order they must exist: Namespace, ServiceAccount, the token Secret, the agent's
//! RBAC, the DaemonSet. `--dry-run` prints them as YAML; `undeploy` removes the same list.
//!
//! Least privilege: the agent container is not privileged; it drops every capability and adds
//! BPF (load programs, create maps), NET_ADMIN (attach cgroup_skb/sock_ops/sock_addr programs) and
//! PERFMON (the ring buffer and pointer-reading helpers of the probes); the tests run the agent
//! with exactly these three (tests/it/cluster.rs). Resources come from `cargo xtask bench agent`
//! (docs/benchmarks.md): RSS 32.5-35 MiB, CPU < 0.005 core at 10,000 new connections/s.

use super::{DEFAULT_NAMESPACE, MANAGED_BY};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
    Namespace, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    SecretVolumeSource, SecurityContext, ServiceAccount, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The agent's names: DaemonSet, ServiceAccount, ClusterRole(Binding) and the pods' `name` label.
pub const AGENT: &str = "egressor-agent";
/// The Secret holding the token pullers present (key [`TOKEN_KEY`]).
pub const TOKEN_SECRET: &str = "egressor-agent-token";
pub const TOKEN_KEY: &str = "token";
/// The port the agent serves its batch API, /healthz and /metrics on.
pub const AGENT_PORT: u16 = 9464;
/// The image `deploy` uses unless `--image` says otherwise (built from the repository's Dockerfile).
pub fn default_image() -> String {
    format!("ghcr.io/egressor/egressor:{}", env!("CARGO_PKG_VERSION"))
}

/// What the user chose.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub namespace: String,
    pub image: String,
    /// Only nodes with these labels run an agent.
    pub node_selector: BTreeMap<String, String>,
    /// The bearer token (reused from the existing Secret, so a second deploy changes nothing).
    pub token: String,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            namespace: DEFAULT_NAMESPACE.into(),
            image: default_image(),
            node_selector: BTreeMap::new(),
            token: String::new(),
        }
    }
}

/// One object to apply, already in the API's JSON shape.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `apps/v1`, `v1`, ...
    pub api_version: &'static str,
    pub kind: &'static str,
    pub name: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub object: serde_json::Value,
}

/// Every object, in the order they are applied (and removed in reverse).
pub fn all(o: &DeployOptions) -> Vec<Manifest> {
    let ns = Some(o.namespace.clone());
    vec![
        manifest("v1", "Namespace", None, &namespace(o)),
        manifest("v1", "ServiceAccount", ns.clone(), &service_account(o)),
        manifest("v1", "Secret", ns.clone(), &token_secret(o)),
        manifest("rbac.authorization.k8s.io/v1", "ClusterRole", None, &cluster_role()),
        manifest("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None, &cluster_role_binding(o)),
        manifest("apps/v1", "DaemonSet", ns, &daemon_set(o)),
    ]
}

fn manifest<T: serde::Serialize + k8s_openapi::Resource>(
    api_version: &'static str,
    kind: &'static str,
    namespace: Option<String>,
    obj: &T,
) -> Manifest {
    let mut object = serde_json::to_value(obj).expect("k8s-openapi objects serialise");
    // k8s-openapi writes apiVersion/kind from the type; keep them first-class for the YAML reader.
    object["apiVersion"] = serde_json::json!(T::API_VERSION);
    object["kind"] = serde_json::json!(T::KIND);
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    Manifest { api_version, kind, name, namespace, object }
}

/// All manifests as one YAML stream (`deploy --dry-run`).
pub fn to_yaml(manifests: &[Manifest]) -> anyhow::Result<String> {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&m.object)?);
    }
    Ok(out)
}

fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    l
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels(&[("app.kubernetes.io/name", AGENT), ("app.kubernetes.io/part-of", "egressor")])),
        ..Default::default()
    }
}

fn namespace(o: &DeployOptions) -> Namespace {
    Namespace { metadata: meta(&o.namespace, None), ..Default::default() }
}

fn service_account(o: &DeployOptions) -> ServiceAccount {
    ServiceAccount { metadata: meta(AGENT, Some(&o.namespace)), ..Default::default() }
}

fn token_secret(o: &DeployOptions) -> Secret {
    Secret {
        metadata: meta(TOKEN_SECRET, Some(&o.namespace)),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), ByteString(o.token.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The agent reads the pods of its own node (list + watch, field selector `spec.nodeName`), to
/// name the pods of flows that may be gone by the next pull; nothing else, and no writes.
fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(AGENT, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn cluster_role_binding(o: &DeployOptions) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(&format!("{AGENT}-{}", o.namespace), None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: AGENT.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: AGENT.into(),
            namespace: Some(o.namespace.clone()),
            ..Default::default()
        }]),
    }
}

fn daemon_set(o: &DeployOptions) -> DaemonSet {
    let pod_labels = labels(&[("app.kubernetes.io/name", AGENT), ("app.kubernetes.io/part-of", "egressor")]);
    DaemonSet {
        metadata: meta(AGENT, Some(&o.namespace)),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app.kubernetes.io/name".into(), AGENT.into())])),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..Default::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..Default::default() }),
                spec: Some(pod_spec(o)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(o: &DeployOptions) -> PodSpec {
    PodSpec {
        service_account_name: Some(AGENT.into()),
        priority_class_name: Some("system-node-critical".into()),
        // Every node, tainted or not: an unmonitored node is bytes nobody sees.
        tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Default::default() }]),
        node_selector: (!o.node_selector.is_empty()).then(|| o.node_selector.clone()),
        termination_grace_period_seconds: Some(30),
        containers: vec![agent_container(o)],
        volumes: Some(volumes()),
        ..Default::default()
    }
}

fn agent_container(o: &DeployOptions) -> Container {
    let args = [
        "agent",
        "--listen",
        &format!("0.0.0.0:{AGENT_PORT}"),
        "--cgroup",
        "/host/sys/fs/cgroup",
        "--spool",
        "/var/lib/egressor/spool",
        "--token-file",
        "/etc/egressor/token",
    ];
    let health = |initial: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(AGENT_PORT.into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        ..Default::default()
    };
    Container {
        name: "agent".into(),
        image: Some(o.image.clone()),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        env: Some(vec![EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: AGENT_PORT.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(health(2)),
        liveness_probe: Some(health(10)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
            limits: Some(quantities(&[("cpu", "500m"), ("memory", "128Mi")])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(0),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["BPF".into(), "NET_ADMIN".into(), "PERFMON".into()]),
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("cgroup", "/host/sys/fs/cgroup", true),
            mount("bpffs", "/sys/fs/bpf", false),
            mount("spool", "/var/lib/egressor", false),
            mount("token", "/etc/egressor", true),
        ]),
        ..Default::default()
    }
}

fn quantities(q: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    q.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn volumes() -> Vec<Volume> {
    let host = |name: &str, path: &str, type_: &str| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some(type_.into()) }),
        ..Default::default()
    };
    vec![
        // The host's whole cgroup v2 tree: the probes attach at its root and pod cgroups are named from it.
        host("cgroup", "/sys/fs/cgroup", "Directory"),
        host("bpffs", "/sys/fs/bpf", "Directory"),
        // The spool outlives agent pods: an upgrade or a crash loses no batch.
        host("spool", "/var/lib/egressor", "DirectoryOrCreate"),
        Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(TOKEN_SECRET.into()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DeployOptions {
        DeployOptions { token: "t0k3n".into(), ..Default::default() }
    }

    #[test]
    fn every_object_is_labelled_and_in_apply_order() {
        let all = all(&options());
        let kinds: Vec<&str> = all.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            ["Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
        );
        for m in &all {
            assert_eq!(m.object["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1, "{}", m.kind);
            assert_eq!(m.object["kind"], m.kind);
            assert_eq!(m.object["apiVersion"], m.api_version);
        }
    }

    #[test]
    fn the_agent_is_not_privileged_and_has_three_capabilities() {
        let ds = &all(&options())[5].object;
        let c = &ds["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["privileged"], false);
        assert_eq!(
            c["securityContext"]["capabilities"]["add"],
            serde_json::json!(["BPF", "NET_ADMIN", "PERFMON"])
        );
        assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(ds["spec"]["template"]["spec"]["priorityClassName"], "system-node-critical");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
        // The token travels as data (base64), so applying it twice is the same object.
        assert_eq!(all(&options())[2].object["data"]["token"], "dDBrM24=");
    }

    #[test]
    fn dry_run_yaml_is_a_stream_of_the_objects() {
        let y = to_yaml(&all(&options())).unwrap();
        assert_eq!(y.matches("---\n").count(), 6);
        assert!(y.contains("kind: DaemonSet"), "{y}");
    }
}
