//! Random run names in MLflow's style (`bold-fox-123`), for runs created without one.

const ADJECTIVES: &[&str] = &[
    "able",
    "agile",
    "amazing",
    "bold",
    "brave",
    "bright",
    "calm",
    "clean",
    "clever",
    "crisp",
    "dapper",
    "eager",
    "fast",
    "fearless",
    "gentle",
    "glamorous",
    "grand",
    "honest",
    "keen",
    "kind",
    "lively",
    "loud",
    "lucky",
    "merciful",
    "nimble",
    "polite",
    "quick",
    "quiet",
    "rare",
    "sassy",
    "sharp",
    "shy",
    "silent",
    "smiling",
    "stately",
    "swift",
    "tasteful",
    "trusting",
    "upbeat",
    "vibrant",
    "wise",
    "zealous",
];

const NOUNS: &[&str] = &[
    "ant", "bass", "bat", "bear", "bird", "boar", "carp", "cat", "colt", "crab", "crane", "deer",
    "doe", "dog", "dove", "duck", "eel", "elk", "finch", "fish", "foal", "fox", "frog", "goat",
    "hare", "hawk", "hen", "horse", "jay", "lamb", "lark", "mole", "moth", "mouse", "newt", "owl",
    "ox", "panda", "pig", "ray", "seal", "shark", "sheep", "skunk", "slug", "snail", "squid",
    "stag", "swan", "toad", "trout", "whale", "wolf", "wren", "yak",
];

pub(crate) fn random_run_name() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let adjective = ADJECTIVES[usize::from(bytes[0]) % ADJECTIVES.len()];
    let noun = NOUNS[usize::from(bytes[1]) % NOUNS.len()];
    let number = u16::from_le_bytes([bytes[2], bytes[3]]) % 1000;
    format!("{adjective}-{noun}-{number}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_have_three_parts() {
        let name = super::random_run_name();
        assert_eq!(name.split('-').count(), 3, "{name}");
    }
}
