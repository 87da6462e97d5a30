//! Training throughput and peak memory of the `mnist` preset at batch 64 on Flex
//! (`Autodiff<Flex>`, CPU). Prints figures; not a test.
//!
//! `cargo bench -p diffusion-train --bench train_step` (env `BENCH_STEPS`, default 12 measured
//! steps after 3 warm-up steps; `BENCH_PRESET` for another preset).

use std::sync::atomic::AtomicBool;

use burn::module::Module;
use diffusion_train::{StepProgress, TrainConfig, Trainer};

type B = burn::backend::Autodiff<burn::backend::Flex>;

const WARMUP_STEPS: usize = 3;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let preset = std::env::var("BENCH_PRESET").unwrap_or_else(|_| "mnist".into());
    let measured: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let config = TrainConfig::preset(&preset)?
        .with_batch_size(64)
        .with_grad_accum_steps(1)
        .with_max_steps(Some(WARMUP_STEPS + measured))
        .with_epochs(None)
        .with_checkpoint_every(1_000_000)
        .with_sample_every(0)
        .with_log_every(1_000_000);
    let device = Default::default();
    let params = config
        .model
        .init::<burn::backend::Flex>(&device)?
        .num_params();
    let run_dir = tempfile::tempdir()?;
    let mut rates = Vec::new();
    let mut observer = |p: &StepProgress| {
        if p.step > WARMUP_STEPS {
            rates.push(p.images_per_sec);
        }
    };
    let stop = AtomicBool::new(false);
    Trainer::<B>::new(config, run_dir.path(), device).run(&stop, &mut observer)?;
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "train_step preset={preset} params={params} batch=64 backend=Autodiff<Flex> threads={threads}"
    );
    println!(
        "  images/s median {median:.1} (min {:.1}, max {:.1}) over {} steps after {WARMUP_STEPS} warm-up",
        rates[0],
        rates[rates.len() - 1],
        rates.len()
    );
    println!(
        "  step time median {:.3} s; peak RSS (VmHWM) {:.0} MiB",
        64.0 / median,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
