//! A profile built from pieces and merged equals the profile of the concatenation, and
//! survives serialization: what replicas sending window summaries rely on.

use proptest::prelude::*;
use slipway_monitor::{ColumnProfile, ProfileConfig, ProfileKind, RawValue};

fn cell(code: (u8, i16)) -> RawValue<'static> {
    const WORDS: [&str; 6] = ["a", "b", "c", "dd", "e", "ff"];
    match code.0 % 6 {
        0 => RawValue::Null,
        1 => RawValue::Float(f64::NAN),
        2 => RawValue::Float(f64::from(code.1) / 7.0),
        3 => RawValue::Int(i64::from(code.1 % 9)),
        4 => RawValue::Str(WORDS[code.1.unsigned_abs() as usize % 6]),
        _ => RawValue::Float(f64::from(code.1 % 5)),
    }
}

fn build(kind: ProfileKind, cells: &[(u8, i16)]) -> ColumnProfile {
    let mut profile = ColumnProfile::new(kind, ProfileConfig::default());
    for &c in cells {
        profile.push(cell(c));
    }
    profile
}

proptest! {
    #[test]
    fn merge_equals_concatenation(
        cells in proptest::collection::vec((any::<u8>(), any::<i16>()), 0..300),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        numeric in any::<bool>(),
    ) {
        let kind = if numeric { ProfileKind::Numeric } else { ProfileKind::Categorical };
        let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(cells.len() + 1)).collect();
        bounds.push(0);
        bounds.push(cells.len());
        bounds.sort_unstable();
        let mut merged = ColumnProfile::new(kind, ProfileConfig::default());
        for pair in bounds.windows(2) {
            let piece = build(kind, &cells[pair[0]..pair[1]]);
            // A window travels serialized from a replica to the server.
            let wire = serde_json::to_string(&piece).expect("serialize");
            let piece: ColumnProfile = serde_json::from_str(&wire).expect("deserialize");
            merged.merge(&piece).expect("same kind");
        }
        let mut whole = build(kind, &cells);
        merged.finish();
        whole.finish();
        prop_assert_eq!(merged.count(), whole.count());
        prop_assert_eq!(merged.missing(), whole.missing());
        match (&merged, &whole) {
            (ColumnProfile::Numeric(m), ColumnProfile::Numeric(w)) => {
                let (md, wd) = (m.sorted_data(), w.sorted_data());
                let (mv, wv) = (md.view(), wd.view());
                prop_assert_eq!(mv.runs().collect::<Vec<_>>(), wv.runs().collect::<Vec<_>>());
                prop_assert_eq!(m.range(), w.range());
                prop_assert_eq!(m.integer_dtype(), w.integer_dtype());
                if w.count() > 0 {
                    // The running moments merge exactly up to rounding.
                    let (a, b) = (m.std(), w.std());
                    prop_assert!((a - b).abs() <= 1e-9 * b.max(1.0), "{} vs {}", a, b);
                }
            }
            (ColumnProfile::Categorical(m), ColumnProfile::Categorical(w)) => {
                prop_assert_eq!(m.counts(), w.counts());
            }
            _ => prop_assert!(false, "kinds changed"),
        }
    }
}

#[test]
fn merging_kinds_that_differ_is_refused() {
    let mut numeric = ColumnProfile::new(ProfileKind::Numeric, ProfileConfig::default());
    let categorical = ColumnProfile::new(ProfileKind::Categorical, ProfileConfig::default());
    assert!(numeric.merge(&categorical).is_err());
}

#[test]
fn categories_beyond_the_limit_go_to_overflow() {
    let config = ProfileConfig {
        max_categories: 3,
        ..ProfileConfig::default()
    };
    let mut profile = ColumnProfile::new(ProfileKind::Categorical, config);
    for word in ["a", "b", "c", "d", "a", "e", "d"] {
        profile.push(RawValue::Str(word));
    }
    let ColumnProfile::Categorical(p) = &profile else {
        unreachable!()
    };
    assert_eq!(p.count(), 7);
    assert_eq!(p.overflow(), 3);
    assert_eq!(p.counts().values().sum::<u64>(), 4);
}
