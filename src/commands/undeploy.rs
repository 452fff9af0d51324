//! `egressor undeploy`: removes exactly what `deploy` created (objects carrying egressor's
//! managed-by label; a namespace egressor did not create stays).

use crate::cli::{Settings, UndeployArgs};
use crate::cluster::{self, deploy, manifests::DeployOptions};
use crate::views;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &UndeployArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let cluster = cluster::connect(args.cluster.context.as_deref())?;
    let options = DeployOptions { namespace: args.cluster.namespace.clone(), ..Default::default() };
    // The names are what matter here; the token is not read.
    let manifests = cluster::manifests::all(&options);
    let done = deploy::remove(&cluster, &manifests)?;
    views::cluster::applied(
        out,
        views::cluster::UNDEPLOY_SCHEMA,
        &done,
        args.out.output.into(),
        settings.color,
    )?;
    Ok(ExitCode::SUCCESS)
}
