//! Throughput of the FID Inception forward pass (resize to 299, pool3) on Flex, CPU, with
//! deterministic weights (speed does not depend on their values). Prints figures; not a test.
//!
//! `cargo bench -p diffusion-eval --bench extract_inception` (env `BENCH_BATCHES`, default
//! `16,64`; `BENCH_ROUNDS`, default 3 measured rounds after one warm-up round per batch size).
//! Input: 28x28 gray images, as for MNIST.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use diffusion_eval::FeatureExtractor;
use diffusion_eval::inception::FidInception;

type B = burn::backend::Flex;

fn main() {
    let batches: Vec<usize> = std::env::var("BENCH_BATCHES")
        .unwrap_or_else(|_| "16,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let device = Default::default();
    let started = Instant::now();
    let net = FidInception::<B>::from_fn(
        |_, shape, i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) / (shape.len() as f32),
        &device,
    );
    let build_s = started.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "extract_inception backend=Flex threads={threads} input=[n, 1, 28, 28] -> 299 -> pool3"
    );
    println!("  network built in {build_s:.2} s");
    for &n in &batches {
        let images =
            Tensor::<B, 4>::random([n, 1, 28, 28], Distribution::Uniform(-1.0, 1.0), &device);
        let mut rates = Vec::new();
        for round in 0..=rounds {
            let t = Instant::now();
            let features = net.features(images.clone());
            // Reading the values back waits for the whole computation.
            let _ = features.into_data();
            if round > 0 {
                rates.push(n as f64 / t.elapsed().as_secs_f64());
            }
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "  batch {n:3}: {:.2} images/s median (min {:.2}, max {:.2}) over {rounds} rounds after 1 warm-up",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
}
