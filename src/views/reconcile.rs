//! `egressor reconcile`: egressor's figures against the bill, per usage type, with the gaps and
//! their likely causes; JSON schema `egressor.reconcile/v1` (docs/cost.md).

use super::cost::money;
use super::{Format, align_right, new_table, write_json};
use crate::engines::reconcile::{Reconciliation, Status};
use anyhow::Result;
use rust_decimal::Decimal;
use std::io::Write;

fn amount(d: Decimal) -> String {
    d.round_dp(3).normalize().to_string()
}

pub fn reconciliation(out: &mut dyn Write, r: &Reconciliation, format: Format, color: bool) -> Result<()> {
    match format {
        Format::Json => write_json(out, r),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "usage_type",
                "billed_amount",
                "billed_cost",
                "egressor_amount",
                "egressor_cost",
                "status",
            ])?;
            for row in &r.rows {
                w.write_record([
                    row.usage_type.clone(),
                    row.billed_amount.to_string(),
                    row.billed_cost.to_string(),
                    row.egressor_amount.to_string(),
                    row.egressor_cost.to_string(),
                    format!("{:?}", row.status).to_lowercase(),
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => table(out, r, color),
    }
}

fn table(out: &mut dyn Write, r: &Reconciliation, color: bool) -> Result<()> {
    writeln!(out, "Reconciliation with the bill for {}", r.month)?;
    let mut t = new_table(&["usage type", "billed", "billed USD", "egressor", "egressor USD", ""], color);
    for row in &r.rows {
        t.add_row(vec![
            row.usage_type.clone(),
            amount(row.billed_amount),
            money(row.billed_cost),
            amount(row.egressor_amount),
            money(row.egressor_cost),
            match row.status {
                Status::Match => "ok".into(),
                Status::Under => "bill higher".into(),
                Status::Over => "egressor higher".into(),
            },
        ]);
    }
    align_right(&mut t, &[1, 2, 3, 4]);
    writeln!(out, "{t}")?;
    writeln!(
        out,
        "egressor explains {}% of the {} USD billed for data transfer ({} USD); {} other bill line(s) are not data transfer",
        r.explained_percent,
        money(r.billed_cost),
        money(r.explained_cost),
        r.other_lines
    )?;
    let differing: Vec<_> = r.rows.iter().filter(|row| row.status != Status::Match).collect();
    if !differing.is_empty() || !r.gaps.is_empty() {
        writeln!(out, "\nDifferences:")?;
    }
    for row in differing {
        writeln!(
            out,
            "  {}: billed {} USD, egressor {} USD — {}",
            row.usage_type,
            money(row.billed_cost),
            money(row.egressor_cost),
            row.cause.as_deref().unwrap_or("")
        )?;
    }
    for g in &r.gaps {
        writeln!(out, "  {} ({}): {} USD — {}", g.resource, g.usage_type, money(g.billed_cost), g.cause)?;
    }
    Ok(())
}
