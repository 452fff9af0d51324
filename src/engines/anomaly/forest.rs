//! Isolation forest (Liu, Ting & Zhou, 2008) over an edge's hourly features, as a second opinion
//! beside the four rule-based detectors: points that a few random splits isolate are unusual for
//! that edge. Deterministic: every node's random split comes from a generator keyed by the edge,
//! the tree and the node's place in it, so the same data gives the same scores on every run, and a
//! tree grown whole or only along one point's path has the same splits.

/// Features of one hour of an edge: log bytes, log connections, log out/in ratio, hour of day.
pub const FEATURES: usize = 4;
pub type Point = [f64; FEATURES];

use crate::model::rng::SplitMix64 as Rng;

pub const TREES: usize = 50;
pub const SAMPLE: usize = 256;

/// Scoring more points than this grows each tree whole once; fewer, only each point's path (a
/// path visits about twice the sample, a whole tree the sample times its depth).
const WHOLE_TREES_FROM: usize = 4;

/// A trained forest: each tree's sample, from which its nodes are grown when scoring.
pub struct Forest {
    /// `TREES` samples of `sample` points, one after the other.
    samples: Vec<Point>,
    sample: usize,
    seed: u64,
    /// Depth at which growing stops (log2 of the sample, as the paper does).
    limit: usize,
}

/// What one node of a tree does with a point.
enum Step {
    /// The node is a leaf: the path ends here, with the expected path length of its points.
    Leaf(f64),
    /// The point lies outside everything the node holds: one split would isolate it.
    Outside,
    /// The node splits `feature` at `at`; `bounds` are its points' (for the outside test).
    Split { feature: usize, at: f64, bounds: [(f64, f64); FEATURES] },
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
        let mut idx: Vec<usize> = (0..points.len()).collect();
        let mut samples = Vec::with_capacity(TREES * sample);
        for _ in 0..TREES {
            // Sampling without replacement: a partial Fisher-Yates over indices (any order of
            // `idx` is a fine start, so it is not reset between trees).
            for i in 0..sample {
                let j = i + rng.below(points.len() - i);
                idx.swap(i, j);
            }
            samples.extend(idx[..sample].iter().map(|&i| points[i]));
        }
        Forest { samples, sample, seed, limit }
    }

    /// Anomaly score in (0, 1): near 1 is isolated quickly (unusual), 0.5 and below is ordinary.
    pub fn score(&self, p: &Point) -> f64 {
        self.scores(std::slice::from_ref(p))[0]
    }

    /// [`Forest::score`] of each point.
    pub fn scores(&self, points: &[Point]) -> Vec<f64> {
        if self.sample < 2 {
            return vec![0.0; points.len()];
        }
        let mut total = vec![0.0; points.len()];
        let mut work = Vec::with_capacity(self.sample);
        for tree in 0..TREES {
            let sample = &self.samples[tree * self.sample..(tree + 1) * self.sample];
            if points.len() >= WHOLE_TREES_FROM {
                work.clear();
                work.extend_from_slice(sample);
                let mut nodes = Vec::new();
                self.grow(tree, &mut work, 1, 0, &mut nodes);
                for (sum, p) in total.iter_mut().zip(points) {
                    *sum += walk(&nodes, p);
                }
            } else {
                for (sum, p) in total.iter_mut().zip(points) {
                    work.clear();
                    work.extend_from_slice(sample);
                    *sum += self.path(tree, &mut work, p);
                }
            }
        }
        total.iter().map(|sum| 2f64.powf(-sum / TREES as f64 / c(self.sample))).collect()
    }

    /// What node `node` (1 the root, 2n and 2n+1 its children) of `tree`, holding `points`, does
    /// with `p` (`None`: a whole tree is being grown, no point asked).
    fn step(&self, tree: usize, node: u64, depth: usize, points: &[Point], p: Option<&Point>) -> Step {
        if depth >= self.limit || points.len() <= 1 {
            return Step::Leaf(depth as f64 + c(points.len()));
        }
        let mut bounds = [(f64::MAX, f64::MIN); FEATURES];
        for q in points {
            for (b, v) in bounds.iter_mut().zip(q) {
                *b = (b.0.min(*v), b.1.max(*v));
            }
        }
        let mut rng =
            Rng(self.seed ^ (tree as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ node.rotate_left(32));
        // A feature that still varies in this node, picked at random.
        let start = rng.below(FEATURES);
        let Some(feature) =
            (0..FEATURES).map(|k| (start + k) % FEATURES).find(|&f| bounds[f].1 > bounds[f].0)
        else {
            return Step::Leaf(depth as f64 + c(points.len()));
        };
        // Outside everything this node holds (by more than a tenth of its spread, or at all where
        // the node's points are all equal): one split would isolate it. Plain isolation forests
        // score such a point like the most extreme point they saw.
        if let Some(p) = p
            && bounds.iter().zip(p).any(|((lo, hi), v)| {
                let margin = 0.1 * (hi - lo);
                *v < lo - margin || *v > hi + margin
            })
        {
            return Step::Outside;
        }
        let (lo, hi) = bounds[feature];
        Step::Split { feature, at: lo + rng.unit() * (hi - lo), bounds }
    }

    /// The path length of `p` in `tree`, growing only the nodes on its path.
    fn path(&self, tree: usize, mut points: &mut [Point], p: &Point) -> f64 {
        let (mut node, mut depth) = (1u64, 0usize);
        loop {
            match self.step(tree, node, depth, points, Some(p)) {
                Step::Leaf(len) => return len,
                Step::Outside => return depth as f64 + 1.0,
                Step::Split { feature, at, .. } => {
                    let (left, right) = partition(points, feature, at);
                    (points, node) = if p[feature] < at { (left, 2 * node) } else { (right, 2 * node + 1) };
                    depth += 1;
                }
            }
        }
    }

    /// Grows the whole subtree of `node` into `nodes` (indexed by node number), with each split's
    /// bounds kept for the outside test.
    fn grow(&self, tree: usize, points: &mut [Point], node: u64, depth: usize, nodes: &mut Vec<Grown>) {
        let at = node as usize;
        if nodes.len() <= at {
            nodes.resize(at + 1, Grown::Leaf(0.0));
        }
        match self.step(tree, node, depth, points, None) {
            Step::Leaf(len) => nodes[at] = Grown::Leaf(len),
            Step::Outside => unreachable!("no point is asked while growing"),
            Step::Split { feature, at: split, bounds } => {
                nodes[at] = Grown::Split { feature, at: split, bounds, depth };
                let (left, right) = partition(points, feature, split);
                self.grow(tree, left, 2 * node, depth + 1, nodes);
                self.grow(tree, right, 2 * node + 1, depth + 1, nodes);
            }
        }
    }
}

/// A node of a tree grown whole.
#[derive(Clone)]
enum Grown {
    Leaf(f64),
    Split { feature: usize, at: f64, bounds: [(f64, f64); FEATURES], depth: usize },
}

/// The path length of `p` in a tree grown whole: the same as [`Forest::path`].
fn walk(nodes: &[Grown], p: &Point) -> f64 {
    let mut node = 1;
    loop {
        match &nodes[node] {
            Grown::Leaf(len) => return *len,
            Grown::Split { feature, at, bounds, depth } => {
                let outside = bounds.iter().zip(p).any(|((lo, hi), v)| {
                    let margin = 0.1 * (hi - lo);
                    *v < lo - margin || *v > hi + margin
                });
                if outside {
                    return *depth as f64 + 1.0;
                }
                node = if p[*feature] < *at { 2 * node } else { 2 * node + 1 };
            }
        }
    }
}

/// Points below `at` on `feature` first: (below, the rest).
fn partition(points: &mut [Point], feature: usize, at: f64) -> (&mut [Point], &mut [Point]) {
    let mut i = 0;
    for j in 0..points.len() {
        if points[j][feature] < at {
            points.swap(i, j);
            i += 1;
        }
    }
    points.split_at_mut(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<Point> {
        (0..500)
            .map(|i| {
                let h = (i % 24) as f64;
                [10.0 + (i % 7) as f64 * 0.05, 3.0 + (i % 5) as f64 * 0.1, 0.1 + (i % 3) as f64 * 0.02, h]
            })
            .collect()
    }

    #[test]
    fn an_unusual_point_scores_higher_than_ordinary_ones_and_scores_repeat() {
        let points = history();
        let f = Forest::train(&points, 7);
        let ordinary = f.score(&points[100]);
        let odd = f.score(&[14.0, 6.0, 2.0, 3.0]);
        assert!(odd > 0.6 && odd > ordinary + 0.1, "odd {odd} ordinary {ordinary}");
        assert_eq!(Forest::train(&points, 7).score(&[14.0, 6.0, 2.0, 3.0]), odd);
    }

    #[test]
    fn trees_grown_whole_and_along_one_path_score_the_same() {
        let points = history();
        let f = Forest::train(&points, 11);
        let asked: Vec<Point> = vec![
            points[3],
            points[250],
            [14.0, 6.0, 2.0, 3.0],
            [10.1, 3.2, 0.12, 7.0],
            [10.0, 3.0, 0.1, 30.0],
        ];
        assert!(asked.len() >= WHOLE_TREES_FROM, "grown whole");
        let whole = f.scores(&asked);
        let one_by_one: Vec<f64> = asked.iter().map(|p| f.score(p)).collect();
        assert_eq!(whole, one_by_one);
    }
}
