//! Isolation forest (Liu, Ting & Zhou, 2008) over an edge's hourly features, as a second opinion
//! beside the four rule-based detectors: points that a few random splits isolate are unusual for
//! that edge. Deterministic: the random splits come from a counter-based generator keyed by the
//! edge, so the same data gives the same scores on every run.

/// Features of one hour of an edge: log bytes, log connections, log out/in ratio, hour of day.
pub const FEATURES: usize = 4;
pub type Point = [f64; FEATURES];

use crate::model::rng::SplitMix64 as Rng;

pub const TREES: usize = 50;
pub const SAMPLE: usize = 256;

enum Node {
    Leaf { size: usize },
    Split { feature: usize, at: f64, bounds: Box<[(f64, f64); FEATURES]>, left: Box<Node>, right: Box<Node> },
}

pub struct Forest {
    trees: Vec<Node>,
    sample: usize,
}

/// Average path length of an unsuccessful search in a binary search tree of n points.
fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl Forest {
    /// A forest trained on `points` (the edge's history), seeded by `seed`.
    pub fn train(points: &[Point], seed: u64) -> Forest {
        let mut rng = Rng(seed);
        let sample = points.len().min(SAMPLE);
        let limit = (sample.max(2) as f64).log2().ceil() as usize;
        let trees = (0..TREES)
            .map(|_| {
                // Sampling without replacement: a partial Fisher-Yates over indices.
                let mut idx: Vec<usize> = (0..points.len()).collect();
                for i in 0..sample {
                    let j = i + rng.below(points.len() - i);
                    idx.swap(i, j);
                }
                let mut mine: Vec<Point> = idx[..sample].iter().map(|&i| points[i]).collect();
                grow(&mut mine, 0, limit, &mut rng)
            })
            .collect();
        Forest { trees, sample }
    }

    /// Anomaly score in (0, 1): near 1 is isolated quickly (unusual), 0.5 and below is ordinary.
    pub fn score(&self, p: &Point) -> f64 {
        if self.sample < 2 {
            return 0.0;
        }
        let mean = self.trees.iter().map(|t| path(t, p, 0)).sum::<f64>() / self.trees.len() as f64;
        2f64.powf(-mean / c(self.sample))
    }
}

fn grow(points: &mut [Point], depth: usize, limit: usize, rng: &mut Rng) -> Node {
    if depth >= limit || points.len() <= 1 {
        return Node::Leaf { size: points.len() };
    }
    let mut bounds = [(f64::MAX, f64::MIN); FEATURES];
    for p in points.iter() {
        for (b, v) in bounds.iter_mut().zip(p) {
            *b = (b.0.min(*v), b.1.max(*v));
        }
    }
    // A feature that still varies in this node, picked at random.
    let start = rng.below(FEATURES);
    for k in 0..FEATURES {
        let f = (start + k) % FEATURES;
        let (lo, hi) = bounds[f];
        if hi > lo {
            let at = lo + rng.unit() * (hi - lo);
            let mut i = 0;
            for j in 0..points.len() {
                if points[j][f] < at {
                    points.swap(i, j);
                    i += 1;
                }
            }
            let (l, r) = points.split_at_mut(i);
            return Node::Split {
                feature: f,
                at,
                bounds: Box::new(bounds),
                left: Box::new(grow(l, depth + 1, limit, rng)),
                right: Box::new(grow(r, depth + 1, limit, rng)),
            };
        }
    }
    Node::Leaf { size: points.len() }
}

fn path(node: &Node, p: &Point, depth: usize) -> f64 {
    match node {
        Node::Leaf { size } => depth as f64 + c(*size),
        Node::Split { feature, at, bounds, left, right } => {
            // Outside everything this node holds (by more than a tenth of its spread, or at all
            // where the node's points are all equal): one split would isolate it. Plain
            // isolation forests score such a point like the most extreme point they saw.
            let outside = bounds.iter().zip(p).any(|((lo, hi), v)| {
                let margin = 0.1 * (hi - lo);
                *v < lo - margin || *v > hi + margin
            });
            if outside {
                return depth as f64 + 1.0;
            }
            if p[*feature] < *at { path(left, p, depth + 1) } else { path(right, p, depth + 1) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusual_point_scores_higher_than_ordinary_ones_and_scores_repeat() {
        let points: Vec<Point> = (0..500)
            .map(|i| {
                let h = (i % 24) as f64;
                [10.0 + (i % 7) as f64 * 0.05, 3.0 + (i % 5) as f64 * 0.1, 0.1 + (i % 3) as f64 * 0.02, h]
            })
            .collect();
        let f = Forest::train(&points, 7);
        let ordinary = f.score(&points[100]);
        let odd = f.score(&[14.0, 6.0, 2.0, 3.0]);
        assert!(odd > 0.6 && odd > ordinary + 0.1, "odd {odd} ordinary {ordinary}");
        assert_eq!(Forest::train(&points, 7).score(&[14.0, 6.0, 2.0, 3.0]), odd);
    }
}
