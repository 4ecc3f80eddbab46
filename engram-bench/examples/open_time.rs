//! Median open time of existing databases: `open_time DIR...`.
fn main() {
    for dir in std::env::args().skip(1) {
        let mut t: Vec<f64> = (0..15)
            .map(|_| {
                let s = std::time::Instant::now();
                let db = engram_core::Engram::open(&dir, engram_core::Options::default()).unwrap();
                let n = db.begin_read().unwrap().episode_count();
                let ms = s.elapsed().as_secs_f64() * 1e3;
                assert!(n > 0);
                ms
            })
            .collect();
        t.sort_by(f64::total_cmp);
        println!(
            "{dir}: open median {:.3} ms (min {:.3}, max {:.3})",
            t[7], t[0], t[14]
        );
    }
}
