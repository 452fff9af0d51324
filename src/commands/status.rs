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
