//! A deterministic, mergeable quantile sketch with a tracked rank-error bound, for numeric
//! columns beyond the configured exact size.
//!
//! It is the compactor hierarchy of Manku, Rajagopalan and Lindsay (1998), as in KLL but
//! deterministic: level `h` holds items of weight `2^h`; when a level reaches `capacity`
//! items it is sorted and every other item (alternating which half per compaction) moves up
//! with double weight. A compaction of weight `w` changes the weighted count of items `<= x`
//! by at most `w` for every `x` (only the one pair that straddles `x` can change, by `±w`), so
//! the sketch carries `rank_error`, the sum of the weights of all its compactions: for every
//! `x`, `|rank_sketch(x) - rank_true(x)| <= rank_error`. Merging adds the two bounds. With `N`
//! items and capacity `k` there are about `log2(N/k)` levels, each adding about `N/k`, so the
//! normalised error `rank_error / N` is about `log2(N/k) / k` (0.08 % at N = 10^8, k = 16384).
//!
//! How the tests' error follows from it (documented on the report, tested in
//! `tests/monitor/sketch.rs`): with `e_r = rank_error_r / n_r` and `e_c` likewise, each ECDF is
//! within `e` of the exact one everywhere, so the KS statistic is within `e_r + e_c`, and the
//! Wasserstein distance (`∫|F_r - F_c|`) within `(e_r + e_c) * (max - min)` of the pooled range.

use serde::{Deserialize, Serialize};

use crate::ecdf::Weighted;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    /// Items a level may hold before it is compacted; the error shrinks as 1/capacity.
    capacity: usize,
    /// `levels[h]` holds items of weight `2^h`, unsorted between compactions.
    levels: Vec<Vec<f64>>,
    /// Per level, which half the next compaction keeps; alternating keeps successive errors
    /// from all pushing ranks the same way (the bound does not rely on it).
    keep_odd: Vec<bool>,
    /// Upper bound, in observations, on the rank error at any point.
    rank_error: u64,
    /// Observations summarised (exact: compaction preserves total weight).
    count: u64,
}

impl QuantileSketch {
    pub fn new(capacity: usize) -> Self {
        QuantileSketch {
            capacity: capacity.max(2),
            levels: vec![Vec::new()],
            keep_odd: vec![false],
            rank_error: 0,
            count: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The guaranteed bound on `|rank_sketch(x) - rank_true(x)|`, in observations.
    pub fn rank_error(&self) -> u64 {
        self.rank_error
    }

    /// `rank_error / count`: the bound on the ECDF's error.
    pub fn normalized_rank_error(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.rank_error as f64 / self.count as f64
        }
    }

    pub fn push(&mut self, value: f64) {
        self.levels[0].push(value);
        self.count += 1;
        if self.levels[0].len() >= self.capacity {
            self.compact_from(0);
        }
    }

    pub fn merge(&mut self, other: &QuantileSketch) {
        while self.levels.len() < other.levels.len() {
            self.levels.push(Vec::new());
            self.keep_odd.push(false);
        }
        for (mine, theirs) in self.levels.iter_mut().zip(&other.levels) {
            mine.extend_from_slice(theirs);
        }
        self.rank_error += other.rank_error;
        self.count += other.count;
        self.compact_from(0);
    }

    fn compact_from(&mut self, start: usize) {
        let mut h = start;
        while h < self.levels.len() {
            if self.levels[h].len() >= self.capacity {
                let mut items = std::mem::take(&mut self.levels[h]);
                items.sort_unstable_by(f64::total_cmp);
                // An odd item out stays at this level with its weight intact.
                if items.len() % 2 == 1 {
                    let last = items.pop().unwrap_or_default();
                    self.levels[h].push(last);
                }
                let offset = usize::from(self.keep_odd[h]);
                self.keep_odd[h] = !self.keep_odd[h];
                let promoted: Vec<f64> = items.iter().skip(offset).step_by(2).copied().collect();
                self.rank_error += 1u64 << h;
                if h + 1 == self.levels.len() {
                    self.levels.push(Vec::new());
                    self.keep_odd.push(false);
                }
                self.levels[h + 1].extend(promoted);
            }
            h += 1;
        }
    }

    /// Whether a sketch read from elsewhere keeps the invariants `push`, `merge` and the
    /// tests rely on: finite items, levels within capacity, weights that add up to `count`.
    pub fn check(&self, max_capacity: usize) -> Result<(), String> {
        if self.capacity < 2 || self.capacity > max_capacity {
            return Err(format!(
                "sketch capacity {} outside 2..={max_capacity}",
                self.capacity
            ));
        }
        // 2^62 observations is beyond any window; a deeper level would overflow its weight.
        if self.levels.is_empty()
            || self.levels.len() > 62
            || self.keep_odd.len() != self.levels.len()
        {
            return Err(format!("a sketch of {} levels", self.levels.len()));
        }
        let mut total: u64 = 0;
        for (h, level) in self.levels.iter().enumerate() {
            if level.len() > self.capacity {
                return Err(format!("sketch level {h} holds more than its capacity"));
            }
            if level.iter().any(|v| !v.is_finite()) {
                return Err("a sketch item is not a finite number".to_owned());
            }
            total = (level.len() as u64)
                .checked_mul(1u64 << h)
                .and_then(|w| total.checked_add(w))
                .ok_or("sketch weights overflow")?;
        }
        if total != self.count || self.rank_error > self.count {
            return Err(format!(
                "sketch weights add up to {total}, its count says {} (rank error {})",
                self.count, self.rank_error
            ));
        }
        Ok(())
    }

    /// The weighted items in value order: the sketch's ECDF.
    pub fn sorted_items(&self) -> Vec<Weighted> {
        let mut items: Vec<Weighted> = self
            .levels
            .iter()
            .enumerate()
            .flat_map(|(h, level)| {
                level.iter().map(move |&value| Weighted {
                    value,
                    weight: 1u64 << h,
                })
            })
            .collect();
        items.sort_unstable_by(|a, b| a.value.total_cmp(&b.value));
        items
    }
}
