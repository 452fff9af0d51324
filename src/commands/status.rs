//! `egressor status`: each node's agent in the Kubernetes context: ready, version, spool fill,
//! last pull, loss. Exits 3 when any agent is not ready, unreachable or of another version.

use super::pull::EXIT_SOME_AGENTS_FAILED;
use crate::cli::{Settings, StatusArgs};
use crate::cluster::{self, agents};
use crate::transport::pull;
use crate::views::{self, cluster::AgentStatus};
use anyhow::Result;
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
                match pull::fetch_info(&link) {
                    Ok(i) => {
                        let problem = i.version_problem();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::AgentInfo;
    use crate::transport::WIRE_SCHEMA;

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
        assert_eq!(info(env!("CARGO_PKG_VERSION"), WIRE_SCHEMA).version_problem(), None);
        let older = info("0.0.9", WIRE_SCHEMA).version_problem().unwrap();
        assert!(
            older.contains("runs egressor 0.0.9")
                && older.contains("pulls work")
                && older.contains("egressor deploy"),
            "{older}"
        );
        let other_wire = info("9.0.0", "egressor.batches/v2").version_problem().unwrap();
        assert!(other_wire.contains("egressor.batches/v2") && other_wire.contains("upgrade"), "{other_wire}");
    }
}
