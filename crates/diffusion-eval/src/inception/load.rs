//! [`PthWeights`]: pytorch-fid's state dict read from a `.pth` file with burn-store.
//!
//! burn-store's `PytorchReader` reads the zip format of `torch.save` (PyTorch 1.6 and later)
//! and the legacy pickle format before it, which the official file (published in 2019) most
//! likely uses; both are tested with fixtures written by `scripts/golden/inception_fid.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;
use burn_store::pytorch::reader::FileFormat;

use super::WeightSource;
use crate::EvalError;

/// The tensors of a PyTorch state-dict file, handed out by key with their shape checked.
pub struct PthWeights {
    path: PathBuf,
    format: FileFormat,
    tensors: HashMap<String, TensorSnapshot>,
}

impl std::fmt::Debug for PthWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthWeights")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl PthWeights {
    /// Reads the file's structure (tensor data is read on demand).
    pub fn open(path: &Path) -> Result<Self, EvalError> {
        let error = |message: String| EvalError::Weights {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(error(
                "file not found; run `cargo xtask fetch-data --dataset inception-fid` to download \
                 pytorch-fid's weights (or pass the path of a copy)"
                    .into(),
            ));
        }
        let reader = PytorchReader::new(path)
            .map_err(|e| error(format!("not a readable PyTorch file: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            format: reader.metadata().format_type.clone(),
            tensors: reader.into_tensors(),
        })
    }

    /// The file's keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.tensors.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How `torch.save` wrote the file: `zip` (PyTorch 1.6 and later), `legacy` (the pickle
    /// format before), `tar` or `pickle`.
    pub fn format(&self) -> &'static str {
        match self.format {
            FileFormat::Zip => "zip",
            FileFormat::Legacy => "legacy",
            FileFormat::Tar => "tar",
            FileFormat::Pickle => "pickle",
        }
    }

    fn error(&self, message: String) -> EvalError {
        EvalError::Weights {
            path: self.path.clone(),
            message,
        }
    }
}

impl WeightSource for PthWeights {
    fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, EvalError> {
        let not_fid = "is this pytorch-fid's pt_inception-2015-12-05-6726825d.pth?";
        let Some(snapshot) = self.tensors.get(key) else {
            return Err(self.error(format!(
                "no tensor `{key}` (expected shape {shape:?}); {not_fid}"
            )));
        };
        if snapshot.shape.as_slice() != shape {
            return Err(self.error(format!(
                "tensor `{key}` has shape {:?}, expected {shape:?}; {not_fid}",
                snapshot.shape.as_slice()
            )));
        }
        if !snapshot.dtype.is_float() {
            return Err(self.error(format!(
                "tensor `{key}` holds {:?}, expected floats",
                snapshot.dtype
            )));
        }
        let data = snapshot
            .to_data()
            .map_err(|e| self.error(format!("cannot read tensor `{key}`: {e}")))?;
        data.convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| self.error(format!("cannot read tensor `{key}`: {e:?}")))
    }
}
