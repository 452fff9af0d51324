//! Hourly series out of the rollups: one per edge (a pair of parties, either way round), per
//! workload's egress, per external endpoint and per cost class. Each party is named the way the rest
//! of egressor names it (`namespace/Kind/name`, `aws:S3 us-east-1`, `internet 203.0.113.10`), by
//! the same classifier the cost engine uses, so a finding's subject is something `graph --focus` and
//! `cost` understand.

use super::{Series, SeriesSet, Subject, SubjectKind};
use crate::engines::classify::{Classifier, Direction};
use crate::model::{HourlyTraffic, Party, Timestamp};
use std::collections::{BTreeMap, HashMap};

/// What a (node, local, remote) pair is named and classed as.
#[derive(Debug, Clone)]
pub struct PairLabels {
    pub local: String,
    pub remote: String,
    /// The remote end is outside our networks (the internet or a cloud service).
    pub external: bool,
    pub cloud: bool,
    pub class_out: String,
    pub class_in: String,
}

/// Names pairs of parties once each (the classifier is the expensive part).
pub struct Labeler<'c, 'a> {
    classifier: &'c mut Classifier<'a>,
    cache: HashMap<(String, Party, Party), PairLabels>,
}

impl<'c, 'a> Labeler<'c, 'a> {
    pub fn new(classifier: &'c mut Classifier<'a>) -> Self {
        Labeler { classifier, cache: HashMap::new() }
    }

    pub fn labels(&mut self, node: &str, local: &Party, remote: &Party) -> PairLabels {
        let key = (node.to_string(), local.clone(), remote.clone());
        if let Some(l) = self.cache.get(&key) {
            return l.clone();
        }
        let out = self.classifier.classify(node, local, remote, Direction::Out);
        let back = self.classifier.classify(node, local, remote, Direction::In);
        let external = out.service.is_some() || out.remote_label.starts_with("internet ");
        let l = PairLabels {
            local: local.workload_label(),
            remote: out.remote_label.clone(),
            external,
            cloud: out.service.is_some(),
            class_out: out.class.as_str().to_string(),
            class_in: back.class.as_str().to_string(),
        };
        self.cache.insert(key, l.clone());
        l
    }
}

/// Subjects a pair of labels contributes to, in the order [`build`] fills them.
pub fn edge_subject(l: &PairLabels) -> Subject {
    let (a, b) = if l.local <= l.remote { (&l.local, &l.remote) } else { (&l.remote, &l.local) };
    Subject {
        kind: SubjectKind::Edge,
        name: format!("{a} <-> {b}"),
        ends: vec![a.clone(), b.clone()],
        external: l.external,
        cloud: l.cloud,
        classes: Vec::new(),
    }
}

fn simple(kind: SubjectKind, name: &str, external: bool, cloud: bool) -> Subject {
    Subject {
        kind,
        name: name.to_string(),
        ends: vec![name.to_string()],
        external,
        cloud,
        classes: Vec::new(),
    }
}

/// Accumulates one subject's hours. Edges keep each observer's view apart: when both ends
/// reported the same transfer, the hour counts it once (the larger view), not twice. Egress and
/// classes are counted from the sender's report only, in view 0.
struct Acc {
    subject: Subject,
    views: [Vec<f64>; 2],
    out: [Vec<f32>; 2],
    conns: [Vec<f32>; 2],
    classes: BTreeMap<String, ()>,
}

impl Acc {
    fn new(subject: Subject, hours: usize, features: bool) -> Acc {
        let f = if features { hours } else { 0 };
        Acc {
            subject,
            views: [vec![0.0; hours], vec![0.0; hours]],
            out: [vec![0.0; f], vec![0.0; f]],
            conns: [vec![0.0; f], vec![0.0; f]],
            classes: BTreeMap::new(),
        }
    }
}

/// The series of `rows`, over `hours` hours from `start`. Hours in which no row at all exists (no
/// agent reported anything) are missing (NaN) in every series, not zero.
pub fn build(
    rows: &[HourlyTraffic],
    start: Timestamp,
    hours: usize,
    labeler: &mut Labeler<'_, '_>,
) -> SeriesSet {
    let mut accs: BTreeMap<(SubjectKind, String), Acc> = BTreeMap::new();
    let mut covered = vec![false; hours];
    for r in rows {
        let t = (r.hour.micros() - start.micros()) / Timestamp::MICROS_PER_HOUR;
        if t < 0 || t as usize >= hours {
            continue;
        }
        let t = t as usize;
        covered[t] = true;
        let l = labeler.labels(&r.node, &r.local, &r.remote);
        let (out, back, conns) = (r.bytes_out as f64, r.bytes_in as f64, r.connections as f64);
        let all = out + back;
        let edge = edge_subject(&l);
        // The view of the end that reported this row; its "out" is what that end sent.
        let view = usize::from(l.local != edge.ends[0]);
        // The out/in feature: what our end sent when the other end is external, else what the
        // edge's first end sent.
        let sent_by_first = if l.external || view == 0 { out } else { back };
        fn add(
            accs: &mut BTreeMap<(SubjectKind, String), Acc>,
            s: Subject,
            hours: usize,
            (t, view, bytes): (usize, usize, f64),
            features: Option<(f32, f32)>,
        ) -> &mut Acc {
            let acc = accs
                .entry((s.kind, s.name.clone()))
                .or_insert_with(|| Acc::new(s, hours, features.is_some()));
            acc.views[view][t] += bytes;
            if let Some((sent, conns)) = features {
                acc.out[view][t] += sent;
                acc.conns[view][t] += conns;
            }
            acc
        }
        let e = add(&mut accs, edge, hours, (t, view, all), Some((sent_by_first as f32, conns as f32)));
        e.classes.insert(l.class_out.clone(), ());
        e.classes.insert(l.class_in.clone(), ());
        add(&mut accs, simple(SubjectKind::Egress, &l.local, false, false), hours, (t, 0, out), None);
        if l.external {
            let s = simple(SubjectKind::External, &l.remote, true, l.cloud);
            let acc = accs.entry((s.kind, s.name.clone())).or_insert_with(|| Acc::new(s, hours, true));
            // One view: only our end reports an external transfer; "out" is what we sent.
            acc.views[0][t] += all;
            acc.out[0][t] += out as f32;
            acc.conns[0][t] += conns as f32;
        }
        // A class counts each transfer once, from its sender's report: bytes in only when the
        // sender is external (no agent of ours saw it leave).
        add(&mut accs, simple(SubjectKind::Class, &l.class_out, false, false), hours, (t, 0, out), None);
        if l.external {
            add(&mut accs, simple(SubjectKind::Class, &l.class_in, false, false), hours, (t, 0, back), None);
        }
    }
    let series = accs.into_values().map(|a| finish(a, &covered)).collect();
    SeriesSet { start, hours, series }
}

fn finish(a: Acc, covered: &[bool]) -> Series {
    let Acc { mut subject, views, out, conns, classes } = a;
    subject.classes = classes.into_keys().collect();
    let hours = covered.len();
    let pick = |t: usize| usize::from(views[1][t] > views[0][t]);
    let bytes = (0..hours).map(|t| if covered[t] { views[pick(t)][t] } else { f64::NAN }).collect();
    let f = |v: &[Vec<f32>; 2]| -> Vec<f32> {
        if v[0].is_empty() { Vec::new() } else { (0..hours).map(|t| v[pick(t)][t]).collect() }
    };
    Series { subject, bytes, out: f(&out), conns: f(&conns) }
}
