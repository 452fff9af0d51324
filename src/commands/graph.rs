//! `egressor graph`: the period's priced traffic as a graph at the asked level, optionally
//! around a focus, cut to the largest edges, printed as a table, JSON, DOT or Mermaid.

use super::load::{self, PeriodQuery};
use crate::cli::{GraphArgs, Settings};
use crate::engines::classify::Class;
use crate::engines::cost::GroupBy;
use crate::engines::graph::{self, FocusDirection, Graph, GraphQuery, Level};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &GraphArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let class = args.class.as_deref().map(parse_class).transpose()?;
    let query = PeriodQuery {
        since: args.since,
        until: args.until,
        topology: args.net.topology.as_deref(),
        pricing: &args.net.prices.pricing,
        by: GroupBy::Edge,
    };
    let (_, report) = load::priced_period(settings, &query)?;
    let direction = match args.direction.as_str() {
        "out" => FocusDirection::Out,
        "in" => FocusDirection::In,
        _ => FocusDirection::Both,
    };
    let q = GraphQuery {
        level: Level::parse(&args.level).expect("clap checked --level"),
        focus: args.focus.as_deref(),
        hops: args.hops,
        direction,
        class,
        details: false,
    };
    let mut g = graph::build(&report, &q);
    if let Some(n) = args.top {
        keep_largest_edges(&mut g, n);
    }
    crate::views::graph::graph(out, &g, args.output.into(), &report.currency, settings.color)?;
    Ok(ExitCode::SUCCESS)
}

fn parse_class(c: &str) -> Result<Class> {
    Class::parse(c).with_context(|| format!("unknown class {c:?}; expected one of: {}", Class::names()))
}

/// The first `n` edges (the graph lists them largest first) and only the nodes they touch.
fn keep_largest_edges(g: &mut Graph, n: usize) {
    g.edges.truncate(n);
    let keep: BTreeSet<&str> = g.edges.iter().flat_map(|e| [e.src.as_str(), e.dst.as_str()]).collect();
    let nodes = g.nodes.iter().filter(|n| keep.contains(n.name.as_str())).cloned().collect();
    g.nodes = nodes;
}
