//! The Kubernetes cluster, behind one module: kube-rs (the production client: kubeconfig, auth,
//! server-side apply, watches that relist on 410) and k8s-openapi's typed objects are named only
//! here. Everything above sees plain egressor types: a manifest as YAML, an agent as a URL-like
//! link, the cluster's metadata as [`crate::model::k8s`] records.
//!
//! The CLI is synchronous; a [`Cluster`] owns a small tokio runtime and blocks on kube's futures.
//!
//! - [`connect`]: kubeconfig + context -> client, with errors that say what to do
//! - [`manifests`]: the objects `deploy` applies (Namespace, ServiceAccount, token Secret, RBAC, DaemonSet)
//! - [`deploy`]: apply them (server-side apply, field manager `egressor`), remove them, report status
//! - [`agents`]: find the agents' pods and reach them through the API server (pods/proxy)
//! - [`errors`]: a refused or failed API call as one sentence with the fix
//! - [`metadata`]: the cluster's pods, owners, Services and nodes as `model::k8s` records
//! - [`watch`]: the agent's watch of its own node's pods
//!
//! See docs/adr/0009-cluster-attach-and-enrichment.md for why pods/proxy and who watches what.

pub mod agents;
pub mod deploy;
pub mod errors;
pub mod manifests;
pub mod metadata;
pub mod watch;

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::future::Future;

/// Labels every object egressor creates carries; `undeploy` removes exactly what has them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "egressor");
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "egressor";
/// Default namespace of the agents.
pub const DEFAULT_NAMESPACE: &str = "egressor";

/// A connected client and where it points.
pub struct Cluster {
    pub client: kube::Client,
    /// The kubeconfig context in use (`in-cluster` inside a pod).
    pub context: String,
    /// The API server's URL, for messages.
    pub server: String,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// Runs one of kube's futures to completion on this cluster's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

/// Connects with the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) and `context` (default: its
/// current context); inside a pod with no kubeconfig, with the pod's service account.
pub fn connect(context: Option<&str>) -> Result<Cluster> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the runtime for the Kubernetes client")?;
    let (mut config, context_name) = runtime.block_on(load_config(context))?;
    // kube retries 429/503/504 up to 15 times by default. Through pods/proxy a 503 means the agent
    // is not reachable, which `pull` must report and move past, not wait out for minutes.
    config.default_retry = false;
    let server = config.cluster_url.to_string();
    // The client's service stack spawns its worker on the current runtime.
    let client = {
        let _inside = runtime.enter();
        kube::Client::try_from(config)
            .with_context(|| format!("cannot build a Kubernetes client for context `{context_name}`"))?
    };
    Ok(Cluster { client, context: context_name, server, runtime })
}

async fn load_config(context: Option<&str>) -> Result<(kube::Config, String)> {
    let kubeconfig = match Kubeconfig::read() {
        Ok(k) => k,
        Err(e) => return in_cluster_or_explain(context, e),
    };
    let chosen = context.map(str::to_string).or_else(|| kubeconfig.current_context.clone());
    let Some(chosen) = chosen else {
        bail!(
            "the kubeconfig {} has no current context: choose one with --context NAME \
             (`kubectl config get-contexts` lists them)",
            kubeconfig_path()
        );
    };
    if !kubeconfig.contexts.iter().any(|c| c.name == chosen) {
        let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "context `{chosen}` is not in the kubeconfig {}; it has: {} (`kubectl config get-contexts`)",
            kubeconfig_path(),
            if known.is_empty() { "no contexts".to_string() } else { known.join(", ") }
        );
    }
    let options = KubeConfigOptions { context: Some(chosen.clone()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.with_context(|| {
        format!("the kubeconfig {} cannot be used for context `{chosen}`", kubeconfig_path())
    })?;
    Ok((config, chosen))
}

/// No kubeconfig: inside a pod (the agent) the service account is the configuration; anywhere
/// else the user has not pointed egressor at a cluster yet.
fn in_cluster_or_explain(
    context: Option<&str>,
    read_error: kube::config::KubeconfigError,
) -> Result<(kube::Config, String)> {
    if context.is_none()
        && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && let Ok(c) = kube::Config::incluster()
    {
        return Ok((c, "in-cluster".into()));
    }
    bail!(
        "no kubeconfig: cannot read {} ({read_error}). Point KUBECONFIG at your cluster's kubeconfig \
         (for example `aws eks update-kubeconfig --name CLUSTER`, `gcloud container clusters \
         get-credentials CLUSTER`, `az aks get-credentials`), then check it with `kubectl get nodes`",
        kubeconfig_path()
    )
}

/// Where the kubeconfig is read from, for messages.
fn kubeconfig_path() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(p) if !p.is_empty() => p,
        _ => dirs::home_dir()
            .map(|h| h.join(".kube/config").display().to_string())
            .unwrap_or_else(|| "~/.kube/config".into()),
    }
}
