//! One linear walk over two sorted samples: every test on numeric columns (KS, Wasserstein,
//! Anderson-Darling, the histogram binnings) is a fold over this walk, so a column costs one
//! sort of each side and one merge, with no allocation per value.

use serde::{Deserialize, Serialize};

/// A value that stands for `weight` observations (a sketch's compacted item).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weighted {
    pub value: f64,
    pub weight: u64,
}

/// A sorted sample, either exact (every observation) or weighted (a sketch's view).
#[derive(Debug, Clone, Copy)]
pub enum Sorted<'a> {
    Exact(&'a [f64]),
    Weighted(&'a [Weighted]),
}

impl Sorted<'_> {
    /// Total number of observations the view stands for.
    pub fn total(&self) -> u64 {
        match self {
            Sorted::Exact(values) => values.len() as u64,
            Sorted::Weighted(items) => items.iter().map(|item| item.weight).sum(),
        }
    }

    pub fn runs(&self) -> Runs<'_> {
        Runs {
            view: *self,
            pos: 0,
        }
    }

    /// Number of distinct values.
    pub fn distinct(&self) -> usize {
        self.runs().count()
    }
}

/// Groups equal values: yields `(value, count)` in increasing value order.
pub struct Runs<'a> {
    view: Sorted<'a>,
    pos: usize,
}

impl Iterator for Runs<'_> {
    type Item = (f64, u64);

    fn next(&mut self) -> Option<(f64, u64)> {
        match self.view {
            Sorted::Exact(values) => {
                let value = *values.get(self.pos)?;
                let start = self.pos;
                self.pos += 1;
                while self.pos < values.len() && values[self.pos] == value {
                    self.pos += 1;
                }
                Some((value, (self.pos - start) as u64))
            }
            Sorted::Weighted(items) => {
                let first = items.get(self.pos)?;
                let mut weight = first.weight;
                self.pos += 1;
                while self.pos < items.len() && items[self.pos].value == first.value {
                    weight += items[self.pos].weight;
                    self.pos += 1;
                }
                Some((first.value, weight))
            }
        }
    }
}

/// One distinct value of the pooled sample, with both sides' counts at it and up to it.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub value: f64,
    pub ref_at: u64,
    pub cur_at: u64,
    /// Observations of the reference `<= value`.
    pub ref_cum: u64,
    /// Observations of the current sample `<= value`.
    pub cur_cum: u64,
}

/// Calls `visit` once per distinct pooled value, in increasing order.
pub fn walk(reference: Sorted<'_>, current: Sorted<'_>, mut visit: impl FnMut(&Step)) {
    let mut a = reference.runs();
    let mut b = current.runs();
    let mut next_a = a.next();
    let mut next_b = b.next();
    let (mut ref_cum, mut cur_cum) = (0u64, 0u64);
    loop {
        let step = match (next_a, next_b) {
            (None, None) => break,
            (Some((va, ca)), None) => {
                next_a = a.next();
                (va, ca, 0)
            }
            (None, Some((vb, cb))) => {
                next_b = b.next();
                (vb, 0, cb)
            }
            (Some((va, ca)), Some((vb, cb))) => {
                if va < vb {
                    next_a = a.next();
                    (va, ca, 0)
                } else if vb < va {
                    next_b = b.next();
                    (vb, 0, cb)
                } else {
                    next_a = a.next();
                    next_b = b.next();
                    (va, ca, cb)
                }
            }
        };
        ref_cum += step.1;
        cur_cum += step.2;
        visit(&Step {
            value: step.0,
            ref_at: step.1,
            cur_at: step.2,
            ref_cum,
            cur_cum,
        });
    }
}
