//! A trained [`Classifier`] on disk: [`RECORD_FILE`] (its Burn record, named MessagePack at
//! full precision) and [`INFO_FILE`] (a JSON sidecar: format, architecture, the record's size
//! and FNV-1a hash, and the [`ClassifierInfo`]: dataset, config, test accuracy).
//!
//! Both files are written under temporary names in the same directory, flushed and renamed, the
//! JSON last, after removing any previous JSON: a present JSON means a complete cache, and an
//! interrupted save leaves no cache rather than a half-written one. Loading checks the JSON's
//! format and architecture, then the record's size and hash, before decoding anything, so that a
//! cache of another version or a damaged file is an [`EvalError::Cache`] naming the JSON (the
//! file to delete to rebuild), never a panic.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::{CLASSIFIER_ARCH, Classifier, ClassifierConfig};
use crate::EvalError;

/// The weights, as a Burn record.
pub const RECORD_FILE: &str = "classifier.mpk";
/// The sidecar, written last.
pub const INFO_FILE: &str = "classifier.json";

const FORMAT: &str = "diffusion-eval-classifier";

type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// What a cached classifier is: the caller's description, stored in the sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierInfo {
    /// The dataset it was trained on, as a key chosen by the caller (e.g. `fashion-mnist`).
    pub dataset: String,
    /// The config it was trained with.
    pub config: ClassifierConfig,
    /// Images it was trained on.
    pub train_images: usize,
    /// Images its test accuracy was measured on.
    pub test_images: usize,
    /// The fraction of those it classified correctly.
    pub test_accuracy: f64,
    /// Wall time of the training, in seconds.
    pub train_seconds: f64,
}

/// The sidecar as written: a format tag and the record's digest around the info.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: String,
    architecture: String,
    record_bytes: u64,
    record_fnv1a64: String,
    #[serde(flatten)]
    info: ClassifierInfo,
}

/// Writes `model` and `info` into `dir` (created if needed), replacing any cache there, and
/// returns the weights tag (`<dataset>-<first 8 hex digits of the record's hash>`) that
/// [`load_classifier`] gives the loaded model; set it on `model` with
/// [`Classifier::with_weights_tag`] so that both have the same [`crate::FeatureExtractor::id`].
pub fn save_classifier<B: Backend>(
    dir: &Path,
    model: &Classifier<B>,
    info: &ClassifierInfo,
) -> Result<String, EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let bytes = Bytes::default()
        .record(model.clone().into_record(), ())
        .map_err(|e| io(dir.join(RECORD_FILE), std::io::Error::other(e.to_string())))?;
    let hash = format!("{:016x}", fnv1a64(&bytes));
    let sidecar = Sidecar {
        format: FORMAT.into(),
        architecture: CLASSIFIER_ARCH.into(),
        record_bytes: bytes.len() as u64,
        record_fnv1a64: hash.clone(),
        info: info.clone(),
    };
    let json = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| io(dir.join(INFO_FILE), std::io::Error::other(e)))?;

    // Without a JSON there is no cache: from here until the last rename, an interruption
    // leaves none rather than an old sidecar next to a new record.
    let info_path = dir.join(INFO_FILE);
    match std::fs::remove_file(&info_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&info_path, e)),
        _ => {}
    }
    write_atomically(dir, RECORD_FILE, &bytes)?;
    write_atomically(dir, INFO_FILE, &json)?;
    // Best effort: make the renames themselves durable.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(weights_tag(&info.dataset, &hash))
}

/// Loads the classifier cached in `dir`: `Ok(None)` when there is none (no [`INFO_FILE`]),
/// an [`EvalError::Cache`] when the cache is of another format or architecture version, or
/// damaged (unparsable JSON, missing, truncated or altered record).
pub fn load_classifier<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Option<(Classifier<B>, ClassifierInfo)>, EvalError> {
    let info_path = dir.join(INFO_FILE);
    let text = match std::fs::read_to_string(&info_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(cache(&info_path, "not UTF-8 text"));
        }
        Err(e) => return Err(io(&info_path, e)),
    };
    let sidecar = parse_sidecar(&info_path, &text)?;

    let record_path = dir.join(RECORD_FILE);
    let bytes = match std::fs::read(&record_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(cache(
                &info_path,
                format!("its record {} is missing", record_path.display()),
            ));
        }
        Err(e) => return Err(io(&record_path, e)),
    };
    if bytes.len() as u64 != sidecar.record_bytes {
        return Err(cache(
            &info_path,
            format!(
                "its record {} has {} bytes, {} when it was written: truncated or overwritten",
                record_path.display(),
                bytes.len(),
                sidecar.record_bytes
            ),
        ));
    }
    let hash = format!("{:016x}", fnv1a64(&bytes));
    if hash != sidecar.record_fnv1a64 {
        return Err(cache(
            &info_path,
            format!(
                "its record {} changed after it was written (hash {hash}, {} when written)",
                record_path.display(),
                sidecar.record_fnv1a64
            ),
        ));
    }

    let info = sidecar.info;
    info.config
        .validate()
        .map_err(|e| cache(&info_path, e.to_string()))?;
    let template = info.config.init::<B>(device);
    // The hash matched, so the bytes are those this version wrote; the decoder is still kept
    // from turning a surprise into a panic.
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        Bytes::default()
            .load::<<Classifier<B> as Module<B>>::Record>(bytes, device)
            .map(|record| template.load_record(record))
    }));
    let model = match decoded {
        Ok(Ok(model)) => model,
        Ok(Err(e)) => return Err(cache(&info_path, format!("unreadable record: {e}"))),
        Err(_) => return Err(cache(&info_path, "the record does not fit the network")),
    };
    if model.num_classes() != info.config.num_classes {
        return Err(cache(
            &info_path,
            format!(
                "the record has {} classes, the config {}",
                model.num_classes(),
                info.config.num_classes
            ),
        ));
    }
    let model = model.with_weights_tag(weights_tag(&info.dataset, &hash));
    Ok(Some((model, info)))
}

/// Parses the sidecar, checking format and architecture first so that a sidecar of another
/// version is reported as such rather than as a missing field.
fn parse_sidecar(path: &Path, text: &str) -> Result<Sidecar, EvalError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| cache(path, format!("not JSON (half-written?): {e}")))?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("none");
    let (format, architecture) = (field("format"), field("architecture"));
    if format != FORMAT || architecture != CLASSIFIER_ARCH {
        return Err(cache(
            path,
            format!(
                "written as {format} {architecture}; this version reads {FORMAT} \
                 {CLASSIFIER_ARCH}"
            ),
        ));
    }
    serde_json::from_value(value).map_err(|e| cache(path, format!("not a classifier sidecar: {e}")))
}

/// Writes `bytes` to `dir/.name.<pid>.tmp`, flushes it and renames it to `dir/name`.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), EvalError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, &target));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        io(&target, e)
    })
}

fn weights_tag(dataset: &str, hash: &str) -> String {
    format!("{dataset}-{}", &hash[..8.min(hash.len())])
}

/// FNV-1a, 64 bits: enough to tell a damaged record from the one written (not an
/// integrity check against tampering).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn cache(path: &Path, message: impl Into<String>) -> EvalError {
    EvalError::Cache {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io(path: impl Into<PathBuf>, source: std::io::Error) -> EvalError {
    EvalError::Io {
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_values() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
