//! A second generator of labelled scenarios, written apart from the demo and not used to tune the
//! detectors: hourly series as the anomaly engine reads them, with what makes detection hard in
//! real clusters (weekly rhythms, a holiday dip, a deliberate launch ramp, noisy low-volume series,
//! missing hours of a cluster-wide outage, an agent down) and, when asked, injected events at
//! random places: spikes, a slow burn, a new endpoint and a leak, each labelled.
//!
//! A deliberate launch ramps a series up over three days and is labelled a slow burn: egressor
//! cannot know intent, it reports the trend with its cost once, and the user acknowledges it.

use crate::engines::anomaly::score::Label;
use crate::engines::anomaly::{Kind, Series, SeriesSet, Subject, SubjectKind};
use crate::model::Timestamp;
use crate::model::rng::SplitMix64;

/// Draws beyond the uniform ones of [`SplitMix64`]: the same seed gives the same scenario.
struct Rng(SplitMix64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }
    /// exp(N(0, sigma)) by Box-Muller.
    fn lognormal(&mut self, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * sigma).exp()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Daytime peak, quieter weekends.
    Office {
        weekend: f64,
    },
    Flat,
    /// One busy hour a day.
    Batch {
        hour: usize,
    },
    /// A few KB to a couple of MB an hour, very noisy, some hours silent.
    Trickle,
}

struct Spec {
    subject: Subject,
    level: f64,
    shape: Shape,
    noise: f64,
    out_share: f64,
    /// Bytes start flowing at this hour (0: from the start).
    from: usize,
}

pub struct Generated {
    pub set: SeriesSet,
    pub labels: Vec<Label>,
}

fn edge(a: &str, b: &str, external: bool) -> Subject {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    Subject {
        kind: SubjectKind::Edge,
        name: format!("{a} <-> {b}"),
        ends: vec![a.to_string(), b.to_string()],
        external,
        cloud: false,
        classes: Vec::new(),
    }
}

fn workload(i: usize) -> String {
    format!("gen/Deployment/w{i}")
}

/// One scenario: `series` background edges over `days` days from a Monday-or-later start, the
/// nuisances always, the launch ramp and the injected events only when `inject`.
pub fn generate(seed: u64, days: usize, series: usize, inject: bool) -> Generated {
    let mut rng = Rng(SplitMix64(seed ^ 0x005E_ED0F_5CE4_A210));
    let hours = days * 24;
    // Start on a varying weekday, at midnight UTC.
    let start = Timestamp::parse("2026-09-07T00:00:00Z")
        .expect("constant")
        .add_micros((seed % 7) as i64 * Timestamp::MICROS_PER_DAY);
    let mut specs: Vec<Spec> = (0..series).map(|i| background(&mut rng, i)).collect();
    let mut labels = Vec::new();
    let at = |h: usize| start.add_micros(h as i64 * Timestamp::MICROS_PER_HOUR);

    let mut x: Vec<Vec<f64>> = specs.iter().map(|s| draw(&mut rng, s, start, hours)).collect();

    // Nuisances: a holiday (one weekday at 30%), a cluster-wide outage (6 missing hours), an agent
    // down (a tenth of the series read zero for 8 hours).
    let holiday = (14 + rng.below(days.saturating_sub(16).max(1))).min(days - 1) * 24;
    for (s, v) in specs.iter().zip(x.iter_mut()) {
        if matches!(s.shape, Shape::Office { .. }) {
            for b in v.iter_mut().take(hours).skip(holiday).take(24) {
                *b *= 0.3;
            }
        }
    }
    let outage = 24 * (3 + rng.below(days - 4)) + rng.below(18);
    for v in x.iter_mut() {
        for b in v.iter_mut().skip(outage).take(6) {
            *b = f64::NAN;
        }
    }
    let down = 24 * (3 + rng.below(days - 4)) + rng.below(16);
    for v in x.iter_mut().step_by(10) {
        for b in v.iter_mut().skip(down).take(8) {
            if !b.is_nan() {
                *b = 0.0;
            }
        }
    }

    if inject {
        inject_events(&mut rng, &mut specs, &mut x, &mut labels, hours, &at);
    }
    let set = SeriesSet {
        start,
        hours,
        series: specs
            .into_iter()
            .zip(x)
            .map(|(s, bytes)| {
                let out =
                    bytes.iter().map(|v| if v.is_nan() { 0.0 } else { (v * s.out_share) as f32 }).collect();
                let conns =
                    bytes.iter().map(|v| if v.is_nan() { 0.0 } else { (v / 2e6).ceil() as f32 }).collect();
                Series { subject: s.subject, bytes, out, conns }
            })
            .collect(),
    };
    Generated { set, labels }
}

fn background(rng: &mut Rng, i: usize) -> Spec {
    let pick = rng.unit();
    let (shape, level, noise) = if pick < 0.4 {
        (Shape::Office { weekend: rng.range(0.4, 0.9) }, 10f64.powf(rng.range(7.5, 9.7)), 0.1)
    } else if pick < 0.6 {
        (Shape::Flat, 10f64.powf(rng.range(7.0, 9.0)), 0.08)
    } else if pick < 0.7 {
        (Shape::Batch { hour: rng.below(24) }, 10f64.powf(rng.range(8.5, 10.5)), 0.1)
    } else if pick < 0.9 {
        (Shape::Trickle, 10f64.powf(rng.range(4.0, 6.3)), 0.8)
    } else {
        (Shape::Office { weekend: rng.range(0.5, 0.9) }, 10f64.powf(rng.range(6.5, 8.5)), 0.15)
    };
    let external = pick >= 0.9;
    let subject = if external {
        edge(&workload(i), &format!("internet 203.0.113.{}", i % 200), true)
    } else {
        edge(&workload(i), &workload(i + 1_000_000), false)
    };
    Spec { subject, level, shape, noise, out_share: rng.range(0.1, 0.9), from: 0 }
}

fn shape_at(shape: Shape, t: Timestamp) -> f64 {
    let dt = t.to_datetime();
    let hour = chrono::Timelike::hour(&dt) as f64;
    let weekday = chrono::Datelike::weekday(&dt).num_days_from_monday();
    match shape {
        Shape::Office { weekend } => {
            let day = 0.55 + 0.45 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos();
            day * if weekday >= 5 { weekend } else { 1.0 }
        }
        Shape::Flat | Shape::Trickle => 1.0,
        Shape::Batch { hour: h } => f64::from(u8::from(hour as usize == h)),
    }
}

fn draw(rng: &mut Rng, s: &Spec, start: Timestamp, hours: usize) -> Vec<f64> {
    (0..hours)
        .map(|h| {
            if h < s.from {
                return 0.0;
            }
            let t = start.add_micros(h as i64 * Timestamp::MICROS_PER_HOUR);
            let v = s.level * shape_at(s.shape, t) * rng.lognormal(s.noise);
            if s.shape == Shape::Trickle && rng.unit() < 0.05 { 0.0 } else { v.round() }
        })
        .collect()
}

/// A series at least this busy an hour on average can carry an injected spike or burn that the
/// default thresholds (10 MB a day) would report.
const EVENT_LEVEL: f64 = 1e8;

fn inject_events(
    rng: &mut Rng,
    specs: &mut Vec<Spec>,
    x: &mut Vec<Vec<f64>>,
    labels: &mut Vec<Label>,
    hours: usize,
    at: &dyn Fn(usize) -> Timestamp,
) {
    let days = hours / 24;
    let busy: Vec<usize> = (0..specs.len())
        .filter(|&i| {
            specs[i].level >= EVENT_LEVEL && matches!(specs[i].shape, Shape::Office { .. } | Shape::Flat)
        })
        .collect();
    let mut used = std::collections::BTreeSet::new();
    let mut pick = |rng: &mut Rng| loop {
        let i = busy[rng.below(busy.len())];
        if used.insert(i) {
            return i;
        }
    };
    let label = |kind, s: &Subject, a: usize, b: usize| Label {
        kind,
        start: at(a),
        end: at(b),
        subject: s.ends[0].clone(),
        remote: Some(s.ends[1].clone()),
    };
    // Two spikes: 4-10x for 1-4 hours, on a weekday's working hours or any hour.
    for _ in 0..2 {
        let i = pick(rng);
        let a = 24 * (10 + rng.below(days - 12)) + rng.below(24);
        let len = 1 + rng.below(4);
        let f = rng.range(4.0, 10.0);
        let floor = specs[i].level * 0.3;
        for b in x[i].iter_mut().skip(a).take(len) {
            *b = b.max(floor) * f;
        }
        labels.push(label(Kind::Spike, &specs[i].subject, a, a + len));
    }
    // A slow burn: +5-15% a day from a day on, to the end.
    let i = pick(rng);
    let from_day = 10 + rng.below(days - 16);
    let g = rng.range(0.05, 0.15);
    for (h, b) in x[i].iter_mut().enumerate().skip(from_day * 24) {
        *b *= (1.0 + g).powi((h / 24 - from_day + 1) as i32);
    }
    labels.push(label(Kind::SlowBurn, &specs[i].subject, from_day * 24, hours));
    // A deliberate launch: 1x -> 3x over three days, then a plateau.
    let i = pick(rng);
    let from_day = 10 + rng.below(days - 16);
    for (h, b) in x[i].iter_mut().enumerate().skip(from_day * 24) {
        *b *= 1.0 + 2.0 * ((h - from_day * 24) as f64 / 72.0).min(1.0);
    }
    labels.push(label(Kind::SlowBurn, &specs[i].subject, from_day * 24, hours));
    // A new endpoint: a workload starts calling a new external API.
    let n = specs.len();
    let a = 24 * (10 + rng.below(days - 12)) + rng.below(24);
    let spec = Spec {
        subject: edge(&workload(n), &format!("internet 192.0.2.{}", 1 + rng.below(250)), true),
        level: 10f64.powf(rng.range(7.0, 9.0)),
        shape: Shape::Office { weekend: 0.7 },
        noise: 0.1,
        out_share: 0.4,
        from: a,
    };
    let start = at(0);
    x.push(draw(rng, &spec, start, hours));
    labels.push(Label {
        kind: Kind::NewEndpoint,
        start: at(a),
        end: at(hours),
        subject: workload(n),
        remote: Some(spec.subject.ends[1].clone()),
    });
    specs.push(spec);
    // A leak: steady 1-20 MB an hour, day and night, mostly outbound.
    let a = 24 * (7 + rng.below(days - 10)) + rng.below(24);
    let spec = Spec {
        subject: edge(&workload(n + 1), &format!("internet 198.51.100.{}", 1 + rng.below(250)), true),
        level: 10f64.powf(rng.range(6.0, 7.3)),
        shape: Shape::Flat,
        noise: 0.05,
        out_share: 0.95,
        from: a,
    };
    x.push(draw(rng, &spec, start, hours));
    labels.push(Label {
        kind: Kind::Leak,
        start: at(a),
        end: at(hours),
        subject: workload(n + 1),
        remote: Some(spec.subject.ends[1].clone()),
    });
    specs.push(spec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_scenario() {
        let a = generate(3, 35, 40, true);
        let b = generate(3, 35, 40, true);
        assert_eq!(a.set.series.len(), 42);
        assert_eq!(a.labels.len(), 6);
        for (x, y) in a.set.series.iter().zip(&b.set.series) {
            assert_eq!(x.subject, y.subject);
            assert!(x.bytes.iter().zip(&y.bytes).all(|(p, q)| p == q || (p.is_nan() && q.is_nan())));
        }
        assert!(
            a.set.series.iter().any(|s| s.bytes.iter().any(|v| v.is_nan())),
            "the outage is missing hours"
        );
    }
}
