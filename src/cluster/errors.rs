//! A failed API call as one message a cluster user can act on: unreachable, 401, 403 (which verb on
//! which resource RBAC refused, and a role that allows everything the command needs), not found.

use super::Cluster;

/// One permission a command needs: `verbs` on `resource` in API group `group` ("" = core).
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

const fn p(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Permission {
    Permission { group, resource, verbs }
}

const APPLY: &[&str] = &["get", "create", "patch"];
const REMOVE: &[&str] = &["get", "list", "delete"];
const READ: &[&str] = &["get", "list", "watch"];

/// What `egressor deploy` needs (server-side apply is `patch`, creating through it also `create`).
pub const DEPLOY: &[Permission] = &[
    p("", "namespaces", APPLY),
    p("", "serviceaccounts", APPLY),
    p("", "secrets", APPLY),
    p("apps", "daemonsets", APPLY),
    p("rbac.authorization.k8s.io", "clusterroles", APPLY),
    p("rbac.authorization.k8s.io", "clusterrolebindings", APPLY),
];
/// What `egressor undeploy` needs.
pub const UNDEPLOY: &[Permission] = &[
    p("", "namespaces", REMOVE),
    p("", "serviceaccounts", REMOVE),
    p("", "secrets", REMOVE),
    p("apps", "daemonsets", REMOVE),
    p("rbac.authorization.k8s.io", "clusterroles", REMOVE),
    p("rbac.authorization.k8s.io", "clusterrolebindings", REMOVE),
];
/// What `egressor pull`, `status` and `top --cluster` need: find the agents, read their token,
/// reach them through the API server, and read the cluster's metadata for enrichment.
pub const ATTACH: &[Permission] = &[
    p("apps", "daemonsets", &["get"]),
    p("", "secrets", &["get"]),
    p("", "pods", READ),
    p("", "pods/proxy", &["get", "create"]),
    p("", "services", READ),
    p("", "nodes", READ),
    p("apps", "replicasets", READ),
    p("apps", "deployments", READ),
    p("apps", "statefulsets", READ),
    p("apps", "daemonsets", READ),
    p("batch", "jobs", READ),
    p("batch", "cronjobs", READ),
    p("discovery.k8s.io", "endpointslices", READ),
];

/// `kube::Error` -> an error that names the cluster and the fix. `doing` is what was attempted
/// ("apply DaemonSet egressor/egressor-agent"); `command` and `needs` name the role to grant on 403.
pub fn explain(
    cluster: &Cluster,
    doing: &str,
    command: &str,
    needs: &[Permission],
    e: kube::Error,
) -> anyhow::Error {
    let at = format!("the Kubernetes API at {} (context `{}`)", cluster.server, cluster.context);
    match e {
        kube::Error::Api(status) => match status.code {
            401 => anyhow::anyhow!(
                "{doing}: {at} refused the credentials (401 {}): they are missing, wrong or expired. \
                 Refresh them (for example re-run `aws eks update-kubeconfig` or `gcloud container \
                 clusters get-credentials`) and check with `kubectl get nodes`",
                status.message
            ),
            403 => forbidden(&at, doing, command, needs, &status.message),
            _ => anyhow::anyhow!(
                "{doing}: {at} answered {} {}: {}",
                status.code,
                status.reason,
                status.message
            ),
        },
        other => {
            let mut cause = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                cause = format!("{cause}: {s}");
                src = s.source();
            }
            anyhow::anyhow!(
                "{doing}: cannot reach {at}: {cause}. Is the cluster up, and is this machine on its \
                 network (VPN, bastion)? `kubectl get nodes` should work first"
            )
        }
    }
}

/// 403: the refused verb and resource as RBAC names them, and a ClusterRole with everything
/// `command` needs, so a user asks their administrator once rather than once per refusal.
fn forbidden(at: &str, doing: &str, command: &str, needs: &[Permission], message: &str) -> anyhow::Error {
    let refused = refused_action(message).unwrap_or_else(|| message.to_string());
    let user = quoted_after(message, "User ").unwrap_or_else(|| "USER".into());
    anyhow::anyhow!(
        "{doing}: {at} refused by RBAC: {refused}.\n`egressor {command}` needs this ClusterRole \
         (an administrator can apply it and bind it to you):\n\n{}\n  kubectl create clusterrolebinding \
         egressor-{command}-{user} --clusterrole=egressor-{command} --user={user}",
        role_yaml(command, needs)
    )
}

/// `pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace
/// "egressor"` -> `user alice cannot list pods in namespace egressor`.
fn refused_action(message: &str) -> Option<String> {
    let user = quoted_after(message, "User ")?;
    let rest = &message[message.find("cannot ")? + "cannot ".len()..];
    let verb = rest.split_whitespace().next()?;
    let resource = quoted_after(rest, "resource ")?;
    let group = quoted_after(rest, "API group ").unwrap_or_default();
    let resource = if group.is_empty() { resource } else { format!("{resource}.{group}") };
    let scope = match quoted_after(rest, "namespace ") {
        Some(ns) => format!("in namespace {ns}"),
        None => "at the cluster scope".into(),
    };
    Some(format!("user {user} cannot {verb} {resource} {scope}"))
}

/// The text between the double quotes after `key`.
fn quoted_after(text: &str, key: &str) -> Option<String> {
    let from = text.find(key)? + key.len();
    let rest = text[from..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn role_yaml(command: &str, needs: &[Permission]) -> String {
    let mut out = format!(
        "  apiVersion: rbac.authorization.k8s.io/v1\n  kind: ClusterRole\n  metadata:\n    name: egressor-{command}\n  rules:\n"
    );
    for n in needs {
        let verbs: Vec<String> = n.verbs.iter().map(|v| format!("\"{v}\"")).collect();
        out.push_str(&format!(
            "  - apiGroups: [\"{}\"]\n    resources: [\"{}\"]\n    verbs: [{}]\n",
            n.group,
            n.resource,
            verbs.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_message_names_verb_resource_and_scope() {
        let m = r#"daemonsets.apps is forbidden: User "alice" cannot create resource "daemonsets" in API group "apps" in the namespace "egressor""#;
        assert_eq!(
            refused_action(m).unwrap(),
            "user alice cannot create daemonsets.apps in namespace egressor"
        );
        let m = r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#;
        assert_eq!(refused_action(m).unwrap(), "user bob cannot list nodes at the cluster scope");
        let m = r#"pods "a" is forbidden: User "bob" cannot get resource "pods/proxy" in API group "" in the namespace "egressor""#;
        assert_eq!(refused_action(m).unwrap(), "user bob cannot get pods/proxy in namespace egressor");
    }

    #[test]
    fn the_role_lists_every_permission_of_the_command() {
        let y = role_yaml("deploy", DEPLOY);
        assert!(y.contains("name: egressor-deploy"), "{y}");
        assert_eq!(y.matches("- apiGroups:").count(), DEPLOY.len());
        assert!(
            y.contains("resources: [\"daemonsets\"]\n    verbs: [\"get\", \"create\", \"patch\"]"),
            "{y}"
        );
    }
}
