//! How often the detectors are right: findings matched against labelled events (the demo's
//! injected events, the scenario generator's), as precision, recall and time to detect per type.

use super::{Finding, Kind};
use crate::model::Timestamp;
use serde::Serialize;

/// An event that happened, as a generator knows it.
#[derive(Debug, Clone, Serialize)]
pub struct Label {
    pub kind: Kind,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The workload whose behaviour changed (`namespace/name`, or a subject's name).
    pub subject: String,
    /// The other end (`namespace/name`, an address, a cloud service), when there is one.
    pub remote: Option<String>,
}

/// Does a party as a finding names it (`shop/Deployment/checkout`, `internet 203.0.113.9`,
/// `aws:S3 us-east-1`) stand for a party as a label names it (`shop/checkout`, `203.0.113.9:443`,
/// `52.216.0.10 (aws:S3 via NAT)`)?
pub fn same_party(name: &str, label: &str) -> bool {
    if name == label {
        return true;
    }
    if let Some((ns, n)) = label.split_once('/')
        && !n.contains('/')
        && name.starts_with(&format!("{ns}/"))
        && name.ends_with(&format!("/{n}"))
    {
        return true;
    }
    let ip = label.split([' ', ':']).next().unwrap_or("");
    let name_ip = name.trim_start_matches("internet ");
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_ok() && name_ip == ip {
        return true;
    }
    // A cloud service: `aws:S3 us-east-1` against a label that names `aws:S3`.
    let service = name.split(' ').next().unwrap_or("");
    service.contains(':') && label.contains(service)
}

/// How far before a labelled start a finding may begin and still be that event (a slow burn's
/// start is estimated from daily totals).
fn lead(kind: Kind) -> i64 {
    match kind {
        Kind::SlowBurn => 3 * Timestamp::MICROS_PER_DAY,
        _ => 3 * Timestamp::MICROS_PER_HOUR,
    }
}

pub fn matches(f: &Finding, l: &Label) -> bool {
    if f.kind != l.kind && f.kind != Kind::Outlier {
        return false;
    }
    let f_end = f.end.map_or(i64::MAX, |e| e.micros());
    if f.start.micros() >= l.end.micros() || f_end <= l.start.micros() {
        return false;
    }
    if f.start.micros() < l.start.micros() - lead(l.kind) {
        return false;
    }
    let mut names: Vec<&str> = f.subject.ends.iter().map(String::as_str).collect();
    // `also` holds `TYPE KIND:NAME` (the name after the first colon) or `spike ID at TIME`.
    names.extend(
        f.also.iter().filter(|a| !a.starts_with("spike ")).filter_map(|a| a.split_once(':').map(|(_, n)| n)),
    );
    let has = |p: &str| names.iter().any(|n| same_party(n, p));
    match &l.remote {
        Some(r) if f.subject.kind == super::SubjectKind::Edge => has(&l.subject) && has(r),
        Some(r) => has(&l.subject) || has(r),
        None => has(&l.subject),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeScore {
    pub kind: Kind,
    pub labels: usize,
    pub detected: usize,
    pub findings: usize,
    pub true_findings: usize,
    /// Hours from each detected label's start to the first matching finding's detection.
    pub detect_hours: Vec<f64>,
}

/// Scores per type. Outliers count as true when they match a label of any type; the labels they
/// alone found (no rule-based finding did) are what the forest adds to recall.
pub fn score(findings: &[Finding], labels: &[Label]) -> Vec<TypeScore> {
    Kind::ALL
        .into_iter()
        .map(|kind| {
            let mine: Vec<&Finding> = findings.iter().filter(|f| f.kind == kind).collect();
            let my_labels: Vec<&Label> =
                labels.iter().filter(|l| kind == Kind::Outlier || l.kind == kind).collect();
            let true_findings = mine.iter().filter(|f| labels.iter().any(|l| matches(f, l))).count();
            let mut detect_hours = Vec::new();
            let mut detected = 0;
            if kind != Kind::Outlier {
                for l in &my_labels {
                    let first = mine.iter().filter(|f| matches(f, l)).map(|f| f.detected_at.micros()).min();
                    if let Some(t) = first {
                        detected += 1;
                        detect_hours
                            .push((t - l.start.micros()).max(0) as f64 / Timestamp::MICROS_PER_HOUR as f64);
                    }
                }
            } else {
                // Labels only the forest found.
                detected = labels
                    .iter()
                    .filter(|l| {
                        mine.iter().any(|f| matches(f, l))
                            && !findings.iter().any(|f| f.kind != Kind::Outlier && matches(f, l))
                    })
                    .count();
            }
            TypeScore {
                kind,
                labels: if kind == Kind::Outlier { labels.len() } else { my_labels.len() },
                detected,
                findings: mine.len(),
                true_findings,
                detect_hours,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_match_as_people_name_them() {
        assert!(same_party("shop/Deployment/checkout", "shop/checkout"));
        assert!(!same_party("shop/Deployment/checkout-v2", "shop/checkout"));
        assert!(same_party("internet 203.0.113.9", "203.0.113.9:443"));
        assert!(!same_party("internet 203.0.113.90", "203.0.113.9:443"));
        assert!(same_party("aws:S3 us-east-1", "52.216.0.10 (aws:S3 via NAT)"));
        assert!(!same_party("internet 52.216.0.10", "shop/catalog"));
    }
}
