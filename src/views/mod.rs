//! Everything that prints: the only module that touches comfy-table (and, later, ratatui).
//! Tables are for people; JSON and CSV are for scripts and follow the schemas in `docs/`.

pub mod anomalies;
pub mod cluster;
pub mod cost;
pub mod explain;
pub mod flows;
pub mod graph;
pub mod reconcile;
pub mod reports;
pub mod run;
pub mod top;

use comfy_table::{ContentArrangement, Table, presets};
use std::io::Write;

/// How a report prints: a table for people, JSON or CSV for scripts. Views own this type so they
/// need nothing from `cli`; the cli maps its `--output` flag onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// A table in the house style: UTF-8 borders, wraps to the terminal, no colour when asked not to.
pub fn new_table(headers: &[&str], color: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    if !color {
        t.force_no_tty();
    }
    t
}

/// Right-aligns the given columns (numbers).
pub fn align_right(t: &mut Table, cols: &[usize]) {
    for &c in cols {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
}

/// Pretty JSON followed by a newline.
pub fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}
