//! Stable numeric ids for names (identities, policies, CIDR sets).
//!
//! An id is derived from a hash of the name, so the same name gets the same id in every
//! compile and after a daemon restart, and kernel entries keyed by it are updated in place
//! instead of being rewritten under new numbers. Collisions probe to the next free id in name
//! order, so a given set of names always yields the same ids.

use std::collections::{BTreeMap, HashSet};

/// Assigns ids in `first..first + count` to `names` (deduplicated).
pub fn stable_ids<'a>(
    names: impl IntoIterator<Item = &'a str>,
    first: u32,
    count: u32,
) -> BTreeMap<String, u32> {
    let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
    assert!(
        (names.len() as u64) < count as u64,
        "more names than ids in the range"
    );
    let mut taken = HashSet::new();
    let mut ids = BTreeMap::new();
    for name in names {
        let mut slot = (fnv1a(name.as_bytes()) % count as u64) as u32;
        while !taken.insert(slot) {
            slot = (slot + 1) % count;
        }
        ids.insert(name.to_string(), first + slot);
    }
    ids
}

/// FNV-1a, 64 bit: stable across builds and platforms (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_unique_and_in_range() {
        let names: Vec<String> = (0..500).map(|i| format!("ns/pod-{i}")).collect();
        let a = stable_ids(names.iter().map(String::as_str), 256, 1000);
        let b = stable_ids(names.iter().rev().map(String::as_str), 256, 1000);
        assert_eq!(a, b);
        let unique: HashSet<u32> = a.values().copied().collect();
        assert_eq!(unique.len(), 500);
        assert!(a.values().all(|id| (256..1256).contains(id)));
        // Adding a name moves no other (barring a collision on its slot).
        let mut more = names.clone();
        more.push("ns/new".into());
        let c = stable_ids(more.iter().map(String::as_str), 256, 1_000_000);
        let d = stable_ids(names.iter().map(String::as_str), 256, 1_000_000);
        assert!(d.iter().all(|(name, id)| c[name] == *id));
    }
}
