//! Metric history chunks: the points of one metric key from one log-batch, packed as
//! little-endian `(timestamp: i64, step: i64, value: f64)` triples.
//!
//! Reading a page of history merges the chunks that can hold points after the cursor, in the
//! order MLflow returns them (timestamp, step, value), collapsing identical points (a retried
//! log-batch writes its chunk twice). Memory stays proportional to the page size: the working
//! set is cut back to the smallest `limit + 1` points whenever it grows past a few pages, and
//! the scan stops as soon as no later chunk can contribute.

use std::cmp::Ordering;

const POINT_BYTES: usize = 24;

/// One point as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub timestamp: i64,
    pub step: i64,
    pub value: f64,
}

pub(crate) fn encode(points: &[Point]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(points.len() * POINT_BYTES);
    for point in points {
        bytes.extend_from_slice(&point.timestamp.to_le_bytes());
        bytes.extend_from_slice(&point.step.to_le_bytes());
        bytes.extend_from_slice(&point.value.to_bits().to_le_bytes());
    }
    bytes
}

/// `None` for a blob that is not a whole number of points (a corrupted row).
pub(crate) fn decode(bytes: &[u8]) -> Option<impl Iterator<Item = Point> + '_> {
    if !bytes.len().is_multiple_of(POINT_BYTES) {
        return None;
    }
    Some(bytes.chunks_exact(POINT_BYTES).map(|raw| {
        let field = |range: std::ops::Range<usize>| {
            let mut buffer = [0u8; 8];
            buffer.copy_from_slice(&raw[range]);
            buffer
        };
        Point {
            timestamp: i64::from_le_bytes(field(0..8)),
            step: i64::from_le_bytes(field(8..16)),
            value: f64::from_bits(u64::from_le_bytes(field(16..24))),
        }
    }))
}

/// A point with the index of its chunk's metadata (model id, dataset), which is part of its
/// identity when collapsing duplicates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub point: Point,
    pub meta: usize,
}

/// MLflow's history order: timestamp, step, then value (NaN after every number).
pub(crate) fn order(a: &Point, b: &Point) -> Ordering {
    a.timestamp
        .cmp(&b.timestamp)
        .then(a.step.cmp(&b.step))
        .then_with(|| match (a.value.is_nan(), b.value.is_nan()) {
            (false, false) => a.value.total_cmp(&b.value),
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
        })
}

/// Collects the smallest `limit + 1` distinct points strictly after `after`.
pub(crate) struct PageCollector {
    after: Option<Point>,
    limit: usize,
    entries: Vec<Entry>,
    metas: Vec<Meta>,
    /// The latest timestamp among `entries`, kept so the completion check is O(1).
    max_timestamp: i64,
}

/// Per-chunk metadata a point carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub model_id: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

impl PageCollector {
    pub(crate) fn new(after: Option<Point>, limit: usize) -> Self {
        PageCollector {
            after,
            limit,
            entries: Vec::new(),
            metas: Vec::new(),
            max_timestamp: i64::MIN,
        }
    }

    /// Adds a chunk's points; `false` when the blob is corrupt.
    pub(crate) fn add_chunk(&mut self, meta: Meta, blob: &[u8]) -> bool {
        let Some(points) = decode(blob) else {
            return false;
        };
        let meta_index = match self.metas.iter().position(|known| *known == meta) {
            Some(index) => index,
            None => {
                self.metas.push(meta);
                self.metas.len() - 1
            }
        };
        let after = self.after;
        for point in points.filter(|point| after.is_none_or(|after| order(point, &after).is_gt())) {
            self.max_timestamp = self.max_timestamp.max(point.timestamp);
            self.entries.push(Entry {
                point,
                meta: meta_index,
            });
        }
        if self.entries.len() > 4 * (self.limit + 1) {
            self.compact();
        }
        true
    }

    /// Whether the page is already decided: `limit + 1` distinct points all earlier than
    /// `next_min_timestamp`, the smallest timestamp any unread chunk can hold.
    pub(crate) fn is_complete_before(&mut self, next_min_timestamp: i64) -> bool {
        // Cheap tests first: this runs once per chunk read, and sorting each time would make a
        // paged read quadratic. Only when every point held is earlier than the next chunk can
        // the page be complete; then sorting and collapsing duplicates tells for sure.
        if self.entries.len() <= self.limit || self.max_timestamp >= next_min_timestamp {
            return false;
        }
        self.compact();
        self.entries.len() > self.limit
            && self
                .entries
                .last()
                .is_some_and(|entry| entry.point.timestamp < next_min_timestamp)
    }

    /// Sorts, collapses identical points and keeps the smallest `limit + 1`.
    ///
    /// A point's identity is (timestamp, step, value), as in MLflow's metrics table, whose key
    /// leaves out the model and dataset: the cursor carries exactly that triple, so two points
    /// differing only in metadata could otherwise straddle a page boundary and one be lost.
    fn compact(&mut self) {
        self.entries.sort_by(|a, b| {
            order(&a.point, &b.point)
                .then(a.point.value.to_bits().cmp(&b.point.value.to_bits()))
                .then(a.meta.cmp(&b.meta))
        });
        self.entries.dedup_by(|a, b| {
            a.point.timestamp == b.point.timestamp
                && a.point.step == b.point.step
                && a.point.value.to_bits() == b.point.value.to_bits()
        });
        self.entries.truncate(self.limit + 1);
        self.max_timestamp = self
            .entries
            .iter()
            .map(|entry| entry.point.timestamp)
            .max()
            .unwrap_or(i64::MIN);
    }

    /// The page in order, whether more points follow, and the metadata the entries index.
    pub(crate) fn finish(mut self) -> (Vec<Entry>, bool, Vec<Meta>) {
        self.compact();
        let more = self.entries.len() > self.limit;
        self.entries.truncate(self.limit);
        (self.entries, more, self.metas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(timestamp: i64, step: i64, value: f64) -> Point {
        Point {
            timestamp,
            step,
            value,
        }
    }

    fn meta() -> Meta {
        Meta {
            model_id: None,
            dataset_name: None,
            dataset_digest: None,
        }
    }

    #[test]
    fn blobs_round_trip_every_value_bit_exactly() {
        let points = [
            point(1, 0, 0.5),
            point(-5, i64::MAX, f64::NAN),
            point(i64::MIN, -1, f64::INFINITY),
            point(3, 3, f64::NEG_INFINITY),
            point(4, 4, -0.0),
        ];
        let decoded: Vec<Point> = decode(&encode(&points)).unwrap().collect();
        assert_eq!(decoded.len(), points.len());
        for (a, b) in decoded.iter().zip(&points) {
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!((a.timestamp, a.step), (b.timestamp, b.step));
        }
        assert!(decode(&[0u8; 23]).is_none());
    }

    #[test]
    fn pages_are_ordered_deduplicated_and_bounded() {
        let chunk_a: Vec<Point> = (0..100).map(|i| point(i, i, i as f64)).collect();
        // A retried batch: the same points again, plus one new.
        let mut chunk_b = chunk_a[40..60].to_vec();
        chunk_b.push(point(50, 50, 7.0));
        let mut collector = PageCollector::new(Some(point(9, 9, 9.0)), 10);
        assert!(collector.add_chunk(meta(), &encode(&chunk_a)));
        assert!(collector.add_chunk(meta(), &encode(&chunk_b)));
        let (entries, more, _) = collector.finish();
        let timestamps: Vec<i64> = entries.iter().map(|e| e.point.timestamp).collect();
        assert_eq!(timestamps, (10..20).collect::<Vec<_>>());
        assert!(more);
    }

    #[test]
    fn the_last_page_says_no_more() {
        let chunk: Vec<Point> = (0..5).map(|i| point(i, 0, 1.0)).collect();
        let mut collector = PageCollector::new(None, 5);
        collector.add_chunk(meta(), &encode(&chunk));
        let (entries, more, _) = collector.finish();
        assert_eq!(entries.len(), 5);
        assert!(!more);
    }

    #[test]
    fn nan_sorts_after_numbers_at_the_same_step() {
        let chunk = [point(1, 1, f64::NAN), point(1, 1, 2.0), point(1, 1, -1.0)];
        let mut collector = PageCollector::new(None, 10);
        collector.add_chunk(meta(), &encode(&chunk));
        let (entries, _, _) = collector.finish();
        assert_eq!(entries[0].point.value, -1.0);
        assert_eq!(entries[1].point.value, 2.0);
        assert!(entries[2].point.value.is_nan());
    }

    #[test]
    fn points_differing_only_in_metadata_are_one_point_so_paging_loses_nothing() {
        let other = Meta {
            model_id: Some("m-1".into()),
            ..meta()
        };
        let shared = [point(10, 0, 1.0)];
        let later = [point(20, 1, 2.0)];
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let mut collector = PageCollector::new(after, 1);
            collector.add_chunk(meta(), &encode(&shared));
            collector.add_chunk(other.clone(), &encode(&shared));
            collector.add_chunk(meta(), &encode(&later));
            let (entries, more, _) = collector.finish();
            seen.extend(entries.iter().map(|e| e.point.timestamp));
            after = entries.last().map(|e| e.point);
            if !more {
                break;
            }
        }
        assert_eq!(seen, vec![10, 20]);
    }

    #[test]
    fn completion_needs_a_full_page_before_the_next_chunk() {
        let chunk: Vec<Point> = (0..20).map(|i| point(i, 0, 0.0)).collect();
        let mut collector = PageCollector::new(None, 10);
        collector.add_chunk(meta(), &encode(&chunk));
        assert!(collector.is_complete_before(100));
        assert!(!collector.is_complete_before(5));
    }
}
