//! How the CLI reaches one agent. Directly over HTTP (`--agent URL`), or, in a cluster, through the
//! Kubernetes API server (the cluster module implements [`AgentLink`] over pods/proxy). Pull and
//! the live feed speak the same batch API over either.

use anyhow::{Context, Result};
use std::time::Duration;

/// A request's answer from the agent itself (errors of the way there are `Err`).
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The agent's own error text (`{"error": "..."}`), or the body as text.
    pub fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string())
    }
}

pub trait AgentLink: Send {
    /// Who this is, for messages: the URL, or `node node-1 (pod egressor/egressor-agent-x7)`.
    fn name(&self) -> &str;
    /// The key the workspace keeps this agent's pull cursor under: stable for as long as the agent's
    /// spool is (a URL; a cluster's node, whose spool outlives agent pods).
    fn cursor_key(&self) -> String;
    /// `GET` (or `POST` when `post`) of `path_and_query` on the agent, e.g. `/v1/batches?after=3`.
    fn request(&self, post: bool, path_and_query: &str) -> Result<Reply>;
    /// What to do when the agent refuses the token (401).
    fn unauthorized_hint(&self) -> String;
}

/// An agent at a URL the user gave.
pub struct HttpLink {
    url: String,
    token: Option<String>,
    client: reqwest::blocking::Client,
}

impl HttpLink {
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Result<Self> {
        let client = reqwest::blocking::Client::builder().timeout(timeout).build()?;
        Ok(HttpLink { url: url.trim_end_matches('/').to_string(), token, client })
    }
}

impl AgentLink for HttpLink {
    fn name(&self) -> &str {
        &self.url
    }

    fn cursor_key(&self) -> String {
        self.url.clone()
    }

    fn request(&self, post: bool, path_and_query: &str) -> Result<Reply> {
        let url = format!("{}{path_and_query}", self.url);
        let mut req = if post { self.client.post(&url) } else { self.client.get(&url) };
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().with_context(|| format!("cannot reach agent {}", self.url))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().with_context(|| format!("agent {} cut its answer short", self.url))?;
        Ok(Reply { status, body: body.to_vec() })
    }

    fn unauthorized_hint(&self) -> String {
        if self.token.is_some() {
            "the token in --token-file is not the agent's: give the file the agent reads".into()
        } else {
            "the agent requires a token: give it with --token-file".into()
        }
    }
}
