//! SIGKILL at random moments never leaves a run without a loadable checkpoint.
//!
//! The test re-executes its own binary as a child (`current_exe` with this test's name and an
//! environment variable that turns the test into the trainer), kills it at random points of
//! training and checkpointing, and loads what is on disk after every kill. Each new child also
//! resumes, which exercises the recovery of a lock left by a killed process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use diffusion_nets::{UNetConfig, UNetVariant};
use diffusion_train::checkpoint::{latest_checkpoint, load_checkpoint};
use diffusion_train::data::{DataConfig, ImageDataset, ImageShape};
use diffusion_train::{NoObserver, PreviewConfig, TrainConfig, Trainer, load_run_for_inference};

type Inner = burn::backend::Flex;
type B = burn::backend::Autodiff<Inner>;

const CHILD_ENV: &str = "DIFFUSION_TRAIN_KILL_TEST_RUN_DIR";
const TEST_NAME: &str = "sigkill_at_any_moment_leaves_a_loadable_checkpoint";
const KILLS: usize = 15;

fn config() -> TrainConfig {
    let model = UNetConfig::new(1, 8)
        .with_base_channels(8)
        .with_channel_mults(vec![1, 2])
        .with_num_res_blocks(1)
        .with_attention_resolutions(vec![])
        .with_norm_groups(4)
        .with_dropout(0.0)
        .with_variant(UNetVariant::Residual);
    TrainConfig::new(DataConfig::new(), model)
        .with_max_steps(Some(100_000))
        .with_batch_size(4)
        // a checkpoint every step, so that kills land inside checkpoint writes too
        .with_checkpoint_every(1)
        .with_keep_last_checkpoints(2)
        .with_sample_every(0)
        .with_log_every(1)
        .with_preview(PreviewConfig::new())
}

fn dataset() -> ImageDataset {
    let pixels = (0..16 * 64).map(|i| (i * 7 % 256) as u8).collect();
    let shape = ImageShape {
        channels: 1,
        height: 8,
        width: 8,
    };
    ImageDataset::from_raw(pixels, vec![0; 16], shape, 1).unwrap()
}

fn run_child(dir: &Path) {
    // Runs until killed (or until its 100k steps are done, which the parent never waits for).
    let _ = Trainer::<B>::new(config(), dir, Default::default())
        .with_dataset(dataset())
        .resume(true)
        .run(&AtomicBool::new(false), &mut NoObserver);
}

/// A small deterministic generator for the kill delays (xorshift).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_any_moment_leaves_a_loadable_checkpoint() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&dir));
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut steps = Vec::new();
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round == 0 {
            // The run exists from its step-0 checkpoint on; before that there is no run.
            let deadline = Instant::now() + Duration::from_secs(60);
            while latest_checkpoint(&dir).unwrap().is_none() {
                assert!(Instant::now() < deadline, "the child wrote no checkpoint");
                assert!(child.try_wait().unwrap().is_none(), "the child exited");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(next(&mut rng) % 900));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let (step, checkpoint) = latest_checkpoint(&dir)
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: no complete checkpoint"));
        load_checkpoint::<B>(&checkpoint, &config(), &Default::default())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        load_run_for_inference::<Inner>(&dir, true, &Default::default())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        steps.push(step);
    }
    eprintln!("newest checkpoint after each kill: {steps:?}");
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "checkpoints went backwards: {steps:?}"
    );
    assert!(
        steps.last().copied().unwrap_or(0) > steps[0],
        "resumed children made no progress: {steps:?}"
    );
}
