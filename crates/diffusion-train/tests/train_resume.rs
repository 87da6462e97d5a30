//! End-to-end training on a tiny net: exact resume, previews, run-directory errors.
//!
//! Flex keeps one global RNG per process (dropout, weight init), so the tests of this binary
//! take a lock and run one at a time.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{Module, ModuleMapper, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use diffusion_nets::{UNet, UNetConfig, UNetVariant};
use diffusion_train::checkpoint::{
    CheckpointChoice, EMA_FILE, MANIFEST_FILE, MODEL_FILE, RunLock, latest_checkpoint,
    list_checkpoints,
};
use diffusion_train::data::{DataConfig, ImageDataset, ImageShape};
use diffusion_train::metrics::read_metrics;
use diffusion_train::{
    EmaConfig, LrDecay, LrScheduleConfig, METRICS_FILE, NoObserver, PreviewConfig, StepProgress,
    TrainConfig, TrainError, TrainEvent, TrainObserver, Trainer, load_checkpoint_for_inference,
    load_run, load_run_for_inference,
};

type Inner = burn::backend::Flex;
type B = burn::backend::Autodiff<Inner>;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_config(max_steps: usize) -> TrainConfig {
    let model = UNetConfig::new(1, 8)
        .with_base_channels(8)
        .with_channel_mults(vec![1, 2])
        .with_num_res_blocks(1)
        .with_attention_resolutions(vec![4])
        .with_norm_groups(4)
        .with_dropout(0.1)
        .with_variant(UNetVariant::ResidualAttention)
        .with_num_classes(Some(3));
    TrainConfig::new(DataConfig::new().with_random_flip(Some(true)), model)
        .with_max_steps(Some(max_steps))
        .with_batch_size(5)
        .with_grad_accum_steps(2)
        .with_p_uncond(0.3)
        .with_seed(7)
        .with_lr_schedule(
            LrScheduleConfig::new()
                .with_warmup_steps(2)
                .with_decay(LrDecay::Cosine),
        )
        .with_ema(EmaConfig::new().with_decay(0.9))
        .with_checkpoint_every(3)
        .with_sample_every(0)
        .with_log_every(2)
        .with_keep_last_checkpoints(2)
        .with_preview(
            PreviewConfig::new()
                .with_num_images(3)
                .with_columns(3)
                .with_ddim_steps(2),
        )
}

/// 23 images of 8x8 (an odd count, so epochs end on a partial batch), 3 classes.
fn tiny_dataset() -> ImageDataset {
    let count = 23;
    let pixels = (0..count * 64)
        .map(|i| ((i * 37 + i / 64 * 11) % 256) as u8)
        .collect();
    let labels = (0..count).map(|i| i % 3).collect();
    let shape = ImageShape {
        channels: 1,
        height: 8,
        width: 8,
    };
    ImageDataset::from_raw(pixels, labels, shape, 3).unwrap()
}

fn weights(model: &UNet<Inner>) -> Vec<u32> {
    struct Collect(Vec<u32>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let data = param.val().into_data();
            self.0.extend(data.iter::<f32>().map(f32::to_bits));
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// Trains `config` in `dir`, stopping (checkpoint + clean return) after `stop_at` steps if
/// given; returns the (step, loss bits) of every step trained by this call.
fn train(config: &TrainConfig, dir: &Path, stop_at: Option<usize>) -> Vec<(usize, u64)> {
    let stop = AtomicBool::new(false);
    let mut losses = Vec::new();
    let mut observer = |p: &StepProgress| {
        losses.push((p.step, p.loss.to_bits()));
        if Some(p.step) == stop_at {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let summary = Trainer::<B>::new(config.clone(), dir, Default::default())
        .with_dataset(tiny_dataset())
        .resume(true)
        .run(&stop, &mut observer)
        .unwrap();
    assert_eq!(summary.stopped, stop_at.is_some());
    losses
}

#[test]
fn stop_and_resume_is_bit_identical_to_a_straight_run() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let config = tiny_config(8).with_sample_every(4);
    let straight_dir = root.path().join("straight");
    let straight = train(&config, &straight_dir, None);
    assert_eq!(straight.len(), 8);

    let split_dir = root.path().join("split");
    let mut split = train(&config, &split_dir, Some(4));
    assert_eq!(split.len(), 4);
    let second = train(&config, &split_dir, None);
    // max_steps counts the whole run: the resumed call trains only the remaining 4 steps
    assert_eq!(second.first().map(|s| s.0), Some(5));
    split.extend(second);
    assert_eq!(split, straight, "per-step losses differ");
    assert!(
        straight
            .iter()
            .all(|(_, bits)| f64::from_bits(*bits).is_finite())
    );

    for use_ema in [false, true] {
        let (_, a, _) =
            load_run_for_inference::<Inner>(&straight_dir, use_ema, &Default::default()).unwrap();
        let (config_b, b, schedule) =
            load_run_for_inference::<Inner>(&split_dir, use_ema, &Default::default()).unwrap();
        assert_eq!(
            weights(&a),
            weights(&b),
            "final weights differ (ema: {use_ema})"
        );
        assert_eq!(config_b, config);
        assert_eq!(schedule.num_timesteps(), 1000);
    }
    // the EMA lags the weights
    let (_, raw, _) =
        load_run_for_inference::<Inner>(&split_dir, false, &Default::default()).unwrap();
    let (_, ema, _) =
        load_run_for_inference::<Inner>(&split_dir, true, &Default::default()).unwrap();
    assert_ne!(weights(&raw), weights(&ema));

    // run directory layout
    assert!(split_dir.join("config.json").is_file());
    assert!(split_dir.join("samples/step-00000004.png").is_file());
    assert!(split_dir.join("samples/step-00000008.png").is_file());
    let steps: Vec<usize> = list_checkpoints(&split_dir)
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(steps, vec![6, 8], "keep_last_checkpoints = 2");
    let logged: Vec<usize> = read_metrics(&split_dir.join(METRICS_FILE))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(logged, vec![2, 4, 6, 8]);
}

#[test]
fn a_second_trainer_on_the_same_run_is_refused() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let _held = RunLock::acquire(&dir).unwrap();
    let err = Trainer::<B>::new(tiny_config(2), &dir, Default::default())
        .with_dataset(tiny_dataset())
        .run(&AtomicBool::new(false), &mut NoObserver)
        .unwrap_err();
    assert!(matches!(err, TrainError::RunLocked { .. }), "{err}");
    assert!(err.to_string().contains(&dir.display().to_string()));
}

#[test]
fn existing_runs_need_resume_and_the_same_architecture() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    train(&tiny_config(2), &dir, None);

    let err = Trainer::<B>::new(tiny_config(4), &dir, Default::default())
        .with_dataset(tiny_dataset())
        .run(&AtomicBool::new(false), &mut NoObserver)
        .unwrap_err();
    assert!(matches!(err, TrainError::RunExists { .. }), "{err}");

    let mut wider = tiny_config(4);
    wider.model.base_channels = 12;
    let err = Trainer::<B>::new(wider, &dir, Default::default())
        .with_dataset(tiny_dataset())
        .resume(true)
        .run(&AtomicBool::new(false), &mut NoObserver)
        .unwrap_err();
    assert!(
        matches!(err, TrainError::ArchitectureMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("base_channels"), "{err}");

    // the weights file itself, loaded into another architecture: an error, not a panic
    let (_, checkpoint) = latest_checkpoint(&dir).unwrap().unwrap();
    let mut other = tiny_config(1).model;
    other.channel_mults = vec![1, 2, 2];
    other.image_size = 8;
    let template = other.init::<Inner>(&Default::default()).unwrap();
    let result = diffusion_train::checkpoint::load_module(
        template,
        &checkpoint.join(MODEL_FILE),
        &Default::default(),
    );
    assert!(result.is_err());
}

#[test]
fn truncated_or_foreign_checkpoints_are_clear_errors() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let err = load_run_for_inference::<Inner>(&dir, true, &Default::default()).unwrap_err();
    assert!(matches!(err, TrainError::NoCheckpoint { .. }), "{err}");
    train(&tiny_config(1), &dir, None);
    let (_, checkpoint) = latest_checkpoint(&dir).unwrap().unwrap();
    let model = checkpoint.join(MODEL_FILE);
    let bytes = std::fs::read(&model).unwrap();
    // one checkpoint directory, no fallback
    let load = |ema| load_checkpoint_for_inference::<Inner>(&checkpoint, ema, &Default::default());

    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(false).unwrap_err();
    assert!(matches!(err, TrainError::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("model.mpk"), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // without the manifest (as written before manifests existed) the decoder finds it
    std::fs::remove_file(checkpoint.join(MANIFEST_FILE)).unwrap();
    let err = load(false).unwrap_err();
    assert!(matches!(err, TrainError::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("model.mpk"), "{err}");

    std::fs::write(&model, b"this is not a checkpoint").unwrap();
    let err = load(false).unwrap_err();
    assert!(matches!(err, TrainError::CorruptCheckpoint { .. }), "{err}");

    std::fs::write(checkpoint.join("state.json"), b"{}").unwrap();
    let err = load(true).unwrap_err();
    assert!(err.to_string().contains("state.json"), "{err}");
}

/// Collects the trainer's events.
struct Events(Vec<TrainEvent>);

impl TrainObserver for Events {
    fn on_event(&mut self, event: &TrainEvent) {
        self.0.push(event.clone());
    }
}

#[test]
fn damaged_newest_checkpoints_are_passed_over_and_kept_aside() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let straight = root.path().join("straight");
    train(&tiny_config(9), &straight, None);
    let dir = root.path().join("run");
    train(&tiny_config(6), &dir, None);
    let steps =
        |dir: &Path| -> Vec<usize> { list_checkpoints(dir).unwrap().iter().map(|c| c.0).collect() };
    assert_eq!(steps(&dir), vec![3, 6]);
    let ema = dir.join("checkpoints/step-00000006").join(EMA_FILE);
    let bytes = std::fs::read(&ema).unwrap();
    let load = |choice| load_run::<Inner>(&dir, choice, true, &Default::default());

    for (damage, damaged) in [
        ("truncated", bytes[..bytes.len() - 7].to_vec()),
        ("zero-filled", vec![0u8; bytes.len()]),
    ] {
        std::fs::write(&ema, &damaged).unwrap();
        let run = load(CheckpointChoice::NewestReadable).unwrap();
        assert_eq!(run.step, 3, "{damage}: falls back to the older checkpoint");
        assert_eq!(run.skipped.len(), 1, "{damage}");
        assert_eq!(run.skipped[0].step, 6);
        assert!(
            run.skipped[0].error.to_string().contains("ema.mpk"),
            "{damage}"
        );
        // a named step does not fall back
        let err = load(CheckpointChoice::Step(6)).unwrap_err();
        assert!(
            matches!(err, TrainError::CorruptCheckpoint { .. }),
            "{damage}: {err}"
        );
        assert_eq!(load(CheckpointChoice::Step(3)).unwrap().step, 3);
        // sampling moves nothing
        assert_eq!(steps(&dir), vec![3, 6]);
    }

    // Resuming goes on from step 3, keeps the damaged one aside, and ends where a straight
    // run ends, bit for bit.
    let mut events = Events(Vec::new());
    let summary = Trainer::<B>::new(tiny_config(9), &dir, Default::default())
        .with_dataset(tiny_dataset())
        .resume(true)
        .run(&AtomicBool::new(false), &mut events)
        .unwrap();
    assert_eq!((summary.start_step, summary.final_step), (3, 9));
    let skipped: Vec<&TrainEvent> = events
        .0
        .iter()
        .filter(|e| matches!(e, TrainEvent::CheckpointSkipped { .. }))
        .collect();
    assert_eq!(skipped.len(), 1, "{:?}", events.0);
    let kept = dir.join("checkpoints/step-00000006.damaged");
    assert_eq!(
        std::fs::read(kept.join(EMA_FILE)).unwrap(),
        vec![0u8; bytes.len()]
    );
    assert_eq!(
        steps(&dir),
        vec![6, 9],
        "rotation counted intact checkpoints only"
    );
    assert!(kept.is_dir(), "rotation never deletes a damaged checkpoint");
    for use_ema in [false, true] {
        let (_, a, _) =
            load_run_for_inference::<Inner>(&straight, use_ema, &Default::default()).unwrap();
        let (_, b, _) =
            load_run_for_inference::<Inner>(&dir, use_ema, &Default::default()).unwrap();
        assert_eq!(weights(&a), weights(&b), "ema: {use_ema}");
    }
    RunLock::acquire(&dir).expect("the lock is released");
}

#[test]
fn a_run_with_no_readable_checkpoint_is_an_error_not_a_fresh_start() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    train(&tiny_config(3), &dir, None);
    for (_, checkpoint) in list_checkpoints(&dir).unwrap() {
        let model = checkpoint.join(MODEL_FILE);
        let len = std::fs::metadata(&model).unwrap().len() as usize;
        std::fs::write(&model, vec![0u8; len]).unwrap();
    }
    let err = Trainer::<B>::new(tiny_config(6), &dir, Default::default())
        .with_dataset(tiny_dataset())
        .resume(true)
        .run(&AtomicBool::new(false), &mut NoObserver)
        .unwrap_err();
    assert!(
        matches!(err, TrainError::NoReadableCheckpoint { count: 2, .. }),
        "{err}"
    );
    let err = load_run_for_inference::<Inner>(&dir, false, &Default::default()).unwrap_err();
    assert!(
        matches!(err, TrainError::NoReadableCheckpoint { .. }),
        "{err}"
    );
    // nothing was moved: the user decides
    assert_eq!(list_checkpoints(&dir).unwrap().len(), 2);
    RunLock::acquire(&dir).expect("the lock is released");
}

/// Replaces every weight by NaN.
struct Poison;

impl<B: Backend> ModuleMapper<B> for Poison {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.mul_scalar(f32::NAN), mapper)
    }
}

#[test]
fn non_finite_steps_are_skipped_then_stop_training_and_never_reach_a_checkpoint() {
    let _guard = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    train(&tiny_config(1), &dir, None);
    let (_, checkpoint) = latest_checkpoint(&dir).unwrap().unwrap();
    // Poison the raw weights of the checkpoint behind the trainer's back.
    let (_, model, _) = load_run_for_inference::<Inner>(&dir, false, &Default::default()).unwrap();
    let poisoned = model.map(&mut Poison).into_record();
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .record::<_>(poisoned, ())
        .unwrap();
    std::fs::write(checkpoint.join(MODEL_FILE), bytes).unwrap();
    // Without its manifest the checkpoint is taken as written, NaNs and all (with it, the
    // changed file would be found damaged and passed over).
    std::fs::remove_file(checkpoint.join(MANIFEST_FILE)).unwrap();

    let diverging = tiny_config(50)
        .with_max_consecutive_nonfinite(3)
        .with_checkpoint_every(100);
    let mut skipped = Vec::new();
    let err = Trainer::<B>::new(diverging, &dir, Default::default())
        .with_dataset(tiny_dataset())
        .resume(true)
        .run(&AtomicBool::new(false), &mut |p: &StepProgress| {
            skipped.push(p.skipped)
        })
        .unwrap_err();
    assert!(
        matches!(err, TrainError::Diverged { consecutive: 3, .. }),
        "{err}"
    );
    assert_eq!(skipped, vec![true, true, true]);

    let saving = tiny_config(50).with_checkpoint_every(1);
    let err = Trainer::<B>::new(saving, &dir, Default::default())
        .with_dataset(tiny_dataset())
        .resume(true)
        .run(&AtomicBool::new(false), &mut NoObserver)
        .unwrap_err();
    assert!(matches!(err, TrainError::NonFiniteWeights { .. }), "{err}");
    let steps: Vec<usize> = list_checkpoints(&dir)
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        steps,
        vec![0, 1],
        "no checkpoint was written after the poisoning"
    );
}
