//! Data pipeline throughput: batches per second (batch 64) of gather + preprocess + tensor.
//!
//! `cargo bench -p diffusion-train --bench data_pipeline`. Reads Fashion-MNIST from
//! `$DIFFUSION_DATA`/`data/` (after `cargo xtask fetch-data --dataset fashion-mnist`) or from
//! Debian's `/usr/share/datasets/fashion-mnist`, else falls back to the bundled MNIST sample.
//! Prints figures; asserts nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use burn::data::dataset::Dataset;
use diffusion_train::data::{DataConfig, DataOrder, DatasetSource, resolve_data_dir};

type B = burn::backend::Flex;

const BATCH: usize = 64;
const BUDGET: Duration = Duration::from_secs(3);

fn source() -> (DataConfig, String) {
    let fashion = DataConfig::new().with_dataset(DatasetSource::FashionMnist);
    let local = resolve_data_dir(None);
    if local.join("fashion-mnist").is_dir() {
        let dir = local.to_string_lossy().into_owned();
        return (
            fashion.with_data_dir(Some(dir.clone())),
            format!("fashion-mnist in {dir}"),
        );
    }
    if Path::new("/usr/share/datasets/fashion-mnist").is_dir() {
        let cfg = fashion.with_data_dir(Some("/usr/share/datasets".into()));
        return (cfg, "fashion-mnist in /usr/share/datasets (Debian)".into());
    }
    (
        DataConfig::new(),
        "mnist-sample (bundled; Fashion-MNIST not found)".into(),
    )
}

fn run(label: &str, config: &DataConfig) {
    let device = Default::default();
    let start = Instant::now();
    let dataset = match config.load_dataset() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{label}: cannot load: {e}");
            return;
        }
    };
    let load = start.elapsed();
    let batcher = config.batcher(&dataset, 0);
    let Ok(mut order) = DataOrder::new(0, dataset.len(), BATCH) else {
        eprintln!("{label}: empty dataset");
        return;
    };
    let start = Instant::now();
    let mut batches = 0u64;
    while start.elapsed() < BUDGET {
        let batch = order.batch_for_step::<B, _>(batches, &dataset, &batcher, &device);
        std::hint::black_box(batch);
        batches += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<34} {} images {}x{}x{}: load {:>6.0} ms, {:>8.0} batches/s ({:>9.0} images/s)",
        dataset.len(),
        dataset.channels(),
        dataset.height(),
        dataset.width(),
        load.as_secs_f64() * 1e3,
        batches as f64 / secs,
        batches as f64 * BATCH as f64 / secs,
    );
}

fn main() {
    let (config, what) = source();
    println!("data pipeline, batch {BATCH}, Flex backend, {what}");
    run("28x28 as stored", &config);
    run("padded to 32x32", &config.clone().with_pad_to(Some(32)));
    run(
        "resized to 64x64, flips",
        &config
            .clone()
            .with_image_size(Some(64))
            .with_random_flip(Some(true)),
    );
}
