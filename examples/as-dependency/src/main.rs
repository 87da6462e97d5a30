//! The library crates as a dependent uses them: a tiny class-conditional U-Net built in code,
//! two training steps on synthetic 8x8 images (horizontal stripes for class 0, vertical for
//! class 1), then four images sampled with DDIM from the trained EMA weights. Exits non-zero
//! if a loss or a sampled value is not finite.

use std::error::Error;
use std::sync::atomic::AtomicBool;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor};
use diffusion_core::{Conditioning, DdimConfig, NoiseRng, SamplerConfig, sample_loop};
use diffusion_nets::{UNetConfig, UNetVariant};
use diffusion_train::data::{DataConfig, ImageDataset, ImageShape};
use diffusion_train::{StepProgress, TrainConfig, Trainer, load_run_for_inference};

const SIZE: usize = 8;

/// `count` gray images alternating between the two classes.
fn stripes(count: usize) -> Result<ImageDataset, Box<dyn Error>> {
    let mut pixels = Vec::with_capacity(count * SIZE * SIZE);
    let labels: Vec<usize> = (0..count).map(|i| i % 2).collect();
    for &label in &labels {
        for row in 0..SIZE {
            for col in 0..SIZE {
                let line = if label == 0 { row } else { col };
                pixels.push(if line % 2 == 0 { 255 } else { 0 });
            }
        }
    }
    let shape = ImageShape {
        channels: 1,
        height: SIZE,
        width: SIZE,
    };
    Ok(ImageDataset::from_raw(pixels, labels, shape, 2)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    // DDPM's U-Net (residual blocks, self-attention at 4x4 and in the middle), tiny: 1x8x8
    // images, two levels of 8 and 16 channels, 2 classes.
    let model = UNetConfig::new(1, SIZE)
        .with_base_channels(8)
        .with_channel_mults(vec![1, 2])
        .with_num_res_blocks(1)
        .with_attention_resolutions(vec![4])
        .with_norm_groups(4)
        .with_num_classes(Some(2))
        .with_variant(UNetVariant::ResidualAttention);
    let config = TrainConfig::new(DataConfig::new(), model)
        .with_batch_size(8)
        .with_max_steps(Some(2))
        .with_sample_every(0)
        .with_log_every(1);

    // Train into a scratch run directory (config, checkpoints, metrics).
    let run_dir = std::env::temp_dir().join(format!("as-dependency-{}", std::process::id()));
    let mut losses = Vec::new();
    let mut observer = |p: &StepProgress| {
        println!("step {}/{}: loss {:.4}", p.step, p.total_steps, p.loss);
        losses.push(p.loss);
    };
    let summary = Trainer::<Autodiff<Flex>>::new(config, &run_dir, Default::default())
        .with_dataset(stripes(16)?)
        .run(&AtomicBool::new(false), &mut observer)?;
    println!(
        "trained {} steps, last loss {:.4}",
        summary.final_step, summary.last_loss
    );

    // Sample from the newest checkpoint's EMA weights, on the backend without autodiff.
    let device = Default::default();
    let (config, net, schedule) = load_run_for_inference::<Flex>(&run_dir, true, &device)?;
    let mut sampler = SamplerConfig::Ddim(DdimConfig::new().with_num_steps(5))
        .init::<Flex>(&schedule, config.prediction_type)?;
    let mut rng = NoiseRng::seed_from_u64(7);
    let noise = rng.gaussian_tensor::<Flex, 4>([4, 1, SIZE, SIZE], &device);
    let labels = Tensor::<Flex, 1, Int>::from_data([0, 1, 0, 1], &device);
    let images = sample_loop(
        &net,
        &mut *sampler,
        noise,
        &Conditioning::Labels(labels),
        &mut rng,
        |_, _, _| {},
    )?;
    let dims = images.dims();
    let values = images.into_data().to_vec::<f32>()?;
    let (min, max) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    println!("sampled {dims:?}, values in [{min:.3}, {max:.3}]");
    std::fs::remove_dir_all(&run_dir)?;

    let finite_losses = losses.len() == 2 && losses.iter().all(|l| l.is_finite());
    if !finite_losses || summary.final_step != 2 || !values.iter().all(|v| v.is_finite()) {
        return Err(format!("not finite or not two steps: losses {losses:?}").into());
    }
    Ok(())
}
