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

/// Scoring this many points or more grows each tree once, for all of them (only the nodes some of
/// them reach); fewer, only each point's path on its own (a path visits about twice the sample, a
/// whole tree the sample times its depth).
const WHOLE_TREES_FROM: usize = 4;

/// A trained forest: each tree's sample, from which its nodes are grown when scoring.
pub struct Forest {
    /// The points trained on.
    points: Vec<Point>,
    /// `TREES` samples of `sample` points (indices into `points`), one after the other: a quarter
    /// of the memory of the points themselves, copied once per tree when it is grown.
    samples: Vec<u32>,
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
            samples.extend(idx[..sample].iter().map(|&i| u32::try_from(i).expect("fewer than 2^32 points")));
        }
        Forest { points: points.to_vec(), samples, sample, seed, limit }
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
        let mut asked: Vec<usize> = Vec::with_capacity(points.len());
        for tree in 0..TREES {
            let sample = &self.samples[tree * self.sample..(tree + 1) * self.sample];
            let fill = |work: &mut Vec<Point>| {
                work.clear();
                work.extend(sample.iter().map(|&i| self.points[i as usize]));
            };
            if points.len() >= WHOLE_TREES_FROM {
                fill(&mut work);
                asked.clear();
                asked.extend(0..points.len());
                self.grow(tree, &mut work, 1, 0, points, &mut asked, &mut total);
            } else {
                for (sum, p) in total.iter_mut().zip(points) {
                    fill(&mut work);
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
            && is_outside(&bounds, p)
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

    /// Grows the subtree of `node` (holding `points`) where any of the points `asked` (indices
    /// into `queries`) goes, adding each one's path length in this tree to its `total`: the paths
    /// [`Forest::path`] would walk one by one, with the nodes they share grown once. Nodes no asked
    /// point reaches are not grown (the top levels are shared, the rest mostly is not).
    #[allow(clippy::too_many_arguments)]
    fn grow(
        &self,
        tree: usize,
        points: &mut [Point],
        node: u64,
        depth: usize,
        queries: &[Point],
        asked: &mut [usize],
        total: &mut [f64],
    ) {
        match self.step(tree, node, depth, points, None) {
            Step::Leaf(len) => asked.iter().for_each(|&q| total[q] += len),
            Step::Outside => unreachable!("no point is asked of the step while growing"),
            Step::Split { feature, at, bounds } => {
                // Points outside everything this node holds end here (see `step`), the others go
                // left or right: `asked` is reordered as [outside | left | right].
                let outside = partition_by(asked, |q| is_outside(&bounds, &queries[q]));
                let (ended, going) = asked.split_at_mut(outside);
                ended.iter().for_each(|&q| total[q] += depth as f64 + 1.0);
                let going_left = partition_by(going, |q| queries[q][feature] < at);
                let (to_left, to_right) = going.split_at_mut(going_left);
                let (left, right) = partition(points, feature, at);
                if !to_left.is_empty() {
                    self.grow(tree, left, 2 * node, depth + 1, queries, to_left, total);
                }
                if !to_right.is_empty() {
                    self.grow(tree, right, 2 * node + 1, depth + 1, queries, to_right, total);
                }
            }
        }
    }
}

/// A point beyond a node's `bounds` on any feature by more than a tenth of its spread there (at
/// all where the node's points are all equal).
fn is_outside(bounds: &[(f64, f64); FEATURES], p: &Point) -> bool {
    bounds.iter().zip(p).any(|((lo, hi), v)| {
        let margin = 0.1 * (hi - lo);
        *v < lo - margin || *v > hi + margin
    })
}

/// Indices for which `first` holds first; returns how many.
fn partition_by(items: &mut [usize], first: impl Fn(usize) -> bool) -> usize {
    let mut i = 0;
    for j in 0..items.len() {
        if first(items[j]) {
            items.swap(i, j);
            i += 1;
        }
    }
    i
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
