//! The honesty check of `ask`: every money and byte figure in Claude's answer is looked for in the
//! tool results of that conversation, and a figure none of them holds is marked unverified.
//!
//! A figure matches a value when the value, rounded to the precision the figure is written with,
//! is the figure: "$13.22" matches 13.2199, "$13" matches 12.6, "302 GiB" matches any byte count
//! that prints as 302 GiB. Byte units are read both ways (GB as 10^9 and as 2^30): answers often
//! write GB for what egressor prints as GiB, and that is a unit slip, not an invented number.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FigureKind {
    Money,
    Bytes,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// As written in the answer.
    pub text: String,
    pub kind: FigureKind,
    pub value: f64,
    pub verified: bool,
}

/// A figure as parsed: its value and half of the unit of its last written digit.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    kind: FigureKind,
    value: f64,
    half_step: f64,
    /// Another reading of the unit (GB as GiB), if any.
    alt: Option<(f64, f64)>,
}

/// Checks every figure of `answer` against the values in `evidence` (the tool results).
pub fn check(answer: &str, evidence: &[Value]) -> Vec<Figure> {
    let mut known = Vec::new();
    for v in evidence {
        collect(v, &mut known);
    }
    figures(answer)
        .into_iter()
        .map(|(text, p)| {
            let verified = known.iter().any(|k| matches(&p, k));
            Figure { text, kind: p.kind, value: p.value, verified }
        })
        .collect()
}

/// A value of the evidence and what it measures. Money is written as decimal strings (the cost
/// engine's exact amounts), bytes as JSON integers; text carries figures with their unit. A bare
/// number inside text (a timestamp's 11, a count of nodes) is neither, so it verifies nothing.
#[derive(Debug, Clone, Copy)]
struct Known {
    kind: FigureKind,
    value: f64,
}

fn matches(p: &Parsed, k: &Known) -> bool {
    if k.kind != p.kind {
        return false;
    }
    let close = |value: f64, half: f64, x: f64| (x - value).abs() <= half * 1.000_001 + 1e-9;
    // A negative change is quoted as a fall: "$3 less" for -3.
    [k.value, k.value.abs()]
        .iter()
        .any(|&x| close(p.value, p.half_step, x) || p.alt.is_some_and(|(v, h)| close(v, h, x)))
}

fn collect(v: &Value, out: &mut Vec<Known>) {
    match v {
        Value::Number(n) => {
            if let Some(bytes) = n.as_u64() {
                out.push(Known { kind: FigureKind::Bytes, value: bytes as f64 });
            }
        }
        Value::String(s) => {
            if let Ok(amount) = s.trim().parse::<rust_decimal::Decimal>() {
                out.push(Known { kind: FigureKind::Money, value: f64::try_from(amount).unwrap_or(f64::NAN) });
            }
            out.extend(figures(s).into_iter().map(|(_, p)| Known { kind: p.kind, value: p.value }));
        }
        Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// The number starting at byte `i` (digits, one '.', ',' between digit groups): (digits without
/// separators, end offset).
fn number_at(s: &str, i: usize) -> (String, usize) {
    let b = s.as_bytes();
    let mut j = i;
    let mut text = String::new();
    let mut dot = false;
    while j < b.len() {
        let c = b[j];
        let next_digit = j + 1 < b.len() && b[j + 1].is_ascii_digit();
        if c.is_ascii_digit() {
            text.push(c as char);
        } else if c == b',' && next_digit && !dot {
            // 1,234 — a separator, not a list
        } else if c == b'.' && next_digit && !dot {
            dot = true;
            text.push('.');
        } else {
            break;
        }
        j += 1;
    }
    (text, j)
}

const UNITS: [(&str, f64, Option<f64>); 14] = [
    ("bytes", 1.0, None),
    ("byte", 1.0, None),
    ("B", 1.0, None),
    ("KiB", 1024.0, Some(1e3)),
    ("MiB", 1_048_576.0, Some(1e6)),
    ("GiB", 1_073_741_824.0, Some(1e9)),
    ("TiB", 1_099_511_627_776.0, Some(1e12)),
    ("PiB", 1_125_899_906_842_624.0, Some(1e15)),
    ("KB", 1e3, Some(1024.0)),
    ("kB", 1e3, Some(1024.0)),
    ("MB", 1e6, Some(1_048_576.0)),
    ("GB", 1e9, Some(1_073_741_824.0)),
    ("TB", 1e12, Some(1_099_511_627_776.0)),
    ("PB", 1e15, Some(1_125_899_906_842_624.0)),
];

/// Money ($12.34, 12.34 USD, USD 12.34, optionally with k/M) and byte figures (4.5 GiB, 1,024 bytes).
fn figures(s: &str) -> Vec<(String, Parsed)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let (digits, end) = number_at(s, i);
        let Ok(mut value) = digits.parse::<f64>() else {
            i = end;
            continue;
        };
        let decimals = digits.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
        let mut half = 0.5 * 10f64.powi(-decimals);
        let before = s[..i].trim_end();
        let after = &s[end..];
        let rest = after.trim_start();
        let dollar = before.ends_with('$') || before.ends_with("USD");
        // 1.2k / 3M after a money amount.
        let (scale, rest_after_scale, scale_len) = match rest.chars().next() {
            Some('k') | Some('K') if dollar && !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) => {
                (1e3, &rest[1..], 1)
            }
            Some('M') if dollar && !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) => {
                (1e6, &rest[1..], 1)
            }
            _ => (1.0, rest, 0),
        };
        value *= scale;
        half *= scale;
        let start = if before.ends_with('$') { before.len() - 1 } else { i };
        let gap = after.len() - rest.len();
        let suffix = ["USD", "dollars"].into_iter().find(|u| rest_after_scale.starts_with(u));
        if dollar || suffix.is_some() {
            let stop = match (dollar, suffix) {
                (true, _) if scale_len == 0 => end,
                (true, _) => end + gap + scale_len,
                (false, u) => end + gap + scale_len + u.map_or(0, str::len),
            };
            let parsed = Parsed { kind: FigureKind::Money, value, half_step: half, alt: None };
            out.push((s[start..stop].trim().to_string(), parsed));
        } else if let Some((unit, factor, alt)) = UNITS.iter().find(|(u, ..)| {
            rest.starts_with(u) && !rest[u.len()..].starts_with(|c: char| c.is_ascii_alphabetic())
        }) {
            let stop = end + (after.len() - rest.len()) + unit.len();
            out.push((
                s[i..stop].to_string(),
                Parsed {
                    kind: FigureKind::Bytes,
                    value: value * factor,
                    half_step: half * factor,
                    alt: alt.map(|a| (value * a, half * a)),
                },
            ));
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_are_read_with_their_precision() {
        let f = figures(
            "It cost $13.22 a day ($1.2k a month), 302 GiB/day, 4,007,860 bytes and 12.5 USD; v1.2 GB? 3 pods",
        );
        let texts: Vec<&str> = f.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, ["$13.22", "$1.2k", "302 GiB", "4,007,860 bytes", "12.5 USD"]);
        assert_eq!(f[1].1.value, 1200.0);
        assert_eq!(f[3].1.value, 4_007_860.0);
    }

    #[test]
    fn a_figure_no_tool_result_holds_is_unverified() {
        let evidence =
            vec![json!({"cost_per_day": "13.2199", "bytes": 324_259_000_000u64, "note": "now 302 GiB/day"})];
        let c = check(
            "The burn costs $13.22/day, about 302 GiB a day (324 GB); it will cost $99.10 more.",
            &evidence,
        );
        let verdict: Vec<(&str, bool)> = c.iter().map(|f| (f.text.as_str(), f.verified)).collect();
        assert_eq!(verdict, [("$13.22", true), ("302 GiB", true), ("324 GB", true), ("$99.10", false)]);
        // Numbers that are not amounts verify nothing: a timestamp's hour, a count, a byte count
        // quoted as dollars.
        let evidence = vec![json!({"start": "2026-11-13T11:00:00Z", "nodes": 7, "bytes": 42})];
        let c = check("It started at 11:00 and costs $11.00 a day on 7 nodes, $7 or $42 in all.", &evidence);
        assert!(c.iter().all(|f| !f.verified), "{c:?}");
        assert_eq!(c.len(), 3);
    }
}
