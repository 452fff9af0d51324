//! `deploy` and `undeploy`: server-side apply of [`manifests::all`] with field manager `egressor`,
//! and deletion of exactly those objects (only while they carry egressor's managed-by label).

use super::errors::{self, DEPLOY, UNDEPLOY};
use super::manifests::{self, DeployOptions, Manifest, TOKEN_KEY, TOKEN_SECRET};
use super::{Cluster, FIELD_MANAGER, MANAGED_BY};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde::Serialize;

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Configured,
    Unchanged,
    /// An existing namespace egressor did not create: used as it is, never labelled or removed.
    Adopted,
    Deleted,
    /// Not there (undeploy), or there without egressor's label (left alone).
    Absent,
    NotOurs,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    pub namespace: Option<String>,
    pub change: Change,
}

/// The manifests for `options`, with the token of an existing Secret reused (a second deploy must
/// change nothing) or a new random one.
pub fn manifests_for(cluster: Option<&Cluster>, mut options: DeployOptions) -> Result<Vec<Manifest>> {
    let existing = match cluster {
        Some(c) => existing_token(c, &options.namespace, "deploy", DEPLOY)?,
        None => None,
    };
    options.token = match existing {
        Some(t) => t,
        None => new_token()?,
    };
    Ok(manifests::all(&options))
}

/// Applies every manifest in order; `force` takes over fields another manager changed.
pub fn apply(cluster: &Cluster, manifests: &[Manifest], force: bool) -> Result<Vec<Applied>> {
    let mut done = Vec::new();
    for m in manifests {
        let api = api_for(cluster, m);
        let doing = format!("apply {} {}", m.kind, qualified(m));
        let before = cluster
            .block_on(api.get_opt(&m.name))
            .map_err(|e| errors::explain(cluster, &doing, "deploy", DEPLOY, e))?;
        if m.kind == "Namespace" && before.as_ref().is_some_and(|ns| !is_ours(ns)) {
            done.push(applied(m, Change::Adopted));
            continue;
        }
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        let after = cluster
            .block_on(api.patch(&m.name, &params, &Patch::Apply(&m.object)))
            .map_err(|e| conflict_hint(errors::explain(cluster, &doing, "deploy", DEPLOY, e)))?;
        let change = match before {
            None => Change::Created,
            Some(b) if b.metadata.resource_version == after.metadata.resource_version => Change::Unchanged,
            Some(_) => Change::Configured,
        };
        done.push(applied(m, change));
    }
    Ok(done)
}

/// Deletes what `deploy` created, newest first, skipping anything without egressor's label.
pub fn remove(cluster: &Cluster, manifests: &[Manifest]) -> Result<Vec<Applied>> {
    let mut done = Vec::new();
    for m in manifests.iter().rev() {
        let api = api_for(cluster, m);
        let doing = format!("delete {} {}", m.kind, qualified(m));
        let explain = |e| errors::explain(cluster, &doing, "undeploy", UNDEPLOY, e);
        let change = match cluster.block_on(api.get_opt(&m.name)).map_err(explain)? {
            None => Change::Absent,
            Some(o) if !is_ours(&o) => Change::NotOurs,
            Some(_) => {
                cluster.block_on(api.delete(&m.name, &DeleteParams::foreground())).map_err(explain)?;
                Change::Deleted
            }
        };
        done.push(applied(m, change));
    }
    Ok(done)
}

fn applied(m: &Manifest, change: Change) -> Applied {
    Applied { kind: m.kind, name: m.name.clone(), namespace: m.namespace.clone(), change }
}

fn qualified(m: &Manifest) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name),
        None => m.name.clone(),
    }
}

fn is_ours(o: &DynamicObject) -> bool {
    o.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY.0)).is_some_and(|v| v == MANAGED_BY.1)
}

/// A 409 from server-side apply means someone changed a field egressor manages (say, the image
/// with `kubectl set image`): say how to take it back rather than overwrite it silently.
fn conflict_hint(e: anyhow::Error) -> anyhow::Error {
    if format!("{e}").contains(" 409 ") {
        e.context("another field manager changed fields egressor manages; `egressor deploy --force` takes them back")
    } else {
        e
    }
}

fn api_for(cluster: &Cluster, m: &Manifest) -> Api<DynamicObject> {
    let (group, version) = m.api_version.rsplit_once('/').unwrap_or(("", m.api_version));
    let plural = format!("{}s", m.kind.to_lowercase());
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, m.kind), &plural);
    match &m.namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
        None => Api::all_with(cluster.client.clone(), &ar),
    }
}

/// The token in the Secret a previous deploy wrote, if any. `command` and `needs` name the role
/// to ask for when RBAC refuses.
pub fn existing_token(
    cluster: &Cluster,
    namespace: &str,
    command: &str,
    needs: &[errors::Permission],
) -> Result<Option<String>> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let doing = format!("read Secret {namespace}/{TOKEN_SECRET}");
    let secret = cluster
        .block_on(api.get_opt(TOKEN_SECRET))
        .map_err(|e| errors::explain(cluster, &doing, command, needs, e))?;
    let token = secret
        .and_then(|s| s.data)
        .and_then(|d| d.get(TOKEN_KEY).cloned())
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .filter(|t| !t.is_empty());
    Ok(token)
}

/// 32 random bytes from the kernel, as hex.
fn new_token() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom for the agents' token")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
