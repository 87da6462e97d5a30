//! Timings of the metrics at Inception's sizes: feature statistics and the Fréchet distance at
//! d = 2048, precision/recall on 10,000 x 2048. Prints figures; not run in CI.
//!
//! `cargo bench -p diffusion-eval --bench frechet [-- --quick]` (`--quick`: 2,000 rows).

use std::time::Instant;

use diffusion_eval::Features;
use diffusion_eval::metrics::{frechet_distance, precision_recall};
use diffusion_eval::stats::FeatureStats;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 2048;

/// Features with a decaying spectrum, like pooled network activations.
fn features(n: usize, scale: f32, seed: u64) -> Features {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..n * DIM)
        .map(|k| {
            let j = k % DIM;
            scale * (rng.random::<f32>() - 0.5) / (1.0 + j as f32 / 16.0)
        })
        .collect();
    Features::from_rows(DIM, data).expect("n * DIM values")
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    println!("{what:<48} {:>8.2} s", start.elapsed().as_secs_f64());
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 10_000 };
    println!(
        "threads: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let real = features(n, 1.0, 1);
    let fake = features(n, 1.1, 2);
    let stats_real = timed(&format!("FeatureStats::from_features {n} x {DIM}"), || {
        FeatureStats::from_features(&real).expect("stats")
    });
    let stats_fake = FeatureStats::from_features(&fake).expect("stats");
    let fd = timed(&format!("frechet_distance d = {DIM}"), || {
        frechet_distance(&stats_real, &stats_fake).expect("fd")
    });
    println!("  FD = {fd:.6}");
    let pr = timed(&format!("precision_recall {n} x {DIM}, k = 3"), || {
        precision_recall(&real, &fake, 3).expect("pr")
    });
    println!(
        "  precision = {:.4}, recall = {:.4}",
        pr.precision, pr.recall
    );
}
