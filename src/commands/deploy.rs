//! `egressor deploy`: the agents on every node of a Kubernetes context, by server-side apply
//! (field manager `egressor`); `--dry-run` prints the objects and needs no cluster.

use crate::cli::{DeployArgs, Settings};
use crate::cluster::{self, deploy, manifests::DeployOptions};
use crate::views;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &DeployArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut options = DeployOptions { namespace: args.cluster.namespace.clone(), ..Default::default() };
    if let Some(image) = &args.image {
        options.image = image.clone();
    }
    options.node_selector = args.node_selector.iter().cloned().collect();
    if args.dry_run {
        let manifests = deploy::manifests_for(None, options)?;
        out.write_all(cluster::manifests::to_yaml(&manifests)?.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = cluster::connect(args.cluster.context.as_deref())?;
    let manifests = deploy::manifests_for(Some(&cluster), options)?;
    let done = deploy::apply(&cluster, &manifests, args.force)?;
    views::cluster::applied(
        out,
        views::cluster::DEPLOY_SCHEMA,
        &done,
        args.out.output.into(),
        settings.color,
    )?;
    eprintln!(
        "agents deployed to namespace {} of context {}; `egressor status` shows them, `egressor pull` collects their flows",
        args.cluster.namespace, cluster.context
    );
    Ok(ExitCode::SUCCESS)
}
