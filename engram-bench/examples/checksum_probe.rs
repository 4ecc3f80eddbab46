//! crc32c vs xxh3-64 over one 768-d episode slot, hot and cold (random slots of 1 GiB).
fn main() {
    let slot = 3_148usize;
    let n = (1usize << 30) / 3_200;
    let buf: Vec<u8> = (0..n * 3_200).map(|i| (i * 31 % 251) as u8).collect();
    let mut rng = engram_fixtures::Rng::new(3);
    let ids: Vec<usize> = (0..200_000)
        .map(|_| (rng.next_u64() % n as u64) as usize)
        .collect();
    for (name, f) in [
        (
            "crc32c",
            (|b: &[u8]| crc32c::crc32c(b) as u64) as fn(&[u8]) -> u64,
        ),
        ("xxh3-64", |b: &[u8]| xxhash_rust::xxh3::xxh3_64(b)),
    ] {
        let mut s = 0u64;
        let t = std::time::Instant::now();
        for _ in 0..200_000 {
            s ^= f(&buf[..slot]);
        }
        let hot = t.elapsed().as_nanos() as f64 / 2e5;
        let t = std::time::Instant::now();
        for &i in &ids {
            s ^= f(&buf[i * 3_200..i * 3_200 + slot]);
        }
        let cold = t.elapsed().as_nanos() as f64 / 2e5;
        println!("{name:8} hot {hot:6.0} ns  cold {cold:6.0} ns  ({s})");
    }
}
