//! The facts `explain` prints and the read-only tools `ask` lets Claude call, computed one way:
//! every tool is a query over the workspace through the engines the CLI's own commands use (the
//! cost engine, the period comparison, the detectors, the savings), returning JSON.

use super::load::{self, Analysis, AnalysisQuery, PeriodQuery};
use crate::claude::ToolDef;
use crate::cli::{NetworkArgs, Settings};
use crate::engines::anomaly::{self, Finding, Kind, Thresholds, baseline};
use crate::engines::compare::{self, Comparison};
use crate::engines::cost::{CostReport, GroupBy};
use crate::engines::explain::{self, Explanation};
use crate::engines::savings;
use crate::model::{TimeBound, Timestamp, parse_time_bound};
use crate::store::Workspace;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::cell::OnceCell;
use std::collections::BTreeSet;

/// How many lines a tool returns at most: Claude gets summaries, not the whole workspace.
const LINES_SHOWN: usize = 15;

/// The period another is compared with.
#[derive(Debug, Clone, Copy)]
pub enum CompareWith {
    /// The same length, just before.
    Previous,
    /// The same hours, this many microseconds before.
    Shifted(i64),
}

impl CompareWith {
    pub fn parse(s: &str) -> Result<CompareWith> {
        if s == "previous" {
            return Ok(CompareWith::Previous);
        }
        match parse_time_bound(s) {
            Ok(TimeBound::Ago(us)) if us > 0 => Ok(CompareWith::Shifted(us)),
            _ => bail!("--compare {s:?}: expected `previous` or a duration such as 7d or 24h"),
        }
    }
}

pub struct Investigation<'a> {
    settings: &'a Settings,
    net: &'a NetworkArgs,
    analysis: OnceCell<Analysis>,
}

impl<'a> Investigation<'a> {
    pub fn new(settings: &'a Settings, net: &'a NetworkArgs) -> Self {
        Investigation { settings, net, analysis: OnceCell::new() }
    }

    /// A period priced by the cost engine, grouped as asked.
    pub fn cost(&self, by: GroupBy, since: TimeBound, until: Option<TimeBound>) -> Result<CostReport> {
        let q = PeriodQuery {
            since,
            until,
            topology: self.net.topology.as_deref(),
            pricing: &self.net.prices.pricing,
            by,
        };
        Ok(load::priced_period(self.settings, &q)?.1)
    }

    /// A period and the one it is compared with, by `by`.
    pub fn compare(
        &self,
        by: GroupBy,
        since: TimeBound,
        until: Option<TimeBound>,
        with: CompareWith,
    ) -> Result<(CostReport, Comparison)> {
        let now = self.cost(by, since, until)?;
        let len = now.until.micros() - now.since.micros();
        let shift = match with {
            CompareWith::Previous => len,
            CompareWith::Shifted(us) => us,
        };
        let before_since = Timestamp::from_micros(now.since.micros() - shift);
        let before_until = Timestamp::from_micros(now.until.micros() - shift);
        let before = self.cost(by, TimeBound::At(before_since), Some(TimeBound::At(before_until)))?;
        let c = compare::compare(&now, &before);
        Ok((now, c))
    }

    /// The anomalies going on at any time in [since, until).
    pub fn anomalies(&self, since: Timestamp, until: Timestamp) -> Result<Vec<&Finding>> {
        let a = self.analysis()?;
        Ok(a.findings.iter().filter(|f| f.start < until && f.end.is_none_or(|e| e > since)).collect())
    }

    fn analysis(&self) -> Result<&Analysis> {
        if let Some(a) = self.analysis.get() {
            return Ok(a);
        }
        let q = AnalysisQuery {
            thresholds: Thresholds::default(),
            topology: self.net.topology.as_deref(),
            pricing: &self.net.prices.pricing,
            series_only: false,
        };
        let a = load::analyse(self.settings, &q)?;
        Ok(self.analysis.get_or_init(|| a))
    }

    /// What `explain` prints: the period against the one before, its anomalies, the recommendations.
    pub fn explain(
        &self,
        since: TimeBound,
        until: Option<TimeBound>,
        with: CompareWith,
    ) -> Result<Explanation> {
        let (now, c) = self.compare(GroupBy::Edge, since, until, with)?;
        let findings = self.anomalies(now.since, now.until)?;
        let recs = savings::recommend(&now);
        Ok(explain::explain(c, &findings, recs))
    }

    /// Names a person would recognise in the workspace (pods, workloads, namespaces, services,
    /// nodes): what `--redact-names` replaces.
    pub fn names(&self) -> Result<Vec<String>> {
        // The stored rollups name every party; nothing needs pricing to list them.
        let ws = Workspace::open(&self.settings.workspace)?;
        let Some((first, last)) = ws.traffic_span()? else { return Ok(Vec::new()) };
        let mut names = BTreeSet::new();
        for row in ws.traffic(first, last.add_micros(Timestamp::MICROS_PER_HOUR))? {
            names.insert(row.node);
            for p in [row.local, row.remote] {
                names.extend([p.pod, p.namespace, p.workload_name, p.service, p.node].into_iter().flatten());
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Runs one tool; an error is returned to Claude as the tool's result, marked as an error.
    pub fn call(&self, name: &str, input: &Value) -> Result<Value> {
        let since = |default: &str| -> Result<TimeBound> {
            time_arg(input, "since").unwrap_or_else(|| time(default))
        };
        let until = || time_arg(input, "until").transpose();
        match name {
            "cost_breakdown" => {
                let by = group_by(input)?;
                Ok(cost_summary(&self.cost(by, since("7d")?, until()?)?, LINES_SHOWN))
            }
            "top_edges" => {
                let n = input.get("n").and_then(Value::as_u64).unwrap_or(10).min(50) as usize;
                Ok(cost_summary(&self.cost(GroupBy::Edge, since("24h")?, until()?)?, n))
            }
            "compare_periods" => {
                let with =
                    CompareWith::parse(input.get("compare").and_then(Value::as_str).unwrap_or("previous"))?;
                let (_, mut c) = self.compare(group_by(input)?, since("24h")?, until()?, with)?;
                c.lines.truncate(LINES_SHOWN);
                Ok(serde_json::to_value(c)?)
            }
            "anomalies" => self.anomalies_tool(input, since("7d")?),
            "series" => self.series_tool(input, since("7d")?),
            "explain_cost_line" => {
                let key = str_arg(input, "key")?;
                let report = self.cost(group_by(input)?, since("7d")?, until()?)?;
                explain_line(&report, key)
            }
            "recommendations" => {
                let report = self.cost(GroupBy::Workload, since("30d")?, until()?)?;
                Ok(json!({ "currency": report.currency, "recommendations": savings::recommend(&report) }))
            }
            "topology_summary" => self.topology_tool(),
            _ => bail!("no tool named {name:?}; the tools are {}", TOOL_NAMES.join(", ")),
        }
    }

    fn anomalies_tool(&self, input: &Value, since: TimeBound) -> Result<Value> {
        let since = since.resolve(self.settings.now);
        let kind = match input.get("type").and_then(Value::as_str) {
            Some(k) => Some(Kind::parse(k).ok_or_else(|| {
                anyhow!("type {k:?}: expected spike, slow-burn, new-endpoint, leak or outlier")
            })?),
            None => None,
        };
        let until = self.analysis()?.until;
        let found: Vec<Value> = self
            .anomalies(since, until.max(self.settings.now))?
            .into_iter()
            .filter(|f| kind.is_none_or(|k| f.kind == k))
            .map(|f| {
                json!({
                    "id": f.id, "type": f.kind, "subject": f.subject.name, "start": f.start, "end": f.end,
                    "expected_bytes_per_day": f.expected_bytes_per_day, "observed_bytes_per_day": f.observed_bytes_per_day,
                    "growth_per_day": f.growth_per_day, "cost_per_day": f.cost_per_day,
                    "projected_extra_per_month": f.projected_extra_per_month, "cost_basis": f.cost_basis,
                    "state": f.state, "next_steps": f.next_steps,
                })
            })
            .collect();
        Ok(json!({ "since": since, "anomalies": found }))
    }

    fn series_tool(&self, input: &Value, since: TimeBound) -> Result<Value> {
        let subject = str_arg(input, "subject")?;
        let a = self.analysis()?;
        let s = a.set.find(subject).map_err(|candidates| match candidates.len() {
            0 => anyhow!("no series named {subject:?}; names look like `egress:shop/Deployment/checkout`, `edge:A <-> B`, `external:internet 203.0.113.10`, `class:cross-zone`"),
            _ => anyhow!("{subject:?} names {} series: {}", candidates.len(), candidates.iter().take(10).cloned().collect::<Vec<_>>().join("; ")),
        })?;
        let from = a.set.index_of(since.resolve(self.settings.now)).max(s.bytes.len().saturating_sub(7 * 24));
        let b = baseline::baseline(&s.bytes, a.set.start, s.bytes.len());
        let recent = anomaly::recent(&a.set, s, from);
        Ok(json!({ "subject": s.subject.key(), "baseline": b, "recent_hours": recent }))
    }

    fn topology_tool(&self) -> Result<Value> {
        let report =
            self.cost(GroupBy::Workload, TimeBound::Ago(30 * 24 * Timestamp::MICROS_PER_HOUR), None)?;
        let (mut zones, mut regions, mut nodes, mut namespaces, mut workloads, mut external) = (
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::new(),
        );
        for t in &report.transfers {
            let (l, r) = (t.local(), t.remote());
            zones.extend(l.zone.clone());
            regions.extend(l.region.clone());
            nodes.insert(t.node.clone());
            namespaces.extend(l.namespace.clone());
            workloads.insert(l.workload_label());
            if r.namespace.is_none() && r.node.is_none() {
                external.insert(t.classified.class.as_str());
            }
        }
        Ok(json!({
            "provider": report.provider, "topology": report.topology, "data_since": report.since, "data_until": report.until,
            "regions": regions, "zones": zones, "nodes": nodes.len(), "namespaces": namespaces,
            "workloads": workloads.len(), "classes_of_external_traffic": external,
        }))
    }
}

/// A cost report as a tool returns it: totals, classes and the `n` costliest lines.
fn cost_summary(r: &CostReport, n: usize) -> Value {
    let lines: Vec<Value> = r
        .lines
        .iter()
        .take(n)
        .map(|l| json!({ "key": l.key, "bytes": l.bytes, "cost": l.cost, "classes": l.classes }))
        .collect();
    json!({
        "since": r.since, "until": r.until, "grouped_by": r.by.as_str(), "currency": r.currency,
        "totals": r.totals, "by_class": r.by_class, "lines": lines, "lines_not_shown": r.lines.len().saturating_sub(n),
    })
}

/// One cost line with the meters it draws on (quantity, tiers, unit prices): how its cost was made.
fn explain_line(r: &CostReport, key: &str) -> Result<Value> {
    let matching: Vec<_> = r.lines.iter().filter(|l| l.key.contains(key)).collect();
    let line = match matching.as_slice() {
        [one] => *one,
        [] => bail!("no {} line contains {key:?} in {} to {}", r.by.as_str(), r.since, r.until),
        many => bail!(
            "{key:?} is in {} lines: {}",
            many.len(),
            many.iter().take(10).map(|l| l.key.as_str()).collect::<Vec<_>>().join("; ")
        ),
    };
    let meters: BTreeSet<usize> = line.parts.iter().map(|p| p.meter).collect();
    Ok(json!({
        "currency": r.currency, "since": r.since, "until": r.until, "line": line,
        "meters": meters.iter().filter_map(|&m| r.meters.get(m).map(|mt| json!({ "index": m, "meter": mt }))).collect::<Vec<_>>(),
    }))
}

fn time(s: &str) -> Result<TimeBound> {
    parse_time_bound(s).map_err(|e| anyhow!(e))
}

fn time_arg(input: &Value, field: &str) -> Option<Result<TimeBound>> {
    input.get(field).and_then(Value::as_str).map(|s| time(s).with_context(|| format!("field {field:?}")))
}

fn str_arg<'v>(input: &'v Value, field: &str) -> Result<&'v str> {
    input.get(field).and_then(Value::as_str).ok_or_else(|| anyhow!("field {field:?} (a string) is required"))
}

fn group_by(input: &Value) -> Result<GroupBy> {
    let by = input.get("by").and_then(Value::as_str).unwrap_or("edge");
    GroupBy::parse(by)
        .ok_or_else(|| anyhow!("by {by:?}: expected namespace, workload, service, edge, class, node or zone"))
}

const TOOL_NAMES: [&str; 8] = [
    "cost_breakdown",
    "compare_periods",
    "top_edges",
    "series",
    "anomalies",
    "explain_cost_line",
    "recommendations",
    "topology_summary",
];

/// The tools, with their JSON schemas: what Claude may call.
pub fn tools() -> Vec<ToolDef> {
    let time = |what: &str| json!({ "type": "string", "description": format!("{what}: a duration before now (24h, 7d) or an RFC 3339 time") });
    let by = json!({ "type": "string", "enum": ["namespace", "workload", "service", "edge", "class", "node", "zone"] });
    let tool = |name: &str, description: &str, properties: Value, required: &[&str]| ToolDef {
        name: name.to_string(),
        description: description.to_string(),
        input_schema: json!({ "type": "object", "properties": properties, "required": required }),
    };
    vec![
        tool(
            "cost_breakdown",
            "Transfer cost of a period, priced with tiers and free allowances, grouped by the given key; the costliest lines, totals and cost by class.",
            json!({ "by": by, "since": time("start (default 7d)"), "until": time("end (default now)") }),
            &[],
        ),
        tool(
            "compare_periods",
            "What changed: a period against the one before it (or the same hours `compare` earlier), each line's and each class's bytes and cost in both, largest cost growth first.",
            json!({ "by": by, "since": time("start (default 24h)"), "until": time("end (default now)"), "compare": { "type": "string", "description": "`previous` (default) or a duration such as 7d" } }),
            &[],
        ),
        tool(
            "top_edges",
            "The costliest edges (sender -> receiver) of a period.",
            json!({ "since": time("start (default 24h)"), "until": time("end (default now)"), "n": { "type": "integer", "minimum": 1, "maximum": 50 } }),
            &[],
        ),
        tool(
            "series",
            "One hourly series (an edge, a workload's egress, an external endpoint or a class) with its baseline: statistics over 24h/7d/28d, the weekday x hour profile, and recent hours against the expected band.",
            json!({ "subject": { "type": "string", "description": "e.g. `egress:shop/Deployment/checkout`, `edge:A <-> B`, `external:internet ext-1`, `class:cross-zone`, or part of one name" }, "since": time("recent hours from (default 7d)") }),
            &["subject"],
        ),
        tool(
            "anomalies",
            "Anomalies (spike, slow-burn, new-endpoint, leak, outlier) going on since a time, each with expected vs observed bytes, cost per day and the next step.",
            json!({ "since": time("from (default 7d)"), "type": { "type": "string", "enum": ["spike", "slow-burn", "new-endpoint", "leak", "outlier"] } }),
            &[],
        ),
        tool(
            "explain_cost_line",
            "How one cost line's cost was computed: its parts and the meters they draw on (quantities, tiers, unit prices, free allowances).",
            json!({ "key": { "type": "string", "description": "the line's key or a part of it that only it has" }, "by": by, "since": time("start (default 7d)"), "until": time("end (default now)") }),
            &["key"],
        ),
        tool(
            "recommendations",
            "Savings recommendations for a period, each with its evidence and its computed monthly saving.",
            json!({ "since": time("start (default 30d)"), "until": time("end (default now)") }),
            &[],
        ),
        tool(
            "topology_summary",
            "What the workspace covers: provider, regions, zones, node and workload counts, namespaces, the data's time span.",
            json!({}),
            &[],
        ),
    ]
}
