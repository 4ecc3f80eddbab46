//! Software prefetch of a byte range: every cache line requested at once, so a record read
//! right after costs about one memory latency instead of the hardware prefetcher's ramp.

/// Starts fetching every cache line of the `len` bytes at `start` into the cache. A hint:
/// the address is never dereferenced, so any value is harmless.
pub(crate) fn lines(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = start as usize;
        let end = start.saturating_add(len);
        let mut line = start & !63;
        while line < end {
            // SAFETY: a prefetch never faults and reads nothing architecturally, whatever
            // the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}
