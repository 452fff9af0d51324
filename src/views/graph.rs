//! `egressor graph`: edges as a table, JSON (`egressor.graph/v1`), Graphviz DOT or Mermaid.

use super::{align_right, new_table, write_json};
use crate::engines::classify::Class;
use crate::engines::graph::{Graph, NodeKind};
use crate::model::human_bytes;
use anyhow::Result;
use std::io::Write;

/// How `graph` prints; the cli maps `--output` onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Table,
    Json,
    Dot,
    Mermaid,
}

/// Bytes per second as people read network rates.
pub fn human_rate(bytes_per_sec: f64) -> String {
    let bits = bytes_per_sec * 8.0;
    let (v, u) = if bits >= 1e9 {
        (bits / 1e9, "Gbit/s")
    } else if bits >= 1e6 {
        (bits / 1e6, "Mbit/s")
    } else if bits >= 1e3 {
        (bits / 1e3, "kbit/s")
    } else {
        (bits, "bit/s")
    };
    format!("{v:.1} {u}")
}

/// Colours that say what an edge costs: free-ish grey, zone/region crossings orange/red.
pub fn class_color(c: Class) -> &'static str {
    match c {
        Class::SameNode | Class::SameZone | Class::PeeringSameZone | Class::VpcEndpoint | Class::Ingress => {
            "gray40"
        }
        Class::CrossZone | Class::PeeringCrossZone | Class::TransitGateway => "darkorange",
        Class::CrossRegion => "red3",
        Class::Internet | Class::NatInternet | Class::NatCloudService => "firebrick",
        Class::Unknown => "purple",
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_id(i: usize) -> String {
    format!("n{i}")
}

pub fn graph(out: &mut dyn Write, g: &Graph, format: GraphFormat, currency: &str, color: bool) -> Result<()> {
    match format {
        GraphFormat::Json => write_json(out, g),
        GraphFormat::Table => {
            let mut t =
                new_table(&["from", "to", "bytes", "rate", "class", &format!("cost {currency}")], color);
            for e in &g.edges {
                t.add_row(vec![
                    e.src.clone(),
                    e.dst.clone(),
                    human_bytes(e.bytes),
                    human_rate(e.rate),
                    e.class.to_string(),
                    super::cost::money(e.cost),
                ]);
            }
            align_right(&mut t, &[2, 3, 5]);
            writeln!(out, "{t}")?;
            let (senders, receivers) = g.top_talkers(5);
            let names = |v: Vec<&crate::engines::graph::GraphNode>, out: bool| {
                v.iter()
                    .map(|n| {
                        format!("{} ({})", n.name, human_bytes(if out { n.bytes_out } else { n.bytes_in }))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(out, "top senders: {}", names(senders, true))?;
            writeln!(out, "top receivers: {}", names(receivers, false))?;
            Ok(())
        }
        GraphFormat::Dot => {
            writeln!(out, "digraph egressor {{")?;
            writeln!(out, "  rankdir=LR;")?;
            writeln!(out, "  node [shape=box, style=rounded, fontname=\"Helvetica\"];")?;
            writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=10];")?;
            for n in &g.nodes {
                let shape = match n.kind {
                    NodeKind::Internal => "box",
                    NodeKind::CloudService => "cylinder",
                    NodeKind::External => "ellipse",
                };
                writeln!(out, "  \"{}\" [shape={shape}];", dot_escape(&n.name))?;
            }
            let max = g.edges.iter().map(|e| e.bytes).max().unwrap_or(1).max(1) as f64;
            for e in &g.edges {
                let width = 1.0 + 4.0 * (e.bytes as f64 / max);
                writeln!(
                    out,
                    "  \"{}\" -> \"{}\" [label=\"{}\\n{} {currency}\\n{}\", color={}, penwidth={width:.1}];",
                    dot_escape(&e.src),
                    dot_escape(&e.dst),
                    human_bytes(e.bytes),
                    super::cost::money(e.cost),
                    e.class,
                    class_color(e.class)
                )?;
            }
            writeln!(out, "}}")?;
            Ok(())
        }
        GraphFormat::Mermaid => {
            writeln!(out, "flowchart LR")?;
            let index: std::collections::BTreeMap<&str, usize> =
                g.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
            for (i, n) in g.nodes.iter().enumerate() {
                let label = n.name.replace('"', "'");
                match n.kind {
                    NodeKind::Internal => writeln!(out, "  {}[\"{label}\"]", mermaid_id(i))?,
                    NodeKind::CloudService => writeln!(out, "  {}[(\"{label}\")]", mermaid_id(i))?,
                    NodeKind::External => writeln!(out, "  {}([\"{label}\"])", mermaid_id(i))?,
                }
            }
            for e in &g.edges {
                writeln!(
                    out,
                    "  {} -->|\"{} · {} {currency} · {}\"| {}",
                    mermaid_id(index[e.src.as_str()]),
                    human_bytes(e.bytes),
                    super::cost::money(e.cost),
                    e.class,
                    mermaid_id(index[e.dst.as_str()])
                )?;
            }
            Ok(())
        }
    }
}
