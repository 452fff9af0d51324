//! The agents of a cluster: the DaemonSet's pods, each reached through the API server's pods/proxy
//! subresource with the token from the Secret `deploy` wrote (in `X-Egressor-Token`: the API
//! server consumes `Authorization` itself). Why pods/proxy and not port-forward: ADR 0009.

use super::errors::{self, ATTACH};
use super::manifests::{AGENT, AGENT_PORT, TOKEN_SECRET};
use super::{Cluster, deploy};
use crate::transport::link::{AgentLink, Reply};
use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::sync::Arc;

/// One agent pod.
pub struct AgentPod {
    pub node: String,
    pub pod: String,
    pub ready: bool,
    /// Why it is not ready (phase and container state), for the report.
    pub state: String,
}

/// The agents of `namespace`, or an error that says egressor is not deployed there.
pub struct Agents {
    pub namespace: String,
    pub pods: Vec<AgentPod>,
    pub token: Option<String>,
    /// Nodes the DaemonSet wants an agent on, per its status.
    pub desired: i32,
}

pub fn discover(cluster: &Cluster, namespace: &str) -> Result<Agents> {
    let explain = |doing: String| move |e| errors::explain(cluster, &doing, "pull", ATTACH, e);
    let ds_api: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), namespace);
    let ds = cluster
        .block_on(ds_api.get_opt(AGENT))
        .map_err(explain(format!("find DaemonSet {namespace}/{AGENT}")))?;
    let Some(ds) = ds else {
        bail!(
            "egressor is not deployed in namespace `{namespace}` of context `{}`: run `egressor deploy` \
             (or give the namespace it was deployed to with --namespace)",
            cluster.context
        );
    };
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = format!("app.kubernetes.io/name={AGENT}");
    let pods = cluster
        .block_on(pods_api.list(&ListParams::default().labels(&selector)))
        .map_err(explain(format!("list the agent pods in {namespace}")))?;
    let token = deploy::existing_token(cluster, namespace, "pull", ATTACH)?;
    let mut pods: Vec<AgentPod> = pods.items.iter().map(agent_pod).collect();
    pods.sort_by(|a, b| a.node.cmp(&b.node).then(a.pod.cmp(&b.pod)));
    let desired = ds.status.map(|s| s.desired_number_scheduled).unwrap_or(0);
    Ok(Agents { namespace: namespace.into(), pods, token, desired })
}

fn agent_pod(p: &Pod) -> AgentPod {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()));
    let state = match waiting {
        Some(w) => format!("{phase}, {w}"),
        None if ready => "Ready".into(),
        None => format!("{phase}, not ready"),
    };
    AgentPod {
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| "(unscheduled)".into()),
        pod: p.metadata.name.clone().unwrap_or_default(),
        ready,
        state,
    }
}

/// One agent reached through the API server.
pub struct ProxyLink {
    cluster: Arc<Cluster>,
    namespace: String,
    pod: String,
    node: String,
    token: Option<String>,
    name: String,
}

impl ProxyLink {
    pub fn new(cluster: Arc<Cluster>, agents: &Agents, pod: &AgentPod) -> Self {
        let name = format!("node {} (pod {}/{})", pod.node, agents.namespace, pod.pod);
        ProxyLink {
            cluster,
            namespace: agents.namespace.clone(),
            pod: pod.pod.clone(),
            node: pod.node.clone(),
            token: agents.token.clone(),
            name,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn send(&self, post: bool, path_and_query: &str) -> Result<Reply> {
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{}:{AGENT_PORT}/proxy{path_and_query}",
            self.namespace, self.pod
        );
        let mut req = http::Request::builder().method(if post { "POST" } else { "GET" }).uri(uri);
        if let Some(t) = &self.token {
            req = req.header(crate::transport::TOKEN_HEADER, t.as_str());
        }
        let req = req.body(kube::client::Body::from(Vec::new()))?;
        let doing = format!("reach the agent on {}", self.name);
        let (status, body) = self
            .cluster
            .block_on(async {
                let resp = self.cluster.client.send(req).await?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect_bytes().await?;
                Ok::<_, kube::Error>((status, body))
            })
            .map_err(|e| errors::explain(&self.cluster, &doing, "pull", ATTACH, e))?;
        let reply = Reply { status, body: body.to_vec() };
        // An answer from the API server itself (a Status object): the way there failed, not the agent.
        if !reply.ok()
            && let Ok(s) = serde_json::from_slice::<kube::core::Status>(&reply.body)
            && !s.message.is_empty()
            && s.code != 0
        {
            let e = kube::Error::Api(Box::new(s));
            return Err(errors::explain(&self.cluster, &doing, "pull", ATTACH, e));
        }
        Ok(reply)
    }
}

impl AgentLink for ProxyLink {
    fn name(&self) -> &str {
        &self.name
    }

    fn cursor_key(&self) -> String {
        format!("k8s:{}/{}", self.cluster.server.trim_end_matches('/'), self.node)
    }

    fn request(&self, post: bool, path_and_query: &str) -> Result<Reply> {
        self.send(post, path_and_query)
    }

    fn unauthorized_hint(&self) -> String {
        format!(
            "the token in Secret {}/{TOKEN_SECRET} is not the one this agent started with; restart the \
             agents (`kubectl -n {} rollout restart daemonset/{AGENT}`)",
            self.namespace, self.namespace
        )
    }
}
