//! What a checkpoint holds and how each part is (de)serialized.
//!
//! `model.mpk`, `ema.mpk`, `optimizer.mpk` (Burn records in named MessagePack at full
//! precision, so a resumed run is bit-identical), `state.json` (step, data position, counters)
//! and `config.json` (the whole [`TrainConfig`], checked before any weight is loaded), then
//! `manifest.json`: the size and CRC-32 of each of those files, so that a checkpoint damaged
//! after it was written (a truncated or zero-filled file) is found without decoding it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

use crate::{TrainConfig, TrainError};

/// Weights of the trained network.
pub const MODEL_FILE: &str = "model.mpk";
/// EMA weights.
pub const EMA_FILE: &str = "ema.mpk";
/// AdamW moments and step counts.
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";
/// [`CheckpointState`] as JSON.
pub const STATE_FILE: &str = "state.json";
/// The [`TrainConfig`] the checkpoint was written with.
pub const CONFIG_FILE: &str = "config.json";
/// Size and CRC-32 of every other file, written last.
pub const MANIFEST_FILE: &str = "manifest.json";

const FORMAT: &str = "diffusion-train-checkpoint";
const VERSION: u32 = 1;

type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format tag, always `diffusion-train-checkpoint`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Optimizer steps completed (skipped non-finite steps included).
    pub step: usize,
    /// Epoch of the next micro-batch in the data order.
    pub epoch: u64,
    /// Index of the next micro-batch within its epoch.
    pub batch_index: u64,
    /// Learning rate of the last step (informative: the rate is a function of the step).
    pub lr: f64,
    /// The run's seed; every step's randomness derives from `(seed, step)`.
    pub seed: u64,
    /// Steps skipped so far for a non-finite loss or gradient.
    pub skipped_nonfinite: usize,
    /// Of which in a row, up to this step.
    pub consecutive_nonfinite: usize,
    /// Training wall time so far, across resumes, in seconds.
    pub wall_time_s: f64,
}

impl CheckpointState {
    /// A state at `step` with the current format tag.
    pub fn new(step: usize, seed: u64) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            step,
            epoch: 0,
            batch_index: 0,
            lr: 0.0,
            seed,
            skipped_nonfinite: 0,
            consecutive_nonfinite: 0,
            wall_time_s: 0.0,
        }
    }
}

/// One file of a checkpoint as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestEntry {
    name: String,
    bytes: u64,
    crc32: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    files: Vec<ManifestEntry>,
}

/// The manifest of a checkpoint holding `files` (name, contents).
pub(crate) fn manifest_json(files: &[(&str, &[u8])]) -> Result<Vec<u8>, TrainError> {
    let manifest = Manifest {
        files: files
            .iter()
            .map(|(name, bytes)| ManifestEntry {
                name: (*name).to_string(),
                bytes: bytes.len() as u64,
                crc32: crc32fast::hash(bytes),
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&manifest).map_err(|e| {
        corrupt(
            Path::new(MANIFEST_FILE),
            format!("cannot serialize the manifest: {e}"),
        )
    })
}

/// Checks that the checkpoint in `dir` is whole: every file its manifest lists has the recorded
/// size and CRC-32. Reads each file once; decodes nothing. A checkpoint written before
/// manifests existed passes (only decoding its files can tell; loading does that).
pub fn verify_checkpoint(dir: &Path) -> Result<(), TrainError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(corrupt(&path, e.to_string())),
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| corrupt(&path, format!("not a checkpoint manifest: {e}")))?;
    for entry in &manifest.files {
        let file = dir.join(&entry.name);
        let bytes = std::fs::read(&file).map_err(|e| corrupt(&file, e.to_string()))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(corrupt(
                &file,
                format!(
                    "{} bytes, {} when it was written (truncated or overwritten)",
                    bytes.len(),
                    entry.bytes
                ),
            ));
        }
        if crc32fast::hash(&bytes) != entry.crc32 {
            return Err(corrupt(
                &file,
                "its contents changed after it was written (CRC-32 mismatch)",
            ));
        }
    }
    Ok(())
}

fn corrupt(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::CorruptCheckpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Serializes a Burn record at full precision.
pub(crate) fn record_to_bytes<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>, TrainError> {
    Bytes::default()
        .record(record, ())
        .map_err(|e| corrupt(Path::new("<memory>"), format!("cannot serialize: {e}")))
}

/// Reads a Burn record; a missing, truncated or foreign file is a [`TrainError`], and so is a
/// panic inside Burn's decoder.
pub(crate) fn read_record<B: Backend, R: Record<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<R, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| corrupt(path, e.to_string()))?;
    let recorder = Bytes::default();
    match catch_unwind(AssertUnwindSafe(|| recorder.load::<R>(bytes, device))) {
        Ok(Ok(record)) => Ok(record),
        Ok(Err(e)) => Err(corrupt(path, format!("not a readable record: {e}"))),
        Err(_) => Err(corrupt(path, "the record decoder panicked")),
    }
}

/// Loads the weights in `path` into `template`, which must have the same architecture; the
/// shape of every parameter is compared so that a mismatch is an error here rather than a
/// panic in the first forward pass.
pub fn load_module<B: Backend, M: Module<B>>(
    template: M,
    path: &Path,
    device: &B::Device,
) -> Result<M, TrainError> {
    let expected = param_shapes(&template);
    let record = read_record::<B, M::Record>(path, device)?;
    let loaded = catch_unwind(AssertUnwindSafe(|| template.load_record(record)))
        .map_err(|_| corrupt(path, "the record does not fit the module"))?;
    let found = param_shapes(&loaded);
    if found != expected {
        let first = expected
            .iter()
            .zip(&found)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(found.len()));
        return Err(TrainError::ArchitectureMismatch {
            path: path.to_path_buf(),
            message: format!(
                "{} parameter tensors expected, {} found; first difference at tensor {first}: \
                 expected shape {:?}, found {:?}",
                expected.len(),
                found.len(),
                expected.get(first),
                found.get(first)
            ),
        });
    }
    Ok(loaded)
}

/// Shapes of all float parameters in visiting order (lazy shapes: no initialization).
fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.lazy_shape().iter().copied().collect());
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}

/// Whether every float parameter of `module` is finite (one device read: the sum of
/// `p * 0` over all parameters is NaN exactly when some value is NaN or infinite). Forces the
/// initialization of lazily initialized parameters.
pub fn all_finite<B: Backend, M: Module<B>>(module: &M) -> bool {
    struct Probe<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Probe<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().mul_scalar(0.0).sum());
        }
    }
    let mut probe = Probe::<B>(Vec::new());
    module.visit(&mut probe);
    if probe.0.is_empty() {
        return true;
    }
    let total: f64 = Tensor::cat(probe.0, 0).sum().into_scalar().elem();
    total.is_finite()
}

/// Reads `state.json` of a checkpoint directory.
pub fn read_state(dir: &Path) -> Result<CheckpointState, TrainError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| corrupt(&path, e.to_string()))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| corrupt(&path, format!("not a checkpoint state: {e}")))?;
    if state.format != FORMAT || state.version != VERSION {
        return Err(corrupt(
            &path,
            format!(
                "format {} v{} is not {FORMAT} v{VERSION}",
                state.format, state.version
            ),
        ));
    }
    Ok(state)
}

/// Reads the `config.json` stored in a checkpoint directory.
pub fn read_config(dir: &Path) -> Result<TrainConfig, TrainError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| corrupt(&path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| corrupt(&path, format!("not a training config: {e}")))
}

/// Fails with [`TrainError::ArchitectureMismatch`] naming the differing fields when the
/// network stored with the checkpoint in `dir` is not `expected`.
pub fn check_same_model(
    dir: &Path,
    stored: &diffusion_nets::UNetConfig,
    expected: &diffusion_nets::UNetConfig,
) -> Result<(), TrainError> {
    if stored == expected {
        return Ok(());
    }
    let as_map = |c: &diffusion_nets::UNetConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(stored), as_map(expected));
    let fields: Vec<String> = b
        .iter()
        .filter(|(key, value)| a.get(*key) != Some(value))
        .map(|(key, value)| {
            let old = a.get(key).map_or("missing".into(), |v| v.to_string());
            format!("model.{key}: checkpoint has {old}, config has {value}")
        })
        .collect();
    Err(TrainError::ArchitectureMismatch {
        path: dir.to_path_buf(),
        message: fields.join("; "),
    })
}

/// The files of a checkpoint directory, in writing order.
pub fn checkpoint_files(dir: &Path) -> [PathBuf; 5] {
    [
        MODEL_FILE,
        EMA_FILE,
        OPTIMIZER_FILE,
        STATE_FILE,
        CONFIG_FILE,
    ]
    .map(|f| dir.join(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{TestBackend, flat, tiny_train_config, tiny_unet_config};
    use burn::module::ModuleMapper;

    struct Scale(f32);
    impl<B: Backend> ModuleMapper<B> for Scale {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = p.consume();
            Param::from_mapped_value(id, tensor.mul_scalar(self.0), mapper)
        }
    }

    #[test]
    fn module_round_trip_is_exact_and_shapes_are_checked() {
        let device = Default::default();
        let config = tiny_unet_config(Some(3));
        let model = config.init::<TestBackend>(&device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MODEL_FILE);
        std::fs::write(&path, record_to_bytes(model.clone().into_record()).unwrap()).unwrap();
        let fresh = config
            .init::<TestBackend>(&device)
            .unwrap()
            .map(&mut Scale(2.0));
        assert!(flat(&fresh) != flat(&model));
        let loaded = load_module(fresh, &path, &device).unwrap();
        assert!(
            flat(&loaded) == flat(&model),
            "weights changed in the round trip"
        );

        let other = tiny_unet_config(Some(3)).with_base_channels(12);
        let template = other.init::<TestBackend>(&device).unwrap();
        let err = load_module(template, &path, &device).unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::ArchitectureMismatch { .. } | TrainError::CorruptCheckpoint { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn non_finite_weights_are_detected() {
        let device = Default::default();
        let model = tiny_unet_config(None).init::<TestBackend>(&device).unwrap();
        assert!(all_finite(&model));
        assert!(!all_finite(&model.clone().map(&mut Scale(f32::NAN))));
        assert!(!all_finite(&model.map(&mut Scale(f32::INFINITY))));
    }

    #[test]
    fn model_differences_are_named_and_foreign_states_rejected() {
        let a = tiny_unet_config(Some(3));
        let b = a.clone().with_num_res_blocks(2);
        check_same_model(Path::new("ck"), &a, &a).unwrap();
        let err = check_same_model(Path::new("ck"), &a, &b)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.num_res_blocks: checkpoint has 1, config has 2"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let mut state = CheckpointState::new(3, 1);
        std::fs::write(
            dir.path().join(STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), state);
        state.format = "something-else".into();
        std::fs::write(
            dir.path().join(STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        assert!(read_state(dir.path()).is_err());

        let config = tiny_train_config();
        std::fs::write(dir.path().join(CONFIG_FILE), config.to_json().unwrap()).unwrap();
        assert_eq!(read_config(dir.path()).unwrap(), config);
    }
}
