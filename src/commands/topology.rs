//! `egressor topology validate|set|show`: check a topology file, store it in the workspace as
//! the default for `cost`, `graph` and `top`, or print the stored one.

use crate::cli::{Settings, TopologyCommand};
use crate::engines::topology::Topology;
use crate::store::Workspace;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(settings: &Settings, cmd: &TopologyCommand, out: &mut dyn Write) -> Result<ExitCode> {
    match cmd {
        TopologyCommand::Validate { file } => validate(file, out)?,
        TopologyCommand::Set { file } => set(settings, file, out)?,
        TopologyCommand::Show => show(settings, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(file: &Path, out: &mut dyn Write) -> Result<()> {
    let t = Topology::load_file(file)?;
    writeln!(
        out,
        "{}: ok ({}, {} VPCs, {} subnets, {} NAT gateways, {} peerings, {} transit gateways, {} endpoints)",
        file.display(),
        t.cloud,
        t.vpcs.len(),
        t.subnets.len(),
        t.nat_gateways.len(),
        t.peerings.len(),
        t.transit_gateways.len(),
        t.endpoints.len()
    )?;
    Ok(())
}

fn set(settings: &Settings, file: &Path, out: &mut dyn Write) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read topology file {}", file.display()))?;
    // Checked before it is stored: a broken file never replaces a good one.
    Topology::parse(file, &text)?;
    let ws = Workspace::open(&settings.workspace)?;
    ws.set_topology(&text, &file.display().to_string())?;
    writeln!(out, "stored {} as the workspace topology", file.display())?;
    Ok(())
}

fn show(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    let ws = Workspace::open(&settings.workspace)?;
    match ws.topology()? {
        Some((text, _)) => write!(out, "{text}")?,
        None => {
            bail!("no topology stored in {}; use `egressor topology set FILE`", settings.workspace.display())
        }
    }
    Ok(())
}
