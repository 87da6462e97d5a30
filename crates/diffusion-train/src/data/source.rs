//! Where datasets live: the source enum, the split, and path resolution.

use std::path::{Path, PathBuf};

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// Environment variable overriding the default data directory (`data/`).
pub const DATA_DIR_ENV: &str = "DIFFUSION_DATA";
/// Environment variable overriding the bundled assets directory (for installed binaries, whose
/// compile-time source path may no longer exist).
pub const ASSETS_DIR_ENV: &str = "DIFFUSION_ASSETS";
/// The default data directory, relative to the current directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Which dataset to train on.
///
/// JSON: `"mnist-sample"`, `"mnist"`, `"fashion-mnist"`, `"cifar10"` or
/// `{"folder": {"path": "my/images"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetSource {
    /// The 10,000 MNIST digits bundled in `assets/mnist-sample/` (train split only).
    MnistSample,
    /// MNIST, from `<data_dir>/mnist/`.
    Mnist,
    /// Fashion-MNIST, from `<data_dir>/fashion-mnist/`.
    FashionMnist,
    /// CIFAR-10 (binary version), from `<data_dir>/cifar10/cifar-10-batches-bin/`.
    Cifar10,
    /// PNG/JPEG images, one subfolder per class (class names sorted), or all directly in `path`
    /// for a single unlabelled class.
    Folder {
        /// The folder; relative paths are taken from the current directory.
        path: String,
    },
}

impl Config for DatasetSource {}

/// The command-line spelling: the JSON names, and `folder:PATH` for an image folder.
impl std::str::FromStr for DatasetSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("folder:") {
            if path.is_empty() {
                return Err("folder: needs a path, as in folder:my/images".into());
            }
            return Ok(Self::Folder {
                path: path.to_string(),
            });
        }
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!(
                "unknown dataset `{s}`: expected mnist-sample, mnist, fashion-mnist, cifar10 or folder:PATH"
            )
        })
    }
}

impl DatasetSource {
    /// The name `cargo xtask fetch-data --dataset` knows it by, and its folder under the data
    /// directory; `None` for the bundled sample and image folders.
    pub fn fetch_name(&self) -> Option<&'static str> {
        match self {
            Self::Mnist => Some("mnist"),
            Self::FashionMnist => Some("fashion-mnist"),
            Self::Cifar10 => Some("cifar10"),
            Self::MnistSample | Self::Folder { .. } => None,
        }
    }

    /// Whether images are mirrored by default: on for natural images (CIFAR-10, folders), off
    /// for digits, where a mirrored 2 is no longer a 2.
    pub fn default_random_flip(&self) -> bool {
        matches!(self, Self::Cifar10 | Self::Folder { .. })
    }
}

/// Which part of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The training images (MNIST: 60,000; CIFAR-10: 50,000).
    Train,
    /// The held-out test images (10,000 for both).
    Test,
}

impl Config for Split {}

/// The data directory: `explicit` (a `--data-dir` argument or the config's `data_dir`), else
/// `$DIFFUSION_DATA`, else `data/` relative to the current directory.
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    resolve_data_dir_with(
        explicit,
        std::env::var_os(DATA_DIR_ENV).as_deref().map(Path::new),
    )
}

/// [`resolve_data_dir`] with the environment value passed in (testable without touching the
/// process environment).
pub fn resolve_data_dir_with(explicit: Option<&Path>, env: Option<&Path>) -> PathBuf {
    explicit
        .or(env.filter(|p| !p.as_os_str().is_empty()))
        .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Path::to_path_buf)
}

/// The bundled assets directory: `$DIFFUSION_ASSETS`, else the workspace's `assets/` as seen at
/// compile time.
pub fn assets_dir() -> PathBuf {
    match std::env::var_os(ASSETS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
    }
}

/// The directory of the bundled MNIST sample.
pub fn mnist_sample_dir() -> PathBuf {
    assets_dir().join("mnist-sample")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_line_form() {
        assert_eq!("mnist-sample".parse(), Ok(DatasetSource::MnistSample));
        assert_eq!("fashion-mnist".parse(), Ok(DatasetSource::FashionMnist));
        assert_eq!("cifar10".parse(), Ok(DatasetSource::Cifar10));
        assert_eq!(
            "folder:my/pics".parse(),
            Ok(DatasetSource::Folder {
                path: "my/pics".into()
            })
        );
        assert!("folder:".parse::<DatasetSource>().is_err());
        let err = "imagenet".parse::<DatasetSource>().unwrap_err();
        assert!(err.contains("mnist-sample"), "{err}");
    }

    #[test]
    fn serde_names_match_the_docs() {
        let names: Vec<String> = [
            DatasetSource::MnistSample,
            DatasetSource::Mnist,
            DatasetSource::FashionMnist,
            DatasetSource::Cifar10,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"mnist-sample\"",
                "\"mnist\"",
                "\"fashion-mnist\"",
                "\"cifar10\""
            ]
        );
        let folder: DatasetSource = serde_json::from_str(r#"{"folder":{"path":"x/y"}}"#).unwrap();
        assert_eq!(folder, DatasetSource::Folder { path: "x/y".into() });
        assert!(serde_json::from_str::<DatasetSource>("\"imagenet\"").is_err());
        assert_eq!(serde_json::to_string(&Split::Test).unwrap(), "\"test\"");
    }

    #[test]
    fn data_dir_precedence_is_arg_then_env_then_default() {
        let arg = Path::new("/a");
        let env = Path::new("/e");
        assert_eq!(
            resolve_data_dir_with(Some(arg), Some(env)),
            PathBuf::from("/a")
        );
        assert_eq!(resolve_data_dir_with(None, Some(env)), PathBuf::from("/e"));
        assert_eq!(
            resolve_data_dir_with(None, Some(Path::new(""))),
            PathBuf::from("data")
        );
        assert_eq!(resolve_data_dir_with(None, None), PathBuf::from("data"));
    }

    #[test]
    fn bundled_sample_is_found_from_the_source_tree() {
        let dir = mnist_sample_dir();
        assert!(
            dir.join("train-images-idx3-ubyte.gz").is_file(),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn flips_default_on_for_natural_images_only() {
        assert!(DatasetSource::Cifar10.default_random_flip());
        assert!(!DatasetSource::Mnist.default_random_flip());
        assert!(!DatasetSource::MnistSample.default_random_flip());
        assert_eq!(
            DatasetSource::FashionMnist.fetch_name(),
            Some("fashion-mnist")
        );
    }
}
