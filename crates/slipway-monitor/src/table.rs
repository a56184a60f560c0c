//! Count tables: both sides' counts over the union of their values, the input of every
//! categorical test and of Evidently's one-bin-per-value binning.

use serde::{Deserialize, Serialize};

use crate::column::Category;
use crate::ecdf::{Sorted, walk};
use crate::profile::CategoricalProfile;

/// The key under which a profile's overflow (categories beyond its exact limit) is counted.
pub const OVERFLOW_KEY: &str = "\u{0}overflow";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTable {
    /// The union of both sides' values, in category order.
    pub keys: Vec<Category>,
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
}

impl CountTable {
    pub fn from_profiles(reference: &CategoricalProfile, current: &CategoricalProfile) -> Self {
        let mut ref_counts = reference.counts();
        let mut cur_counts = current.counts();
        if reference.overflow() > 0 || current.overflow() > 0 {
            ref_counts.insert(
                Category::Text(OVERFLOW_KEY.to_owned()),
                reference.overflow(),
            );
            cur_counts.insert(Category::Text(OVERFLOW_KEY.to_owned()), current.overflow());
        }
        let mut keys: Vec<Category> = ref_counts
            .keys()
            .chain(cur_counts.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        let reference = keys
            .iter()
            .map(|k| ref_counts.get(k).copied().unwrap_or(0))
            .collect();
        let current = keys
            .iter()
            .map(|k| cur_counts.get(k).copied().unwrap_or(0))
            .collect();
        let mut table = CountTable {
            keys,
            reference,
            current,
        };
        table.drop_empty();
        table
    }

    /// Distinct values of two sorted numeric samples as categories.
    pub fn from_sorted(reference: Sorted<'_>, current: Sorted<'_>) -> Self {
        let mut table = CountTable {
            keys: Vec::new(),
            reference: Vec::new(),
            current: Vec::new(),
        };
        walk(reference, current, |step| {
            table.keys.push(Category::Float(step.value));
            table.reference.push(step.ref_at);
            table.current.push(step.cur_at);
        });
        table
    }

    fn drop_empty(&mut self) {
        let keep: Vec<bool> = self
            .reference
            .iter()
            .zip(&self.current)
            .map(|(r, c)| r + c > 0)
            .collect();
        let mut i = 0;
        self.keys.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        self.reference.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        self.current.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    pub fn n_reference(&self) -> u64 {
        self.reference.iter().sum()
    }

    pub fn n_current(&self) -> u64 {
        self.current.iter().sum()
    }

    /// Categories of the current sample that the reference never had, and their count.
    pub fn unseen(&self) -> (usize, u64) {
        self.reference
            .iter()
            .zip(&self.current)
            .filter(|(r, c)| **r == 0 && **c > 0)
            .fold((0, 0), |(k, n), (_, c)| (k + 1, n + c))
    }

    /// The table without the current sample's unseen categories (auto mode tests these apart).
    pub fn without_unseen(&self) -> CountTable {
        let mut out = CountTable {
            keys: Vec::new(),
            reference: Vec::new(),
            current: Vec::new(),
        };
        for ((key, &r), &c) in self.keys.iter().zip(&self.reference).zip(&self.current) {
            if r > 0 {
                out.keys.push(key.clone());
                out.reference.push(r);
                out.current.push(c);
            }
        }
        out
    }
}
