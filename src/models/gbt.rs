//! Histogram gradient-boosted trees (binary log-loss and squared error), grown leaf-wise like
//! LightGBM: features are bucketed into at most 255 value bins plus a missing bin, each leaf
//! keeps a (gradient, hessian, count) histogram per feature, the larger child's histogram is
//! the parent's minus the smaller child's, and the leaf with the best gain is split next.
//! Big leaves fill histograms from column-major bins, small ones (scattered rows) from a
//! row-major copy, with the bins of rows ahead prefetched: the same sums either way.
//!
//! Missing values (NaN) get their own bin; each split tries sending them left and right and
//! keeps the better side as the node's default direction, which prediction then follows.
//! Every random draw (row and feature subsampling, validation split) comes from one seeded
//! `ChaCha8Rng`, so the same data and seed give the same trees.

use prefetch_index::prefetch_index;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

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

/// One step of the branch-free walk, 8 bytes: eight to a cache line. Children sit side by
/// side (`left`, `left + 1`), so a step needs one index; a leaf goes "left" to itself whatever
/// the value (its `rank` is 255, which no rank exceeds).
#[derive(Clone, Copy)]
struct Step {
    left: u32,
    /// The column of the scoring block (see `Layout`).
    col: u16,
    /// Rows whose rank in `col` is above this go right.
    rank: u8,
}

/// The scoring block holds ranks, not values: for feature `f`, the distinct thresholds of
/// every split on `f` sorted, and a value's rank is how many of them are below it. Then
/// `v <= t_k` exactly when `rank(v) <= k`, so a step compares one byte: a block of 256 rows
/// is a few kB and stays in L1 with the tree, where rows of `f64` did not. A missing value
/// gets the top rank (right at every split); for each feature some split sends missing values
/// left, a second column gives them rank 0 (left at every split). Only models with at most
/// 255 thresholds per feature (ours: one per bin boundary, `max_bins` <= 255) and finite ones
/// fit; others take the row-at-a-time walk instead.
struct Layout {
    /// Per feature, its split thresholds, sorted and distinct.
    thresholds: Vec<Vec<f64>>,
    /// Per feature, the column of its copy with missing values at rank 0, if any split sends
    /// them left.
    left_copy: Vec<Option<usize>>,
    /// Columns per row of the block.
    stride: usize,
}

impl Layout {
    fn new(trees: &[Tree], cols: usize) -> Option<Layout> {
        let mut thresholds = vec![Vec::new(); cols];
        let mut left_copy = vec![None; cols];
        let mut stride = cols;
        for node in trees.iter().flat_map(|t| &t.nodes).filter(|n| n.left != 0) {
            let f = node.feature as usize;
            if !node.threshold.is_finite() || f >= cols {
                return None;
            }
            thresholds[f].push(node.threshold);
            if node.default_left && left_copy[f].is_none() {
                left_copy[f] = Some(stride);
                stride += 1;
            }
        }
        for t in &mut thresholds {
            t.sort_by(f64::total_cmp);
            // -0.0 and 0.0 are one threshold: `<=` does not tell them apart.
            t.dedup_by(|a, b| a == b);
            if t.len() > 255 {
                return None;
            }
        }
        if stride > usize::from(u16::MAX) {
            return None;
        }
        Some(Layout {
            thresholds,
            left_copy,
            stride,
        })
    }

    fn step(&self, node: &Node) -> (u16, u8) {
        let f = node.feature as usize;
        let col = match node.default_left {
            true => self.left_copy[f].unwrap_or(f),
            false => f,
        };
        let k = self.thresholds[f].partition_point(|&t| t < node.threshold);
        (col as u16, k as u8)
    }

    /// Fills `block` (row-major, `stride` bytes a row) with the ranks of `rows` rows of `x`
    /// from `first` on.
    fn fill(&self, x: &Matrix, first: usize, rows: usize, block: &mut [u8]) {
        for (f, thresholds) in self.thresholds.iter().enumerate() {
            let column = &x.column(f)[first..first + rows];
            let missing = thresholds.len() as u8;
            for (r, &v) in column.iter().enumerate() {
                block[r * self.stride + f] = if v.is_nan() {
                    missing
                } else {
                    thresholds.partition_point(|&t| t < v) as u8
                };
            }
            if let Some(c) = self.left_copy[f] {
                for r in 0..rows {
                    let own = block[r * self.stride + f];
                    block[r * self.stride + c] = if column[r].is_nan() { 0 } else { own };
                }
            }
        }
    }
}

/// Rows per scoring group: their walks are independent, so the CPU overlaps them.
const LANES: usize = 8;

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
    fn new(tree: &Tree, layout: &Layout) -> Compact {
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
                    left: i as u32,
                    col: 0,
                    rank: u8::MAX,
                });
            } else {
                let (col, rank) = layout.step(node);
                c.steps.push(Step {
                    left: order.len() as u32,
                    col,
                    rank,
                });
                order.extend([node.left as usize, node.right as usize]);
                depth_of.extend([d + 1, d + 1]);
            }
            c.value.push(node.value);
            i += 1;
        }
        c
    }

    /// Adds this tree's output to `sums`, one per row of `rows` (row-major, `stride` ranks
    /// per row: the block `Layout::fill` made).
    fn add_to(&self, rows: &[u8], stride: usize, sums: &mut [f64]) {
        let full = sums.len() / LANES * LANES;
        let (groups, rest) = sums.split_at_mut(full);
        // Whole groups with the lane count known at compile time: the lane loop unrolls,
        // with no test of the group's length per lane.
        for (group, x) in groups
            .chunks_exact_mut(LANES)
            .zip(rows.chunks_exact(LANES * stride))
        {
            let at = self.walk::<LANES>(x, stride);
            for (s, a) in group.iter_mut().zip(at) {
                *s += self.value[a as usize];
            }
        }
        for (s, x) in rest
            .iter_mut()
            .zip(rows[full * stride..].chunks_exact(stride))
        {
            let [a] = self.walk::<1>(x, stride);
            *s += self.value[a as usize];
        }
    }

    /// The leaves `N` rows (`stride` ranks each) reach.
    fn walk<const N: usize>(&self, x: &[u8], stride: usize) -> [u32; N] {
        let mut at = [0u32; N];
        for _ in 0..self.depth {
            let mut moved = 0u32;
            for (k, a) in at.iter_mut().enumerate() {
                let s = self.steps[*a as usize];
                let n = s.left + u32::from(x[k * stride + usize::from(s.col)] > s.rank);
                moved |= n ^ *a;
                *a = n;
            }
            if moved == 0 {
                break;
            }
        }
        at
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
    let mut out = vec![0.0; x.rows];
    let Some(layout) = Layout::new(trees, x.cols) else {
        // Thresholds that do not fit the rank layout: the plain walk, still adding the
        // trees in order.
        for (r, sum) in out.iter_mut().enumerate() {
            *sum = trees.iter().fold(0.0, |s, t| s + t.predict_row(x, r)) + init;
        }
        return out;
    };
    let compact: Vec<Compact> = trees.iter().map(|t| Compact::new(t, &layout)).collect();
    let stride = layout.stride;
    let run = |start: usize, out: &mut [f64]| {
        // The block, row-major: a row's ranks sit together (one cache line), where the
        // column-major matrix puts its values `rows` apart.
        let mut rows = vec![0u8; BLOCK * stride];
        for (b, block) in out.chunks_mut(BLOCK).enumerate() {
            layout.fill(x, start + b * BLOCK, block.len(), &mut rows);
            for tree in &compact {
                tree.add_to(&rows[..block.len() * stride], stride, block);
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

/// Bins of every row, twice: feature-major for passes over big leaves (each column read in
/// row order, which the hardware prefetcher follows) and row-major for small ones, whose rows
/// are scattered: a row's bins then share one or two cache lines where the columns cost one
/// miss per feature.
struct Binned {
    bins: Vec<Vec<u8>>,
    /// Row `r`'s bins at `by_row[r * stride..][..stride]`.
    by_row: Vec<u8>,
    stride: usize,
    /// Leaves with fewer rows (1/`BY_ROW_SHARE` of the matrix's) fill their histograms from
    /// `by_row`; the model is the same either way.
    by_row_below: usize,
}

impl Binned {
    fn new(x: &Matrix, mappers: &[BinMapper]) -> Binned {
        let bins = mappers
            .iter()
            .enumerate()
            .map(|(f, m)| x.column(f).iter().map(|&v| m.bin(v)).collect())
            .collect::<Vec<Vec<u8>>>();
        let stride = bins.len().max(1);
        let mut by_row = vec![0u8; x.rows * stride];
        for (r, row) in by_row.chunks_exact_mut(stride).enumerate() {
            for (b, column) in row.iter_mut().zip(&bins) {
                *b = column[r];
            }
        }
        Binned {
            bins,
            by_row,
            stride,
            by_row_below: x.rows / BY_ROW_SHARE,
        }
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
    rows: Arc<Vec<u32>>,
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

/// Rows ahead whose bins a histogram pass asks the cache for.
const PREFETCH_AHEAD: usize = 32;

/// A leaf with fewer rows than this share (1/32) of the matrix's rows fills its histograms
/// from the row-major bins. At 1M rows, leaves of 2k to 8k rows took 285 ns a row
/// column-wise (14 cache misses a row on each thread) and 100 ns row-wise, and the whole
/// training 41.5 s against 60.6 s, the same model; 1/8 and 1/16 were no faster than 1/32.
const BY_ROW_SHARE: usize = 32;

/// One pass over a small leaf's rows adding each row's gradient pair to the histograms of
/// `features` (`hists`, in the same order), reading the row-major bins: one or two cache
/// lines a row, asked for `PREFETCH_AHEAD` rows ahead.
fn fill_by_row(w: &LeafWork, binned: &Binned, features: &[usize], hists: &mut [Vec<Bin>]) {
    let mut hists: Vec<&mut [Bin; HIST_BINS]> = hists
        .iter_mut()
        .map(|h| h.as_mut_slice().try_into().expect("HIST_BINS bins"))
        .collect();
    let (by_row, stride) = (&binned.by_row, binned.stride);
    for (range, gh) in &w.segments {
        let rows = &w.rows[range.clone()];
        for (i, (&r, &(g, h))) in rows.iter().zip(gh).enumerate() {
            if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
                // A row's bins may straddle two lines.
                let at = ahead as usize * stride;
                prefetch_index(by_row, at);
                prefetch_index(by_row, at + stride - 1);
            }
            let row = &by_row[r as usize * stride..][..stride];
            for (hist, &f) in hists.iter_mut().zip(features) {
                hist[usize::from(row[f])].add(g, h);
            }
        }
    }
}

/// A big leaf's histograms of `features` (`hists`, in the same order) in passes over its rows
/// of at most `PASS_FEATURES` features, as even as possible: a thread's 14 features go as 4,
/// 4, 3, 3, where 4, 4, 4, 2 made the last pass re-read every row for two features (with
/// prefetching, 1M rows trained in 4% less time).
fn fill_by_columns(w: &LeafWork, binned: &Binned, features: &[usize], hists: &mut [Vec<Bin>]) {
    let passes = features.len().div_ceil(PASS_FEATURES);
    let mut rest = hists;
    let mut done = 0;
    for k in 1..=passes {
        let end = features.len() * k / passes;
        let (hs, tail) = std::mem::take(&mut rest).split_at_mut(end - done);
        rest = tail;
        let bins: Vec<&[u8]> = features[done..end]
            .iter()
            .map(|&f| binned.bins[f].as_slice())
            .collect();
        done = end;
        match bins.len() {
            1 => fill_pass::<1>(w, &bins, hs),
            2 => fill_pass::<2>(w, &bins, hs),
            3 => fill_pass::<3>(w, &bins, hs),
            _ => fill_pass::<PASS_FEATURES>(w, &bins, hs),
        }
    }
}

/// Features whose histograms one pass over a leaf's rows fills.
const PASS_FEATURES: usize = 4;

/// One pass over a leaf's rows adding each row's gradient pair to the histograms of `N`
/// features (`bins`, `hists`): a row's index and gradients are loaded once for `N` updates.
/// Below the root a leaf's rows skip through the bin columns (at 1/32 of the rows, a new
/// cache line every other row), so the bins `PREFETCH_AHEAD` rows on are asked for before
/// they are needed: 1M rows trained in 15% less time, measured when every leaf took this
/// path. The arrays are fixed-size locals: the compiler keeps the `2N` pointers in registers
/// and unrolls the updates.
#[inline(always)]
fn fill_pass<const N: usize>(w: &LeafWork, bins: &[&[u8]], hists: &mut [Vec<Bin>]) {
    let bins: [&[u8]; N] = bins.try_into().expect("N bin columns");
    let mut each = hists.iter_mut();
    let hists: [&mut [Bin; HIST_BINS]; N] = std::array::from_fn(|_| {
        let hist = each.next().expect("N histograms");
        hist.as_mut_slice().try_into().expect("HIST_BINS bins")
    });
    for (range, gh) in &w.segments {
        let rows = &w.rows[range.clone()];
        for (i, (&r, &(g, h))) in rows.iter().zip(gh).enumerate() {
            if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
                for b in bins {
                    prefetch_index(b, ahead as usize);
                }
            }
            let r = r as usize;
            for k in 0..N {
                hists[k][usize::from(bins[k][r])].add(g, h);
            }
        }
    }
}

/// Below this many rows a pass over rows stays on one thread: a spawn costs ~20 µs.
const PARALLEL_ROWS: usize = 20_000;

/// Below this many rows a leaf's gradient pairs are gathered on one thread.
const PARALLEL_GATHER_ROWS: usize = 16_384;

/// Below this many rows a leaf's rows are partitioned on one thread. Lower than
/// `PARALLEL_ROWS`: handing work to the pool's waiting helpers costs a few µs, not a spawn.
const PARALLEL_PARTITION_ROWS: usize = 4_096;

/// What every run of one leaf's histogram work reads.
struct LeafWork {
    rows: Arc<Vec<u32>>,
    /// Runs of `rows` and their gradient pairs, in row order.
    segments: Vec<(std::ops::Range<usize>, Vec<(f64, f64)>)>,
    own: Totals,
    sibling: Option<Totals>,
    split_own: bool,
    split_sibling: bool,
    drawn_own: Option<Vec<bool>>,
    drawn_sibling: Option<Vec<bool>>,
}

/// How long a pool thread polls for work (or results) before it sleeps: the next split's
/// work usually comes within tens of µs, and waking a sleeping thread on an idle vCPU costs
/// about as much.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Polls `ready` for up to `SPIN`; its value, or `None` on timing out.
fn spin_until<T>(mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let started = std::time::Instant::now();
    loop {
        for _ in 0..64 {
            if let Some(v) = ready() {
                return Some(v);
            }
            std::hint::spin_loop();
        }
        if started.elapsed() >= SPIN {
            return None;
        }
    }
}

type Job<'env> = Box<dyn FnOnce() + Send + 'env>;

/// Helper threads started once (per tree) and fed work through channels. The calling thread
/// works too, and the inputs of a `map` are claimed one at a time by whoever is free: a
/// helper that wakes late (the machine is busy) finds less or nothing left, rather than
/// holding everyone up.
struct Pool<'env> {
    helpers: Vec<mpsc::Sender<Job<'env>>>,
}

/// One `map`: its inputs, each taken once, and the results by input index.
struct Batch<T, R, F> {
    inputs: Vec<Mutex<Option<T>>>,
    next: AtomicUsize,
    done: Mutex<(Vec<Option<std::thread::Result<R>>>, usize)>,
    /// `done.1`, readable without the lock (for polling).
    completed: AtomicUsize,
    finished: Condvar,
    f: F,
}

impl<T, R, F: Fn(T) -> R> Batch<T, R, F> {
    /// Claims and runs inputs until none is left.
    fn help(&self) {
        let n = self.inputs.len();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            let input = self.inputs[i]
                .lock()
                .expect("an input lock")
                .take()
                .expect("each input is claimed once");
            // A panic is handed to the caller, which waits for every input.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(input)));
            let mut done = self.done.lock().expect("the results lock");
            done.0[i] = Some(result);
            done.1 += 1;
            self.completed.store(done.1, Ordering::Release);
            if done.1 == n {
                self.finished.notify_all();
            }
        }
    }
}

impl<'env> Pool<'env> {
    fn new<'scope>(scope: &'scope std::thread::Scope<'scope, 'env>, helpers: usize) -> Pool<'env> {
        let helpers = (0..helpers)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job<'env>>();
                scope.spawn(move || {
                    loop {
                        let job = match rx.try_recv() {
                            Ok(job) => job,
                            Err(mpsc::TryRecvError::Disconnected) => return,
                            Err(mpsc::TryRecvError::Empty) => {
                                // The next split's work usually comes within tens of µs:
                                // poll that long before sleeping, since waking a sleeping
                                // thread (an idle vCPU) costs about as much.
                                match spin_until(|| rx.try_recv().ok()) {
                                    Some(job) => job,
                                    None => match rx.recv() {
                                        Ok(job) => job,
                                        Err(_) => return,
                                    },
                                }
                            }
                        };
                        job();
                    }
                });
                tx
            })
            .collect();
        Pool { helpers }
    }

    /// `f` of every input, in input order, computed on this thread and the helpers.
    fn map<T, R, F>(&self, inputs: Vec<T>, f: F) -> Vec<R>
    where
        T: Send + 'env,
        R: Send + 'env,
        F: Fn(T) -> R + Send + Sync + 'env,
    {
        let n = inputs.len();
        if n <= 1 || self.helpers.is_empty() {
            return inputs.into_iter().map(f).collect();
        }
        let batch = Arc::new(Batch {
            inputs: inputs.into_iter().map(|t| Mutex::new(Some(t))).collect(),
            next: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            done: Mutex::new(((0..n).map(|_| None).collect(), 0)),
            finished: Condvar::new(),
            f,
        });
        for helper in self.helpers.iter().take(n - 1) {
            let batch = Arc::clone(&batch);
            helper
                .send(Box::new(move || batch.help()))
                .expect("a helper thread is gone");
        }
        batch.help();
        spin_until(|| (batch.completed.load(Ordering::Acquire) == n).then_some(()));
        let mut done = batch.done.lock().expect("the results lock");
        while done.1 < n {
            done = batch.finished.wait(done).expect("the results lock");
        }
        std::mem::take(&mut done.0)
            .into_iter()
            .map(|r| match r.expect("every input ran") {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    }
}

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
    /// parent's histogram minus that one. All of it is per feature, so the features are cut
    /// into runs that the threads claim in turn, and the runs' best splits are reduced in
    /// feature order: the same result as one thread.
    fn grow_leaves<'s>(
        &'s self,
        pool: &Pool<'s>,
        rows: &Arc<Vec<u32>>,
        own: Totals,
        sibling: Option<(Vec<Vec<Bin>>, Totals)>,
    ) -> (Grown, Option<Grown>) {
        // The leaf's gradients in row order, gathered once: each feature's pass then reads
        // them sequentially and only its bins at random (LightGBM's "ordered gradients").
        // A big leaf's are gathered in one contiguous segment per thread, which the passes
        // then read in order: the same sums as one segment.
        let gather = {
            let rows = Arc::clone(rows);
            move |range: std::ops::Range<usize>| -> (std::ops::Range<usize>, Vec<(f64, f64)>) {
                let gh = rows[range.clone()]
                    .iter()
                    .map(|&r| (self.grad[r as usize], self.hess[r as usize]))
                    .collect();
                (range, gh)
            }
        };
        let segments = if self.threads > 1 && rows.len() >= PARALLEL_GATHER_ROWS {
            let per = rows.len().div_ceil(self.threads);
            let ranges = (0..rows.len())
                .step_by(per)
                .map(|a| a..(a + per).min(rows.len()))
                .collect();
            pool.map(ranges, gather)
        } else {
            vec![gather(0..rows.len())]
        };
        let (mut parents, sibling_totals) =
            sibling.map_or((None, None), |(hist, t)| (Some(hist), Some(t)));
        // One item per sampled feature: (feature, the parent's histogram of it).
        let items: Vec<(usize, Option<Vec<Bin>>)> = self
            .features
            .iter()
            .map(|&f| (f, parents.as_mut().map(|h| std::mem::take(&mut h[f]))))
            .collect();
        let work = Arc::new(LeafWork {
            rows: Arc::clone(rows),
            segments,
            split_own: self.splittable(&own),
            split_sibling: sibling_totals.is_some_and(|t| self.splittable(&t)),
            drawn_own: self.drawn(&own),
            drawn_sibling: sibling_totals.as_ref().and_then(|t| self.drawn(t)),
            own,
            sibling: sibling_totals,
        });
        // Every leaf, however small, shares its features out: the pool's helpers are already
        // waiting, so a run costs them a few µs to pick up (a spawn per leaf cost tens of µs
        // and kept leaves under 2,048 rows on one thread; 500k rows trained 16% faster).
        let per = items.len().div_ceil(self.threads).max(1);
        let mut runs: Vec<Vec<(usize, Option<Vec<Bin>>)>> = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            runs.push(items.by_ref().take(per).collect());
        }
        let runs = pool.map(runs, move |run| self.fill_and_search(&work, run));
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

    /// One run of features of `grow_leaves`: their histograms for the leaf, the sibling's by
    /// subtraction, and both leaves' best splits among them.
    #[allow(clippy::type_complexity)]
    fn fill_and_search(
        &self,
        w: &LeafWork,
        run: Vec<(usize, Option<Vec<Bin>>)>,
    ) -> (
        Vec<(usize, Vec<Bin>, Option<Vec<Bin>>)>,
        Option<Split>,
        Option<Split>,
    ) {
        let may = |drawn: &Option<Vec<bool>>, f: usize| drawn.as_ref().is_none_or(|d| d[f]);
        let mut out = Vec::with_capacity(run.len());
        let (mut best_own, mut best_sibling): (Option<Split>, Option<Split>) = (None, None);
        // Every histogram has `HIST_BINS` bins whatever the feature's count, so a `u8`
        // bin index needs no bounds check in the loops below.
        let mut hists: Vec<Vec<Bin>> = run
            .iter()
            .map(|_| vec![Bin::default(); HIST_BINS])
            .collect();
        let features: Vec<usize> = run.iter().map(|(f, _)| *f).collect();
        if w.rows.len() < self.binned.by_row_below {
            fill_by_row(w, self.binned, &features, &mut hists);
        } else {
            fill_by_columns(w, self.binned, &features, &mut hists);
        }
        for ((f, parent), hist) in run.into_iter().zip(hists) {
            if w.split_own && may(&w.drawn_own, f) {
                best_own = first_best(best_own, self.best_split_of(f, &hist, &w.own));
            }
            let sibling_hist = parent.map(|mut p| {
                // Only the feature's own bins: the rest of the `HIST_BINS` stay zero.
                for (l, s) in p.iter_mut().zip(&hist).take(self.n_bins[f] + 1) {
                    l.subtract(s);
                }
                p
            });
            if let (true, Some(h), Some(t)) = (w.split_sibling, &sibling_hist, &w.sibling)
                && may(&w.drawn_sibling, f)
            {
                best_sibling = first_best(best_sibling, self.best_split_of(f, h, t));
            }
            out.push((f, hist, sibling_hist));
        }
        (out, best_own, best_sibling)
    }

    /// A leaf's rows split by `split`, each side in row order. Big leaves are cut into runs
    /// the threads claim in turn, and the runs' sides are concatenated in order, which gives
    /// the same vectors as one pass.
    fn partition<'s>(
        &'s self,
        pool: &Pool<'s>,
        rows: &Arc<Vec<u32>>,
        split: &Split,
    ) -> (Vec<u32>, Vec<u32>) {
        let split = *split;
        let side = move |run: &[u32]| {
            let bins = &self.binned.bins[split.feature];
            let missing_bin = self.n_bins[split.feature];
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
        if self.threads <= 1 || rows.len() < PARALLEL_PARTITION_ROWS {
            return side(rows);
        }
        let per = rows.len().div_ceil(self.threads);
        let runs: Vec<std::ops::Range<usize>> = (0..rows.len())
            .step_by(per)
            .map(|a| a..(a + per).min(rows.len()))
            .collect();
        let shared = Arc::clone(rows);
        let parts = pool.map(runs, move |run| side(&shared[run]));
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
        // The helper threads live for the whole tree: every split hands them work through a
        // channel (a few µs) where a spawn per split cost tens of µs on a VM, too much for the
        // many small leaves.
        let (nodes, leaves) = std::thread::scope(|scope| {
            let pool = Pool::new(scope, self.threads.saturating_sub(1));
            self.grow_on(&pool, rows, mappers, importance)
        });
        // The helpers have been joined: no one else holds a leaf's rows.
        let members = leaves
            .into_iter()
            .map(|(node, rows)| (node, Arc::try_unwrap(rows).unwrap_or_else(|r| r.to_vec())))
            .collect();
        (nodes, members)
    }

    #[allow(clippy::type_complexity)]
    fn grow_on<'s>(
        &'s self,
        pool: &Pool<'s>,
        rows: Vec<u32>,
        mappers: &[BinMapper],
        importance: &mut [f64],
    ) -> (Vec<Node>, Vec<(usize, Arc<Vec<u32>>)>) {
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
        let rows = Arc::new(rows);
        let (grown, _) = self.grow_leaves(pool, &rows, totals, None);
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
            let (left_rows, right_rows) = self.partition(pool, &leaf.rows, &split);
            let (left_rows, right_rows) = (Arc::new(left_rows), Arc::new(right_rows));
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
            let totals = |rows: &Arc<Vec<u32>>, g: f64, h: f64, node: usize| Totals {
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
            let (small, large) =
                self.grow_leaves(pool, small_rows, small_t, Some((leaf.hist, large_t)));
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

/// Adds each leaf's value to the raw scores of its rows (sorted), in one contiguous run of
/// rows per thread: a row gets the same single addition whichever thread makes it.
fn add_leaf_values(raw: &mut [f64], leaves: &[(f64, &[u32])], threads: usize) {
    let run = |start: usize, raw: &mut [f64]| {
        let end = (start + raw.len()) as u32;
        for &(value, rows) in leaves {
            let from = rows.partition_point(|&r| r < start as u32);
            let to = rows.partition_point(|&r| r < end);
            for &r in &rows[from..to] {
                raw[r as usize - start] += value;
            }
        }
    };
    if threads <= 1 || raw.len() < PARALLEL_ROWS {
        return run(0, raw);
    }
    let per = raw.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (k, part) in raw.chunks_mut(per).enumerate() {
            scope.spawn(move || run(k * per, part));
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
        let leaf_values: Vec<(f64, &[u32])> = members
            .iter()
            .map(|(node, rows)| (tree.nodes[*node].value, rows.as_slice()))
            .collect();
        add_leaf_values(&mut raw, &leaf_values, threads);
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
    fn row_major_and_column_fills_grow_the_same_tree() {
        // 3,000 rows of 5 scrambled features (one with missing values) and a signal, and
        // uneven gradients and hessians: every split depends on the histograms' sums.
        let n = 3000u64;
        let cols: Vec<Vec<f64>> = (0..5u64)
            .map(|c| {
                (0..n)
                    .map(|i| {
                        let h = (i * 64 + c).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                        match c == 2 && h % 7 == 0 {
                            true => f64::NAN,
                            false => (h % 997) as f64 / 99.7 - 5.0,
                        }
                    })
                    .collect()
            })
            .collect();
        let x = Matrix::from_columns(cols);
        let p: Vec<f64> = (0..n)
            .map(|i| 0.2 + 0.6 * ((i * 37 % 101) as f64 / 100.0))
            .collect();
        let y: Vec<f64> = (0..x.rows)
            .map(|i| f64::from(u8::from(x.get(i, 0) + x.get(i, 1) * x.get(i, 3) > 0.0)))
            .collect();
        let grad: Vec<f64> = p.iter().zip(&y).map(|(p, y)| p - y).collect();
        let hess: Vec<f64> = p.iter().map(|p| p * (1.0 - p)).collect();
        let rows: Vec<u32> = (0..n as u32).collect();
        let params = GbtParams {
            num_leaves: 63,
            min_data_in_leaf: 5,
            ..Default::default()
        };
        let mut prepared = prepare(
            &x,
            &rows,
            params.max_bins,
            &mut ChaCha8Rng::seed_from_u64(7),
        );
        let mut grow = |by_row_below: usize| {
            prepared.binned.by_row_below = by_row_below;
            let mut importance = vec![0.0; x.cols];
            let input = TreeInput {
                rows: rows.clone(),
                grad: &grad,
                hess: &hess,
                features: (0..x.cols).collect(),
                split_draw: None,
                threads: 2,
            };
            let (tree, members) = grow_tree(&prepared, &params, input, &mut importance);
            (tree, members, importance)
        };
        let by_columns = grow(0);
        let by_row = grow(usize::MAX);
        assert_eq!(
            by_columns.0.nodes.len(),
            2 * 63 - 1,
            "the tree grew every leaf"
        );
        assert_eq!(by_columns.0, by_row.0);
        assert_eq!(by_columns.1, by_row.1);
        assert_eq!(by_columns.2, by_row.2);
    }

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
        // One row at a time through the plain walk, adding the trees in order.
        let naive = |x: &Matrix| -> Vec<f64> {
            (0..x.rows)
                .map(|r| {
                    let trees = model.trees.iter().map(|t| t.predict_row(x, r));
                    model.init_score + trees.sum::<f64>()
                })
                .collect()
        };
        let expected = naive(&x);
        for threads in [1, 2, 3] {
            let got = model.predict_raw_on(&x, threads);
            assert_eq!(got.len(), n);
            // The same additions in the same order: the same bits.
            assert_eq!(got, expected, "threads {threads}");
        }

        // Scoring rows the training data never had: values exactly at split thresholds (the
        // rank layout's edge: `<=` goes left), infinities, and missing values in every column.
        let split_values: Vec<Vec<f64>> = (0..3)
            .map(|f| {
                model
                    .trees
                    .iter()
                    .flat_map(|t| &t.nodes)
                    .filter(|node| node.left != 0 && node.feature as usize == f)
                    .map(|node| node.threshold)
                    .collect()
            })
            .collect();
        assert!(
            split_values.iter().all(|t| !t.is_empty()),
            "every feature splits"
        );
        let edge: Vec<Vec<f64>> = (0..3)
            .map(|f| {
                (0..n)
                    .map(|i| match i % 6 {
                        0 | 1 => split_values[f][(i / 6 + f) % split_values[f].len()],
                        2 => f64::INFINITY,
                        3 => f64::NEG_INFINITY,
                        4 => f64::NAN,
                        _ => x.get(i, f),
                    })
                    .collect()
            })
            .collect();
        let edge = Matrix::from_columns(edge);
        let expected = naive(&edge);
        for threads in [1, 2] {
            assert_eq!(
                model.predict_raw_on(&edge, threads),
                expected,
                "threads {threads}"
            );
        }
        // Both directions of missing values were learned, so both block columns are used.
        let nodes = || {
            model
                .trees
                .iter()
                .flat_map(|t| &t.nodes)
                .filter(|n| n.left != 0)
        };
        assert!(nodes().any(|n| n.default_left) && nodes().any(|n| !n.default_left));
    }
}
