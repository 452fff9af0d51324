//! `egressor export --format jsonl|csv|parquet`: flow records out of the workspace, to standard
//! output or a file (Parquet only to a file: it is binary).

use crate::cli::{ExportArgs, ExportFormat, Settings};
use crate::store::{FlowFilter, Workspace};
use crate::views::flows::FlowSink;
use anyhow::{Context, Result, bail};
use std::io::{BufWriter, Write};
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &ExportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let ws = Workspace::open(&settings.workspace)?;
    let (since, until) = args.range.resolve(settings.now)?;
    let filter = FlowFilter { since, until, limit: None };
    match args.format {
        ExportFormat::Parquet => {
            let Some(file) = &args.file else {
                bail!("Parquet is binary: give a file with --file FILE");
            };
            let n = ws.export_parquet(&filter, file)?;
            eprintln!("wrote {n} flow record(s) to {}", file.display());
        }
        ExportFormat::Jsonl | ExportFormat::Csv => match &args.file {
            Some(path) => {
                let mut file = BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                );
                let n = export_text(&ws, &filter, args.format, &mut file)?;
                file.flush().with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {n} flow record(s) to {}", path.display());
            }
            None => {
                export_text(&ws, &filter, args.format, out)?;
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams the records as JSON lines or CSV; returns how many were written.
fn export_text(
    ws: &Workspace,
    filter: &FlowFilter,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut sink = if format == ExportFormat::Csv { FlowSink::csv(out) } else { FlowSink::json_lines(out) };
    let n = ws.for_each_flow(filter, |r| sink.push(r))?;
    sink.finish()?;
    Ok(n)
}
