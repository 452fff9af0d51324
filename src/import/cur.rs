//! AWS Cost and Usage Report extracts -> bill lines: what `egressor reconcile` compares egressor's
//! figures with.
//!
//! Reads CSV (optionally gzipped) and Parquet, with CUR 2.0 column names (`line_item_usage_type`)
//! or the legacy ones (`lineItem/UsageType`): both are normalised to snake case. Needed columns:
//! usage type, usage amount, unblended cost; optional: operation, resource id, usage start date,
//! line item type. Every bad value is reported as file:row:column.

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use std::path::Path;

/// One line item of the bill.
#[derive(Debug, Clone, PartialEq)]
pub struct BillLine {
    /// `USE1-DataTransfer-Regional-Bytes`, `USE1-NatGateway-Hours`, ...
    pub usage_type: String,
    pub operation: String,
    /// In the usage type's unit (GB for bytes, hours for hours).
    pub usage_amount: Decimal,
    pub cost: Decimal,
    /// The instance, ENI or NAT gateway the line is for, when the CUR has resource ids.
    pub resource_id: Option<String>,
    /// `YYYY-MM` of the usage start, when the file has it.
    pub month: Option<String>,
    /// 1-based data row in the file (for messages).
    pub row: u64,
}

/// `lineItem/UsageType` -> `line_item_usage_type`; CUR 2.0 names are already in this form.
pub fn normalise_column(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.trim().chars().enumerate() {
        match c {
            '/' | ' ' | '-' => out.push('_'),
            c if c.is_ascii_uppercase() => {
                if i > 0 && !out.ends_with('_') {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    out
}

/// Column positions of what reconcile reads.
struct Columns {
    usage_type: usize,
    usage_amount: usize,
    cost: usize,
    operation: Option<usize>,
    resource_id: Option<usize>,
    start: Option<usize>,
    line_item_type: Option<usize>,
}

impl Columns {
    fn find(file: &Path, header: &[String]) -> Result<Columns> {
        let names: Vec<String> = header.iter().map(|h| normalise_column(h)).collect();
        let at = |n: &str| names.iter().position(|h| h == n);
        let need = |n: &str| {
            at(n).with_context(|| {
                format!(
                    "{}: no column {n} (or its legacy name); a Cost and Usage Report extract needs \
                     line_item_usage_type, line_item_usage_amount and line_item_unblended_cost",
                    file.display()
                )
            })
        };
        Ok(Columns {
            usage_type: need("line_item_usage_type")?,
            usage_amount: need("line_item_usage_amount")?,
            cost: need("line_item_unblended_cost")?,
            operation: at("line_item_operation"),
            resource_id: at("line_item_resource_id"),
            start: at("line_item_usage_start_date"),
            line_item_type: at("line_item_line_item_type"),
        })
    }

    fn line(
        &self,
        file: &Path,
        row: u64,
        header: &[String],
        v: &[Option<String>],
    ) -> Result<Option<BillLine>> {
        let text = |i: usize| v.get(i).and_then(|x| x.as_deref()).map(str::trim).unwrap_or("");
        let opt = |i: Option<usize>| i.map(text).filter(|s| !s.is_empty()).map(str::to_string);
        // Credits, refunds and taxes are not usage egressor could explain.
        if let Some(kind) = opt(self.line_item_type)
            && !matches!(kind.as_str(), "Usage" | "DiscountedUsage" | "SavingsPlanCoveredUsage")
        {
            return Ok(None);
        }
        let number = |i: usize| -> Result<Decimal> {
            let t = text(i);
            if t.is_empty() {
                return Ok(Decimal::ZERO);
            }
            t.parse::<Decimal>().or_else(|_| Decimal::from_scientific(t)).map_err(|_| {
                anyhow::anyhow!("{}:{row}: {}: {t:?} is not a number", file.display(), header[i])
            })
        };
        let usage_type = text(self.usage_type).to_string();
        if usage_type.is_empty() {
            bail!("{}:{row}: {}: empty usage type", file.display(), header[self.usage_type]);
        }
        Ok(Some(BillLine {
            usage_type,
            operation: opt(self.operation).unwrap_or_default(),
            usage_amount: number(self.usage_amount)?,
            cost: number(self.cost)?,
            resource_id: opt(self.resource_id),
            month: opt(self.start).map(|s| s.chars().take(7).collect()),
            row,
        }))
    }
}

/// Bill lines from header and rows (text values), as both readers produce them.
pub fn from_table(file: &Path, header: &[String], rows: &[Vec<Option<String>>]) -> Result<Vec<BillLine>> {
    let cols = Columns::find(file, header)?;
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(l) = cols.line(file, i as u64 + 2, header, r)? {
            out.push(l);
        }
    }
    Ok(out)
}

/// A CSV extract (`.csv` or `.csv.gz`): header line, then one line item per row.
pub fn read_csv(file: &Path, reader: Box<dyn std::io::Read>) -> Result<Vec<BillLine>> {
    let mut csv = csv::ReaderBuilder::new().flexible(false).from_reader(reader);
    let header: Vec<String> = csv
        .headers()
        .with_context(|| format!("{}:1: cannot read the CSV header", file.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in csv.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}: not a CSV row", file.display(), i + 2))?;
        rows.push(rec.iter().map(|v| Some(v.to_string())).collect());
    }
    from_table(file, &header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_cur2_names_are_one_schema() {
        assert_eq!(normalise_column("lineItem/UsageType"), "line_item_usage_type");
        assert_eq!(normalise_column("lineItem/UnblendedCost"), "line_item_unblended_cost");
        assert_eq!(normalise_column("line_item_usage_amount"), "line_item_usage_amount");
        assert_eq!(normalise_column("lineItem/ResourceId"), "line_item_resource_id");
    }

    #[test]
    fn bad_numbers_are_located_and_credits_skipped() {
        let text = "lineItem/UsageType,lineItem/UsageAmount,lineItem/UnblendedCost,lineItem/LineItemType\n\
                    USE1-DataTransfer-Regional-Bytes,10,0.1,Usage\n\
                    USE1-DataTransfer-Regional-Bytes,10,-0.1,Credit\n\
                    USE1-NatGateway-Bytes,ten,0.45,Usage\n";
        let err =
            read_csv(Path::new("cur.csv"), Box::new(std::io::Cursor::new(text.to_string()))).unwrap_err();
        assert_eq!(format!("{err:#}"), "cur.csv:4: lineItem/UsageAmount: \"ten\" is not a number");
        let ok = read_csv(Path::new("cur.csv"), Box::new(std::io::Cursor::new(text.replace("ten", "10"))))
            .unwrap();
        assert_eq!(ok.len(), 2, "the credit is not usage");
        assert_eq!(ok[1].usage_amount, Decimal::from(10));
    }
}
