//! The unique-key index (`.keys`): open addressing, linear probing, 16-byte cells
//! `(hash, episode id)`, a power-of-two number of cells kept at most half full.

/// Lays out a key index holding `entries` in `cells` cells.
pub(crate) fn build(entries: &[(u64, u64)], cells: u64) -> Vec<u8> {
    debug_assert!(cells.is_power_of_two() && entries.len() as u64 * 2 <= cells);
    let mut b = vec![0u8; cells as usize * 16];
    for &(hash, id) in entries {
        let mut cell = hash & (cells - 1);
        loop {
            let at = cell as usize * 16;
            if b[at..at + 8] == [0; 8] {
                b[at..at + 8].copy_from_slice(&hash.to_le_bytes());
                b[at + 8..at + 16].copy_from_slice(&id.to_le_bytes());
                break;
            }
            cell = (cell + 1) & (cells - 1);
        }
    }
    b
}
