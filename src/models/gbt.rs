//! Histogram gradient-boosted trees (binary log-loss and squared error), grown leaf-wise like
//! LightGBM: features are bucketed into at most 255 value bins plus a missing bin, each leaf
//! keeps a (gradient, hessian, count) histogram per feature, the larger child's histogram is
//! the parent's minus the smaller child's, and the leaf with the best gain is split next.
//!
//! Missing values (NaN) get their own bin; each split tries sending them left and right and
//! keeps the better side as the node's default direction, which prediction then follows.
//! Every random draw (row and feature subsampling, validation split) comes from one seeded
//! `ChaCha8Rng`, so the same data and seed give the same trees.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Matrix, ModelError, Objective};

/// The knobs users bring from LightGBM/XGBoost (LightGBM's names and defaults where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GbtParams {
    /// Boosting rounds (trees).
    pub n_trees: usize,
    pub learning_rate: f64,
    /// Maximum leaves per tree (leaf-wise growth).
    pub num_leaves: usize,
    /// Maximum depth; 0 = unlimited (then `num_leaves` alone bounds a tree).
    pub max_depth: usize,
    /// Minimum rows in a leaf.
    pub min_data_in_leaf: usize,
    /// Minimum hessian sum in a leaf.
    pub min_sum_hessian_in_leaf: f64,
    /// L2 regularization on leaf values.
    pub l2: f64,
    /// Minimum gain for a split.
    pub min_gain_to_split: f64,
    /// Share of rows drawn (without replacement) for each tree.
    pub row_subsample: f64,
    /// Share of features drawn for each tree.
    pub feature_subsample: f64,
    /// Stop when the validation loss has not improved for this many rounds (0 = off); the
    /// model keeps the best round's trees.
    pub early_stopping_rounds: usize,
    /// Share of the training rows held out (randomly, by the seed) for early stopping.
    pub validation_fraction: f64,
    /// Value bins per feature (at most 255; missing values get their own).
    pub max_bins: usize,
    /// Training threads (0 = one per core): histograms and split search (each feature's on
    /// one thread), row partitions and gradients (each row's on one thread), so the model
    /// does not depend on this. Prediction uses every core.
    pub threads: usize,
}

impl Default for GbtParams {
    fn default() -> Self {
        GbtParams {
            n_trees: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_sum_hessian_in_leaf: 1e-3,
            l2: 0.0,
            min_gain_to_split: 0.0,
            row_subsample: 1.0,
            feature_subsample: 1.0,
            early_stopping_rounds: 0,
            validation_fraction: 0.1,
            max_bins: 255,
            threads: 0,
        }
    }
}

impl GbtParams {
    pub fn check(&self) -> Result<(), String> {
        let fraction = |v: f64| v > 0.0 && v <= 1.0;
        if self.n_trees == 0 {
            return Err("`n_trees` must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err("`learning_rate` must be positive".into());
        }
        if self.num_leaves < 2 {
            return Err("`num_leaves` must be at least 2".into());
        }
        if self.min_data_in_leaf == 0 {
            return Err("`min_data_in_leaf` must be at least 1".into());
        }
        if self.l2 < 0.0 || self.min_sum_hessian_in_leaf < 0.0 || self.min_gain_to_split < 0.0 {
            return Err(
                "`l2`, `min_sum_hessian_in_leaf` and `min_gain_to_split` must be >= 0".into(),
            );
        }
        if !fraction(self.row_subsample) || !fraction(self.feature_subsample) {
            return Err("`row_subsample` and `feature_subsample` must be in (0, 1]".into());
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return Err("`validation_fraction` must be in (0, 1)".into());
        }
        if !(2..=255).contains(&self.max_bins) {
            return Err("`max_bins` must be between 2 and 255".into());
        }
        Ok(())
    }
}

/// One node of a tree in a flat array: a split (`left`/`right` index into the array) or a
/// leaf (`left == 0`; the root is node 0, so no child points at it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Feature index (splits only).
    pub feature: u32,
    /// Rows with `value <= threshold` go left.
    pub threshold: f64,
    /// Where missing values go.
    pub default_left: bool,
    pub left: u32,
    pub right: u32,
    /// The leaf's output (already multiplied by the learning rate).
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    fn predict_row(&self, x: &Matrix, row: usize) -> f64 {
        let mut i = 0usize;
        loop {
            let node = &self.nodes[i];
            if node.left == 0 {
                return node.value;
            }
            let v = x.get(row, node.feature as usize);
            let go_left = if v.is_nan() {
                node.default_left
            } else {
                v <= node.threshold
            };
            i = if go_left { node.left } else { node.right } as usize;
        }
    }
}

/// One step of the branch-free walk, 16 bytes: four to a cache line, where four parallel
/// arrays cost a lookup in each. Children sit side by side (`left`, `left + 1`), so a step
/// needs one index; a leaf goes "left" to itself whatever the value (threshold +inf, missing
/// left).
#[derive(Clone, Copy)]
struct Step {
    threshold: f64,
    /// The feature; the top bit is set when missing values go left (NaN fails `<=`, so
    /// without it they go right).
    feature: u32,
    left: u32,
}

const MISSING_LEFT: u32 = 1 << 31;

/// A tree laid out for branch-free prediction: a leaf's children are itself, and a step is
/// arithmetic on the index (`left + goes right`), not a branch. Rows go through in groups of
/// `LANES`, whose steps are independent: the CPU overlaps them instead of stalling on one
/// row's mispredicted branch at every level. A group stops as soon as none of its rows moved
/// (all are at leaves), so it pays for its own deepest path, not the tree's: leaf-wise trees
/// of 255 leaves are lopsided, their deepest leaf often twice as deep as the typical one.
/// Nodes are renumbered breadth-first, which puts the top levels, where every row goes,
/// next to each other.
struct Compact {
    steps: Vec<Step>,
    value: Vec<f64>,
    depth: usize,
}

impl Compact {
    fn new(tree: &Tree) -> Compact {
        // order[new index] = old index; children are appended in pairs.
        let mut order = vec![0usize];
        let mut depth_of = vec![0usize];
        let mut c = Compact {
            steps: Vec::with_capacity(tree.nodes.len()),
            value: Vec::with_capacity(tree.nodes.len()),
            depth: 0,
        };
        let mut i = 0;
        while i < order.len() {
            let node = &tree.nodes[order[i]];
            let d = depth_of[i];
            if node.left == 0 {
                c.depth = c.depth.max(d);
                c.steps.push(Step {
                    threshold: f64::INFINITY,
                    feature: MISSING_LEFT,
                    left: i as u32,
                });
            } else {
                let flag = if node.default_left { MISSING_LEFT } else { 0 };
                c.steps.push(Step {
                    threshold: node.threshold,
                    feature: node.feature | flag,
                    left: order.len() as u32,
                });
                order.extend([node.left as usize, node.right as usize]);
                depth_of.extend([d + 1, d + 1]);
            }
            c.value.push(node.value);
            i += 1;
        }
        c
    }

    /// Adds this tree's output to `sums`, one per row of `rows` (row-major, `cols` values
    /// per row: the block `sum_trees` transposed).
    fn add_to(&self, rows: &[f64], cols: usize, sums: &mut [f64]) {
        const LANES: usize = 8;
        for (g, group) in sums.chunks_mut(LANES).enumerate() {
            let x = &rows[g * LANES * cols..];
            let mut at = [0u32; LANES];
            for _ in 0..self.depth {
                let mut moved = 0u32;
                for (k, a) in at.iter_mut().enumerate().take(group.len()) {
                    let s = self.steps[*a as usize];
                    let v = x[k * cols + (s.feature & !MISSING_LEFT) as usize];
                    let right = !(v <= s.threshold) & !(v.is_nan() & (s.feature >= MISSING_LEFT));
                    let n = s.left + u32::from(right);
                    moved |= n ^ *a;
                    *a = n;
                }
                if moved == 0 {
                    break;
                }
            }
            for (s, a) in group.iter_mut().zip(at) {
                *s += self.value[a as usize];
            }
        }
    }
}

/// A trained ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbtModel {
    pub objective: Objective,
    /// The starting raw score (log-odds of the base rate, or the mean).
    pub init_score: f64,
    pub trees: Vec<Tree>,
    /// Total split gain per feature.
    pub gain_importance: Vec<f64>,
    /// Validation loss per round (when early stopping ran).
    pub validation_loss: Vec<f64>,
    /// The round whose trees were kept (1-based; = trees.len()).
    pub best_round: usize,
}

impl GbtModel {
    /// Raw scores (log-odds for classification). Rows go in blocks, and every tree runs over a
    /// whole block before the next: one tree's nodes stay in cache for the block, where a
    /// row-at-a-time walk would touch every tree (megabytes) per row. Blocks are shared out
    /// to the cores in contiguous runs; each row's sum still adds the trees in order, so the
    /// result is the same for any thread count.
    pub fn predict_raw(&self, x: &Matrix) -> Vec<f64> {
        let threads = resolve_threads(0);
        self.predict_raw_on(x, threads)
    }

    fn predict_raw_on(&self, x: &Matrix, threads: usize) -> Vec<f64> {
        sum_trees(&self.trees, self.init_score, x, threads)
    }
}

/// `init + Σ trees` for every row of `x`, blocked and shared out to `threads` (see
/// `GbtModel::predict_raw`); a forest's average is the same sum over pre-scaled leaves.
pub(super) fn sum_trees(trees: &[Tree], init: f64, x: &Matrix, threads: usize) -> Vec<f64> {
    const BLOCK: usize = 256;
    let compact: Vec<Compact> = trees.iter().map(Compact::new).collect();
    let mut out = vec![0.0; x.rows];
    let cols = x.cols;
    let run = |start: usize, out: &mut [f64]| {
        // The block, row-major: a row's features sit together (a few cache lines), where
        // the column-major matrix puts them `rows` values apart.
        let mut rows = vec![0.0; BLOCK * cols];
        for (b, block) in out.chunks_mut(BLOCK).enumerate() {
            let first = start + b * BLOCK;
            for j in 0..cols {
                let column = &x.column(j)[first..first + block.len()];
                for (r, &v) in column.iter().enumerate() {
                    rows[r * cols + j] = v;
                }
            }
            for tree in &compact {
                tree.add_to(&rows, cols, block);
            }
        }
        for sum in out.iter_mut() {
            *sum += init;
        }
    };
    let per = x.rows.div_ceil(threads.max(1)).max(BLOCK);
    if threads <= 1 || x.rows <= per {
        run(0, &mut out);
        return out;
    }
    std::thread::scope(|scope| {
        for (k, part) in out.chunks_mut(per).enumerate() {
            scope.spawn(move || run(k * per, part));
        }
    });
    out
}

/// Bin boundaries of one feature: value `v` falls in the first bin `b` with `v <= upper[b]`.
struct BinMapper {
    upper: Vec<f64>,
}

impl BinMapper {
    fn fit(values: &mut Vec<f64>, max_bins: usize) -> BinMapper {
        values.retain(|v| !v.is_nan());
        values.sort_by(f64::total_cmp);
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for &v in values.iter() {
            match distinct.last_mut() {
                Some((last, n)) if *last == v => *n += 1,
                _ => distinct.push((v, 1)),
            }
        }
        let mut upper = Vec::new();
        if distinct.len() <= max_bins {
            // One bin per distinct value; cut halfway between neighbours.
            for w in distinct.windows(2) {
                upper.push(midpoint(w[0].0, w[1].0));
            }
        } else {
            // Roughly equal-count bins over the distinct values, cut between neighbours.
            let total = values.len();
            let per_bin = total as f64 / max_bins as f64;
            let mut seen = 0usize;
            let mut next_cut = per_bin;
            for w in distinct.windows(2) {
                seen += w[0].1;
                if seen as f64 >= next_cut && upper.len() + 1 < max_bins {
                    upper.push(midpoint(w[0].0, w[1].0));
                    while next_cut <= seen as f64 {
                        next_cut += per_bin;
                    }
                }
            }
        }
        upper.push(f64::INFINITY);
        BinMapper { upper }
    }

    fn n_bins(&self) -> usize {
        self.upper.len()
    }

    /// The missing bin is the one after the value bins.
    fn bin(&self, v: f64) -> u8 {
        if v.is_nan() {
            return self.n_bins() as u8;
        }
        self.upper.partition_point(|&u| u < v) as u8
    }
}

fn midpoint(a: f64, b: f64) -> f64 {
    let m = a + (b - a) / 2.0;
    // Guard against rounding onto `b` for adjacent floats: `b` must go right.
    if m >= b { a } else { m }
}

/// Bins of every row, feature-major.
struct Binned {
    bins: Vec<Vec<u8>>,
}

impl Binned {
    fn new(x: &Matrix, mappers: &[BinMapper]) -> Binned {
        let bins = mappers
            .iter()
            .enumerate()
            .map(|(f, m)| x.column(f).iter().map(|&v| m.bin(v)).collect())
            .collect();
        Binned { bins }
    }
}

/// Bins per histogram: up to 255 value bins and the missing bin (`max_bins` ≤ 255).
const HIST_BINS: usize = 256;

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

impl Bin {
    /// One row's gradient and hessian.
    fn add(&mut self, g: f64, h: f64) {
        self.g += g;
        self.h += h;
        self.n += 1;
    }

    /// Takes out a sub-histogram's bin (histogram subtraction).
    fn subtract(&mut self, other: &Bin) {
        self.g -= other.g;
        self.h -= other.h;
        self.n -= other.n;
    }
}

/// A leaf waiting to be split: its rows, histograms and best split.
struct Leaf {
    node: usize,
    rows: Vec<u32>,
    t: Totals,
    hist: Vec<Vec<Bin>>,
    best: Option<Split>,
}

#[derive(Clone, Copy)]
struct Split {
    feature: usize,
    /// Bins `0..=bin` go left.
    bin: usize,
    default_left: bool,
    gain: f64,
    /// Gradient and hessian sums of the rows going left, from the histogram (the children's
    /// totals without another pass over their rows).
    left_g: f64,
    left_h: f64,
}

/// Below this many rows a pass over rows stays on one thread: a spawn costs ~20 µs.
const PARALLEL_ROWS: usize = 20_000;

/// Below this many rows a leaf's histograms and split search stay on one thread. Lower than
/// `PARALLEL_ROWS`: the split search's cost (every bin of every feature, for two leaves) does
/// not shrink with the rows.
const PARALLEL_LEAF_ROWS: usize = 2_048;

/// A leaf's totals, for its split search.
#[derive(Clone, Copy)]
struct Totals {
    n: usize,
    g: f64,
    h: f64,
    depth: usize,
    /// The leaf's node index (what a forest's per-split feature draw is keyed by).
    node: usize,
}

/// A leaf's histograms (empty for the features this tree does not sample) and best split.
struct Grown {
    hist: Vec<Vec<Bin>>,
    best: Option<Split>,
}

/// The better of two candidate splits, the first on ties.
fn first_best(a: Option<Split>, b: Option<Split>) -> Option<Split> {
    match (a, b) {
        (Some(x), Some(y)) if y.gain > x.gain => Some(y),
        (None, y) => y,
        (x, _) => x,
    }
}

struct Grower<'a> {
    params: &'a GbtParams,
    binned: &'a Binned,
    n_bins: Vec<usize>,
    grad: &'a [f64],
    hess: &'a [f64],
    /// Sorted.
    features: Vec<usize>,
    /// A random forest's per-split draw: each leaf searches only `k` of `features`, chosen
    /// by a hash of (`seed`, the leaf's node index), so the draw is the same on any thread.
    split_draw: Option<(usize, u64)>,
    threads: usize,
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Grower<'_> {
    /// The features a leaf's split search may use (indexed by feature), or `None` for all.
    fn drawn(&self, t: &Totals) -> Option<Vec<bool>> {
        let (k, seed) = self.split_draw?;
        let mut keyed: Vec<(u64, usize)> = self
            .features
            .iter()
            .map(|&f| (mix(seed ^ mix(((t.node as u64) << 32) | f as u64)), f))
            .collect();
        keyed.sort_unstable();
        let mut allowed = vec![false; self.n_bins.len()];
        for &(_, f) in keyed.iter().take(k) {
            allowed[f] = true;
        }
        Some(allowed)
    }

    fn leaf_objective(&self, g: f64, h: f64) -> f64 {
        g * g / (h + self.params.l2)
    }

    /// Whether a leaf may be split at all (its depth and size).
    fn splittable(&self, t: &Totals) -> bool {
        let p = self.params;
        !(p.max_depth > 0 && t.depth >= p.max_depth) && t.n >= 2 * p.min_data_in_leaf
    }

    /// The best split of one feature's histogram for a leaf with totals `t`, if any gains
    /// more than `min_gain_to_split`; the first best on ties (lowest bin, missing right).
    fn best_split_of(&self, f: usize, hist: &[Bin], t: &Totals) -> Option<Split> {
        let p = self.params;
        let parent = self.leaf_objective(t.g, t.h);
        let nb = self.n_bins[f];
        let missing = hist[nb];
        let mut acc = Bin::default();
        let mut best: Option<Split> = None;
        // The last value bin cannot be a split point (everything would go left).
        for b in 0..nb.saturating_sub(1) {
            acc.g += hist[b].g;
            acc.h += hist[b].h;
            acc.n += hist[b].n;
            for default_left in [false, true] {
                if default_left && missing.n == 0 {
                    continue;
                }
                let (lg, lh, ln) = if default_left {
                    (acc.g + missing.g, acc.h + missing.h, acc.n + missing.n)
                } else {
                    (acc.g, acc.h, acc.n)
                };
                let (rg, rh, rn) = (t.g - lg, t.h - lh, t.n as u32 - ln);
                if (ln as usize) < p.min_data_in_leaf
                    || (rn as usize) < p.min_data_in_leaf
                    || lh < p.min_sum_hessian_in_leaf
                    || rh < p.min_sum_hessian_in_leaf
                {
                    continue;
                }
                let gain = self.leaf_objective(lg, lh) + self.leaf_objective(rg, rh) - parent;
                if gain > p.min_gain_to_split && best.is_none_or(|s| gain > s.gain) {
                    best = Some(Split {
                        feature: f,
                        bin: b,
                        default_left,
                        gain,
                        left_g: lg,
                        left_h: lh,
                    });
                }
            }
        }
        best
    }

    /// The histograms and best splits of the leaves one split makes, or of the root. The leaf
    /// of `rows` gets its histogram from a pass over its rows; its `sibling`, if any, gets its
    /// parent's histogram minus that one. All of it is per feature, so the features are
    /// shared out to the threads in contiguous runs and the runs' best splits are reduced in
    /// feature order: the same result as one thread.
    fn grow_leaves(
        &self,
        rows: &[u32],
        own: Totals,
        sibling: Option<(Vec<Vec<Bin>>, Totals)>,
    ) -> (Grown, Option<Grown>) {
        // The leaf's gradients in row order, gathered once: each feature's pass then reads
        // them sequentially and only its bins at random (LightGBM's "ordered gradients").
        let gh: Vec<(f64, f64)> = rows
            .iter()
            .map(|&r| (self.grad[r as usize], self.hess[r as usize]))
            .collect();
        let (mut parents, sibling_totals) =
            sibling.map_or((None, None), |(hist, t)| (Some(hist), Some(t)));
        // One item per sampled feature: (feature, the parent's histogram of it).
        let items: Vec<(usize, Option<Vec<Bin>>)> = self
            .features
            .iter()
            .map(|&f| (f, parents.as_mut().map(|h| std::mem::take(&mut h[f]))))
            .collect();
        let (split_own, split_sibling) = (
            self.splittable(&own),
            sibling_totals.is_some_and(|t| self.splittable(&t)),
        );
        let drawn_own = self.drawn(&own);
        let drawn_sibling = sibling_totals.as_ref().and_then(|t| self.drawn(t));
        let may = |drawn: &Option<Vec<bool>>, f: usize| drawn.as_ref().is_none_or(|d| d[f]);
        let work = |run: Vec<(usize, Option<Vec<Bin>>)>| {
            let mut out = Vec::with_capacity(run.len());
            let (mut best_own, mut best_sibling): (Option<Split>, Option<Split>) = (None, None);
            // Every histogram has `HIST_BINS` bins whatever the feature's count, so a `u8`
            // bin index needs no bounds check in the loops below.
            let mut hists: Vec<Vec<Bin>> = run
                .iter()
                .map(|_| vec![Bin::default(); HIST_BINS])
                .collect();
            // Four features per pass over the rows: each row's index and gradients are
            // loaded once for four histogram updates.
            for (group, hs) in run.chunks(4).zip(hists.chunks_mut(4)) {
                let bins: Vec<&[u8]> = group
                    .iter()
                    .map(|(f, _)| self.binned.bins[*f].as_slice())
                    .collect();
                if let ([b0, b1, b2, b3], [h0, h1, h2, h3]) = (bins.as_slice(), &mut *hs) {
                    // Plain locals, not an array of (bins, histogram) pairs: the compiler
                    // then keeps the eight pointers in registers instead of reloading them
                    // after every histogram store.
                    let (b0, b1, b2, b3) = (*b0, *b1, *b2, *b3);
                    let h0: &mut [Bin; HIST_BINS] = h0.as_mut_slice().try_into().expect("sized");
                    let h1: &mut [Bin; HIST_BINS] = h1.as_mut_slice().try_into().expect("sized");
                    let h2: &mut [Bin; HIST_BINS] = h2.as_mut_slice().try_into().expect("sized");
                    let h3: &mut [Bin; HIST_BINS] = h3.as_mut_slice().try_into().expect("sized");
                    for (&r, &(g, h)) in rows.iter().zip(&gh) {
                        let r = r as usize;
                        h0[usize::from(b0[r])].add(g, h);
                        h1[usize::from(b1[r])].add(g, h);
                        h2[usize::from(b2[r])].add(g, h);
                        h3[usize::from(b3[r])].add(g, h);
                    }
                } else {
                    for (bins, hist) in bins.iter().zip(hs.iter_mut()) {
                        for (&r, &(g, h)) in rows.iter().zip(&gh) {
                            hist[bins[r as usize] as usize].add(g, h);
                        }
                    }
                }
            }
            for ((f, parent), hist) in run.into_iter().zip(hists) {
                if split_own && may(&drawn_own, f) {
                    best_own = first_best(best_own, self.best_split_of(f, &hist, &own));
                }
                let sibling_hist = parent.map(|mut p| {
                    // Only the feature's own bins: the rest of the `HIST_BINS` stay zero.
                    for (l, s) in p.iter_mut().zip(&hist).take(self.n_bins[f] + 1) {
                        l.subtract(s);
                    }
                    p
                });
                if let (true, Some(h), Some(t)) = (split_sibling, &sibling_hist, &sibling_totals)
                    && may(&drawn_sibling, f)
                {
                    best_sibling = first_best(best_sibling, self.best_split_of(f, h, t));
                }
                out.push((f, hist, sibling_hist));
            }
            (out, best_own, best_sibling)
        };
        let runs: Vec<_> = if self.threads <= 1 || rows.len() < PARALLEL_LEAF_ROWS {
            vec![work(items)]
        } else {
            let per = items.len().div_ceil(self.threads).max(1);
            let mut chunks: Vec<Vec<(usize, Option<Vec<Bin>>)>> = Vec::new();
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                chunks.push(items.by_ref().take(per).collect());
            }
            std::thread::scope(|scope| {
                let work = &work;
                let mut chunks = chunks.into_iter();
                let first = chunks.next();
                let handles: Vec<_> = chunks.map(|c| scope.spawn(move || work(c))).collect();
                // The calling thread takes the first run rather than waiting idle.
                let mut runs = vec![work(first.unwrap_or_default())];
                runs.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a histogram thread panicked")),
                );
                runs
            })
        };
        let empty = || -> Vec<Vec<Bin>> { (0..self.n_bins.len()).map(|_| Vec::new()).collect() };
        let (mut own_hist, mut sibling_hist) = (empty(), empty());
        let (mut best_own, mut best_sibling) = (None, None);
        for (out, b_own, b_sibling) in runs {
            best_own = first_best(best_own, b_own);
            best_sibling = first_best(best_sibling, b_sibling);
            for (f, hist, sib) in out {
                own_hist[f] = hist;
                if let Some(sib) = sib {
                    sibling_hist[f] = sib;
                }
            }
        }
        let grown = Grown {
            hist: own_hist,
            best: best_own,
        };
        let sibling = sibling_totals.map(|_| Grown {
            hist: sibling_hist,
            best: best_sibling,
        });
        (grown, sibling)
    }

    /// A leaf's rows split by `split`, each side in row order. Big leaves are cut into one
    /// contiguous run per thread and the runs' sides concatenated in order, which gives the
    /// same vectors as one pass.
    fn partition(&self, rows: &[u32], split: &Split) -> (Vec<u32>, Vec<u32>) {
        let bins = &self.binned.bins[split.feature];
        let missing_bin = self.n_bins[split.feature];
        let side = |run: &[u32]| {
            let (mut left, mut right) = (Vec::with_capacity(run.len()), Vec::new());
            for &r in run {
                let b = bins[r as usize] as usize;
                let go_left = if b == missing_bin {
                    split.default_left
                } else {
                    b <= split.bin
                };
                if go_left { left.push(r) } else { right.push(r) }
            }
            (left, right)
        };
        if self.threads <= 1 || rows.len() < PARALLEL_ROWS {
            return side(rows);
        }
        let parts: Vec<(Vec<u32>, Vec<u32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = rows
                .chunks(rows.len().div_ceil(self.threads))
                .map(|run| scope.spawn(move || side(run)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a partitioning thread panicked"))
                .collect()
        });
        let n_left = parts.iter().map(|(l, _)| l.len()).sum();
        let (mut left, mut right) = (
            Vec::with_capacity(n_left),
            Vec::with_capacity(rows.len() - n_left),
        );
        for (l, r) in parts {
            left.extend_from_slice(&l);
            right.extend_from_slice(&r);
        }
        (left, right)
    }

    /// Grows one tree; returns its nodes and each leaf's (node, rows), and adds split gains.
    fn grow(
        &self,
        rows: Vec<u32>,
        mappers: &[BinMapper],
        importance: &mut [f64],
    ) -> (Vec<Node>, Vec<(usize, Vec<u32>)>) {
        let p = self.params;
        let leaf_node = |value: f64| Node {
            feature: 0,
            threshold: 0.0,
            default_left: false,
            left: 0,
            right: 0,
            value,
        };
        let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), &r| {
            (g + self.grad[r as usize], h + self.hess[r as usize])
        });
        let mut nodes = vec![leaf_node(0.0)];
        let totals = Totals {
            n: rows.len(),
            g,
            h,
            depth: 0,
            node: 0,
        };
        let (grown, _) = self.grow_leaves(&rows, totals, None);
        let root = Leaf {
            node: 0,
            rows,
            t: totals,
            hist: grown.hist,
            best: grown.best,
        };
        let mut leaves = vec![root];
        let mut n_leaves = 1;
        while n_leaves < p.num_leaves {
            // The splittable leaf with the largest gain (first on ties, for determinism).
            let mut pick: Option<usize> = None;
            for (i, l) in leaves.iter().enumerate() {
                if let Some(s) = l.best
                    && pick.is_none_or(|j| s.gain > leaves[j].best.map_or(0.0, |b| b.gain))
                {
                    pick = Some(i);
                }
            }
            let Some(i) = pick else { break };
            let leaf = leaves.swap_remove(i);
            let split = leaf.best.expect("picked leaves have a split");
            importance[split.feature] += split.gain;
            let (left_rows, right_rows) = self.partition(&leaf.rows, &split);
            let (left_idx, right_idx) = (nodes.len(), nodes.len() + 1);
            nodes.push(leaf_node(0.0));
            nodes.push(leaf_node(0.0));
            nodes[leaf.node] = Node {
                feature: split.feature as u32,
                threshold: mappers[split.feature].upper[split.bin],
                default_left: split.default_left,
                left: left_idx as u32,
                right: right_idx as u32,
                value: 0.0,
            };
            // Histogram subtraction: build the smaller child, derive the larger.
            let left_small = left_rows.len() <= right_rows.len();
            let totals = |rows: &Vec<u32>, g: f64, h: f64, node: usize| Totals {
                n: rows.len(),
                g,
                h,
                depth: leaf.t.depth + 1,
                node,
            };
            let left_t = totals(&left_rows, split.left_g, split.left_h, left_idx);
            let right_t = totals(
                &right_rows,
                leaf.t.g - split.left_g,
                leaf.t.h - split.left_h,
                right_idx,
            );
            let (small_rows, small_t, large_t) = if left_small {
                (&left_rows, left_t, right_t)
            } else {
                (&right_rows, right_t, left_t)
            };
            let (small, large) = self.grow_leaves(small_rows, small_t, Some((leaf.hist, large_t)));
            let large = large.expect("a sibling was given");
            let (left, right) = if left_small {
                (small, large)
            } else {
                (large, small)
            };
            for (node, rows, grown, t) in [
                (left_idx, left_rows, left, left_t),
                (right_idx, right_rows, right, right_t),
            ] {
                leaves.push(Leaf {
                    node,
                    rows,
                    t,
                    hist: grown.hist,
                    best: grown.best,
                });
            }
            n_leaves += 1;
        }
        for leaf in &leaves {
            nodes[leaf.node].value = -leaf.t.g / (leaf.t.h + p.l2) * p.learning_rate;
            if !nodes[leaf.node].value.is_finite() {
                nodes[leaf.node].value = 0.0;
            }
        }
        let members = leaves.into_iter().map(|l| (l.node, l.rows)).collect();
        (nodes, members)
    }
}

/// Log-loss or squared-error gradients and hessians of every row, times its weight.
fn gradients(
    objective: Objective,
    raw: &[f64],
    y: &[f64],
    weights: Option<&[f64]>,
    grad: &mut [f64],
    hess: &mut [f64],
    threads: usize,
) {
    let run = |start: usize, raw: &[f64], y: &[f64], grad: &mut [f64], hess: &mut [f64]| {
        for (i, (((&z, &y), g), h)) in raw.iter().zip(y).zip(grad).zip(hess).enumerate() {
            let (gi, hi) = match objective {
                Objective::Binary => {
                    let p = sigmoid(z);
                    (p - y, (p * (1.0 - p)).max(1e-16))
                }
                Objective::Regression => (z - y, 1.0),
            };
            let w = weights.map_or(1.0, |w| w[start + i]);
            *g = gi * w;
            *h = hi * w;
        }
    };
    if threads <= 1 || raw.len() < PARALLEL_ROWS {
        return run(0, raw, y, grad, hess);
    }
    let per = raw.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (k, (((raw, y), grad), hess)) in raw
            .chunks(per)
            .zip(y.chunks(per))
            .zip(grad.chunks_mut(per))
            .zip(hess.chunks_mut(per))
            .enumerate()
        {
            scope.spawn(move || run(k * per, raw, y, grad, hess));
        }
    });
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The (weighted) mean loss of raw scores `raw` against `y`.
fn loss(objective: Objective, y: &[f64], raw: &[f64], weights: Option<&[f64]>) -> f64 {
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let total: f64 = (0..y.len()).map(w).sum::<f64>().max(f64::MIN_POSITIVE);
    let sum: f64 = y
        .iter()
        .zip(raw)
        .enumerate()
        .map(|(i, (&y, &z))| {
            w(i) * match objective {
                // log(1 + e^z) - y z, computed without overflow.
                Objective::Binary => z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z,
                Objective::Regression => (y - z) * (y - z),
            }
        })
        .sum();
    sum / total
}

/// Bins fitted on (at most 200k of) `rows`, like LightGBM's bin_construct_sample_cnt, and
/// every row of `x` binned by them.
pub(super) struct Prepared {
    mappers: Vec<BinMapper>,
    binned: Binned,
    n_bins: Vec<usize>,
}

pub(super) fn prepare(x: &Matrix, rows: &[u32], max_bins: usize, rng: &mut ChaCha8Rng) -> Prepared {
    let mut sample = rows.to_vec();
    if sample.len() > 200_000 {
        sample.shuffle(rng);
        sample.truncate(200_000);
        sample.sort_unstable();
    }
    let mappers: Vec<BinMapper> = (0..x.cols)
        .map(|f| {
            let col = x.column(f);
            let mut values: Vec<f64> = sample.iter().map(|&r| col[r as usize]).collect();
            BinMapper::fit(&mut values, max_bins)
        })
        .collect();
    let binned = Binned::new(x, &mappers);
    let n_bins = mappers.iter().map(BinMapper::n_bins).collect();
    Prepared {
        mappers,
        binned,
        n_bins,
    }
}

/// What one tree is grown from: the rows (sorted; a bootstrap may repeat one), each row's
/// gradient and hessian, the features it may use, and a forest's per-split draw.
pub(super) struct TreeInput<'a> {
    pub rows: Vec<u32>,
    pub grad: &'a [f64],
    pub hess: &'a [f64],
    pub features: Vec<usize>,
    pub split_draw: Option<(usize, u64)>,
    pub threads: usize,
}

/// Grows one tree; returns it and each leaf's (node, rows), and adds split gains to
/// `importance`. Leaf values are `-G / (H + l2) × learning_rate`.
pub(super) fn grow_tree(
    prepared: &Prepared,
    params: &GbtParams,
    input: TreeInput<'_>,
    importance: &mut [f64],
) -> (Tree, Vec<(usize, Vec<u32>)>) {
    let grower = Grower {
        params,
        binned: &prepared.binned,
        n_bins: prepared.n_bins.clone(),
        grad: input.grad,
        hess: input.hess,
        features: input.features,
        split_draw: input.split_draw,
        threads: input.threads,
    };
    let (nodes, members) = grower.grow(input.rows, &prepared.mappers, importance);
    (Tree { nodes }, members)
}

/// Threads for `threads: 0` (one per core) or the number given.
pub(super) fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The features a tree uses: all, or `share` of them drawn with `rng` (sorted).
pub(super) fn draw_features(cols: usize, share: f64, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n = ((cols as f64 * share).ceil() as usize).clamp(1, cols.max(1));
    let mut features: Vec<usize> = (0..cols).collect();
    if n < cols {
        features.shuffle(rng);
        features.truncate(n);
        features.sort_unstable();
    }
    features
}

/// Trains an ensemble on `x` (NaN = missing) and targets `y` (0/1 for binary), each row
/// counting `weights[row]` times in gradients, hessians and the validation loss (class
/// weights); `min_data_in_leaf` still counts rows.
pub fn train(
    x: &Matrix,
    y: &[f64],
    weights: Option<&[f64]>,
    objective: Objective,
    params: &GbtParams,
    seed: u64,
) -> Result<GbtModel, ModelError> {
    params.check().map_err(ModelError::Params)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train_rows: Vec<u32> = (0..x.rows as u32).collect();
    let mut valid_rows: Vec<u32> = Vec::new();
    if params.early_stopping_rounds > 0 {
        train_rows.shuffle(&mut rng);
        let n_valid = ((x.rows as f64) * params.validation_fraction).round() as usize;
        valid_rows = train_rows.split_off(x.rows - n_valid.min(x.rows));
        train_rows.sort_unstable();
        valid_rows.sort_unstable();
        if valid_rows.is_empty() || train_rows.is_empty() {
            return Err(ModelError::Data(
                "too few rows for an early-stopping validation split".into(),
            ));
        }
    }
    if train_rows.is_empty() {
        return Err(ModelError::Data("no training rows".into()));
    }
    // Bins from the training rows only.
    let prepared = prepare(x, &train_rows, params.max_bins, &mut rng);
    let w = |r: u32| weights.map_or(1.0, |w| w[r as usize]);
    let init_score = {
        let mean = train_rows
            .iter()
            .map(|&r| w(r) * y[r as usize])
            .sum::<f64>()
            / train_rows.iter().map(|&r| w(r)).sum::<f64>();
        match objective {
            Objective::Binary => {
                let p = mean.clamp(1e-15, 1.0 - 1e-15);
                (p / (1.0 - p)).ln()
            }
            Objective::Regression => mean,
        }
    };
    let mut raw = vec![init_score; x.rows];
    let mut grad = vec![0.0; x.rows];
    let mut hess = vec![0.0; x.rows];
    let mut trees: Vec<Tree> = Vec::new();
    let mut importance = vec![0.0; x.cols];
    let mut importance_at_best = importance.clone();
    let mut validation_loss = Vec::new();
    let (mut best_loss, mut best_round) = (f64::INFINITY, 0usize);
    let valid_y: Vec<f64> = valid_rows.iter().map(|&r| y[r as usize]).collect();
    let valid_w: Option<Vec<f64>> = weights.map(|_| valid_rows.iter().map(|&r| w(r)).collect());
    let threads = resolve_threads(params.threads);
    let n_sample_rows = ((train_rows.len() as f64 * params.row_subsample).ceil() as usize).max(1);

    for round in 0..params.n_trees {
        // Every row's gradient (validation rows' are never read), in one contiguous run per
        // thread: each value depends on its own row only, so the split changes no bit.
        gradients(objective, &raw, y, weights, &mut grad, &mut hess, threads);
        let rows = if n_sample_rows < train_rows.len() {
            let mut rows = train_rows.clone();
            let (chosen, _) = rows.partial_shuffle(&mut rng, n_sample_rows);
            let mut rows = chosen.to_vec();
            rows.sort_unstable();
            rows
        } else {
            train_rows.clone()
        };
        let features = draw_features(x.cols, params.feature_subsample, &mut rng);
        let input = TreeInput {
            rows,
            grad: &grad,
            hess: &hess,
            features,
            split_draw: None,
            threads,
        };
        let (tree, members) = grow_tree(&prepared, params, input, &mut importance);
        // Rows the tree was grown on get their leaf's value directly (their bins put them in
        // that leaf, and a bin comparison equals the threshold comparison); the others
        // (out of the row sample, validation rows) walk the tree.
        let grown_on: usize = members.iter().map(|(_, rows)| rows.len()).sum();
        for (node, rows) in &members {
            let value = tree.nodes[*node].value;
            for &r in rows {
                raw[r as usize] += value;
            }
        }
        if grown_on < x.rows {
            let mut done = vec![false; x.rows];
            for &r in members.iter().flat_map(|(_, rows)| rows) {
                done[r as usize] = true;
            }
            for r in 0..x.rows {
                if !done[r] {
                    raw[r] += tree.predict_row(x, r);
                }
            }
        }
        trees.push(tree);
        if params.early_stopping_rounds > 0 {
            let valid_raw: Vec<f64> = valid_rows.iter().map(|&r| raw[r as usize]).collect();
            let l = loss(objective, &valid_y, &valid_raw, valid_w.as_deref());
            validation_loss.push(l);
            if l < best_loss {
                best_loss = l;
                best_round = round + 1;
                importance_at_best.clone_from(&importance);
            } else if round + 1 - best_round >= params.early_stopping_rounds {
                break;
            }
        } else {
            best_round = round + 1;
        }
        // A random draw per round even when unused keeps later rounds' streams independent
        // of whether subsampling is on.
        let _: u64 = rng.random();
    }
    if params.early_stopping_rounds > 0 {
        trees.truncate(best_round);
        importance = importance_at_best;
    }
    Ok(GbtModel {
        objective,
        init_score,
        trees,
        gain_importance: importance,
        validation_loss,
        best_round,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_prediction_equals_the_row_at_a_time_sum_on_any_thread_count() {
        // 1,000 rows: blocks of 256 leave a partial last block, and three threads uneven runs.
        let n = 1000;
        // Scrambled values (a multiplicative hash), a tenth missing.
        let cols: Vec<Vec<f64>> = (0..3u64)
            .map(|c| {
                (0..n as u64)
                    .map(|i| {
                        let h = (i * 64 + c).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                        if h % 10 == 0 {
                            f64::NAN
                        } else {
                            (h % 1000) as f64 / 100.0 - 5.0
                        }
                    })
                    .collect()
            })
            .collect();
        let x = Matrix::from_columns(cols);
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let (a, b, c) = (x.get(i, 0), x.get(i, 1), x.get(i, 2));
                f64::from(u8::from(a + b * c > 0.5 || (b.is_nan() && a > 2.0)))
            })
            .collect();
        // Deep, lopsided trees: paths of very different lengths, so groups of 8 rows stop at
        // different depths, and a partial last group.
        let params = GbtParams {
            n_trees: 12,
            num_leaves: 40,
            min_data_in_leaf: 2,
            ..Default::default()
        };
        let model = train(&x, &y, None, Objective::Binary, &params, 3).unwrap();
        let naive: Vec<f64> = (0..n)
            .map(|r| {
                model.init_score
                    + model
                        .trees
                        .iter()
                        .map(|t| t.predict_row(&x, r))
                        .sum::<f64>()
            })
            .collect();
        for threads in [1, 2, 3] {
            let got = model.predict_raw_on(&x, threads);
            assert_eq!(got.len(), n);
            // The same additions in the same order: the same bits.
            assert_eq!(got, naive, "threads {threads}");
        }
    }
}
