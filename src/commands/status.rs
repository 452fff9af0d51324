//! `egressor status`: each node's agent in the Kubernetes context: ready, version, spool fill,
//! last pull, loss. Exits 3 when any agent is not ready, unreachable or of another version.

use super::pull::EXIT_SOME_AGENTS_FAILED;
use crate::cli::{Settings, StatusArgs};
use crate::cluster::{self, agents};
use crate::transport::{AgentInfo, WIRE_SCHEMA, link::AgentLink};
use crate::views::{self, cluster::AgentStatus};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(settings: &Settings, args: &StatusArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let cluster = Arc::new(cluster::connect(args.cluster.context.as_deref())?);
    let found = agents::discover(&cluster, &args.cluster.namespace)?;
    let statuses: Vec<AgentStatus> = found
        .pods
        .iter()
        .map(|pod| {
            let (info, problem) = if pod.ready {
                let link = agents::ProxyLink::new(cluster.clone(), &found, pod);
                match ask_info(&link) {
                    Ok(i) => {
                        let problem = version_problem(&i);
                        (Some(i), problem)
                    }
                    Err(e) => (None, Some(format!("{e:#}"))),
                }
            } else {
                (
                    None,
                    Some(format!(
                        "not ready yet ({}): wait, or see `kubectl -n {} describe pod {}`",
                        pod.state, found.namespace, pod.pod
                    )),
                )
            };
            AgentStatus {
                node: pod.node.clone(),
                pod: pod.pod.clone(),
                ready: pod.ready,
                state: pod.state.clone(),
                info,
                problem,
            }
        })
        .collect();
    views::cluster::status(out, &statuses, args.out.output.into(), settings.color)?;
    let missing = (found.desired as usize).saturating_sub(found.pods.len());
    if missing > 0 {
        eprintln!(
            "warning: the DaemonSet wants {} agents, {} pods exist yet",
            found.desired,
            found.pods.len()
        );
    }
    let bad = missing > 0 || statuses.iter().any(|s| s.problem.is_some());
    Ok(if bad { ExitCode::from(EXIT_SOME_AGENTS_FAILED) } else { ExitCode::SUCCESS })
}

/// `GET /v1/info` through the API server.
pub fn ask_info(link: &dyn AgentLink) -> Result<AgentInfo> {
    let reply = link.request(false, "/v1/info")?;
    if reply.status == 401 {
        anyhow::bail!("agent {} refused the token (401): {}", link.name(), link.unauthorized_hint());
    }
    if !reply.ok() {
        anyhow::bail!("agent {} answered {}: {}", link.name(), reply.status, reply.message());
    }
    serde_json::from_slice(&reply.body)
        .with_context(|| format!("agent {} sent an /v1/info this egressor cannot read", link.name()))
}

/// An agent of another version: fine while it speaks the same wire format, but said.
pub fn version_problem(i: &AgentInfo) -> Option<String> {
    let ours = env!("CARGO_PKG_VERSION");
    if i.schema != WIRE_SCHEMA {
        return Some(format!(
            "runs egressor {} speaking {}, this CLI ({ours}) understands {WIRE_SCHEMA}: run `egressor deploy` with this version to upgrade the agents",
            i.version, i.schema
        ));
    }
    (i.version != ours).then(|| {
        format!("runs egressor {}, this CLI is {ours} (same wire format, so pulls work): `egressor deploy` upgrades it", i.version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str, schema: &str) -> AgentInfo {
        AgentInfo {
            schema: schema.into(),
            version: version.into(),
            node: "n".into(),
            instance: "i".into(),
            spool_bytes: 0,
            spool_max_bytes: 1,
            spool_batches: 0,
            last_ack: None,
            loss: Default::default(),
        }
    }

    #[test]
    fn an_agent_of_another_version_is_named_with_what_to_do() {
        assert_eq!(version_problem(&info(env!("CARGO_PKG_VERSION"), WIRE_SCHEMA)), None);
        let older = version_problem(&info("0.0.9", WIRE_SCHEMA)).unwrap();
        assert!(
            older.contains("runs egressor 0.0.9")
                && older.contains("pulls work")
                && older.contains("egressor deploy"),
            "{older}"
        );
        let other_wire = version_problem(&info("9.0.0", "egressor.batches/v2")).unwrap();
        assert!(other_wire.contains("egressor.batches/v2") && other_wire.contains("upgrade"), "{other_wire}");
    }
}
