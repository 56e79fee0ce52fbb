//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): the lookup table is computed here,
//! in user space, and the kernel does one map lookup per new flow.
//!
//! Every backend gets a pseudo-random permutation of table positions derived from its name;
//! backends take turns claiming their next free preferred position. Removing one of N
//! backends frees only its ~1/N of positions, so only the flows on it move, and every node
//! computing the table from the same backend set gets the same table.

use skiff_common::MAGLEV_TABLE_SIZE;

/// Builds the table for `backends` (pairs of a stable name and the backend id to store).
/// Names decide positions, so the order of `backends` does not matter. Empty in, empty out.
pub fn maglev_table(backends: &[(String, u32)]) -> Vec<u32> {
    let m = MAGLEV_TABLE_SIZE as u64;
    if backends.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<&(String, u32)> = backends.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let permutations: Vec<(u64, u64)> = sorted
        .iter()
        .map(|(name, _)| {
            let offset = fnv1a(name.as_bytes(), 0) % m;
            let skip = fnv1a(name.as_bytes(), 1) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; sorted.len()];
    let mut table: Vec<Option<u32>> = vec![None; m as usize];
    let mut filled = 0;
    'fill: loop {
        for (i, (_, id)) in sorted.iter().enumerate() {
            let (offset, skip) = permutations[i];
            let mut position = (offset + next[i] * skip) % m;
            while table[position as usize].is_some() {
                next[i] += 1;
                position = (offset + next[i] * skip) % m;
            }
            table[position as usize] = Some(*id);
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table.into_iter().map(|id| id.unwrap_or_default()).collect()
}

/// FNV-1a, 64 bit, with a seed byte: stable across builds and machines (unlike std's hasher),
/// which nodes need to agree on tables.
fn fnv1a(bytes: &[u8], seed: u8) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(&seed).chain(bytes) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u32) -> Vec<(String, u32)> {
        (0..n)
            .map(|i| (format!("10.244.1.{i}:8080"), i + 1))
            .collect()
    }

    #[test]
    fn every_backend_gets_a_fair_share() {
        let table = maglev_table(&backends(10));
        assert_eq!(table.len(), MAGLEV_TABLE_SIZE as usize);
        for id in 1..=10 {
            let share = table.iter().filter(|&&t| t == id).count();
            // M/N = 102; Maglev keeps shares within a few percent of that.
            assert!(
                (95..=110).contains(&share),
                "backend {id} has {share} slots"
            );
        }
    }

    #[test]
    fn removing_one_of_n_moves_only_its_positions() {
        let before = maglev_table(&backends(10));
        let mut fewer = backends(10);
        let removed = fewer.remove(3).1;
        let after = maglev_table(&fewer);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && **b != removed)
            .count();
        // Positions of surviving backends that changed owner: Maglev bounds these to a small
        // fraction (the paper reports ~1-2% at this size).
        assert!(
            moved * 100 <= before.len() * 3,
            "{moved} positions of surviving backends moved"
        );
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut reversed = backends(5);
        reversed.reverse();
        assert_eq!(maglev_table(&backends(5)), maglev_table(&reversed));
    }
}
