//! `DataConfig`: which dataset, where, and how to preprocess it.

use std::path::{Path, PathBuf};

use burn::config::Config;

use super::cifar::{
    CIFAR_CHANNELS, CIFAR_CLASSES, CIFAR_SIDE, CIFAR_TEST_FILES, CIFAR_TRAIN_FILES,
    read_cifar_batches,
};
use super::folder::{FolderOptions, load_image_folder};
use super::idx::{find_idx_file, read_idx_pair};
use super::source::{DatasetSource, Split, mnist_sample_dir, resolve_data_dir};
use super::transform::{ImageShape, Transform};
use super::{DataError, ImageBatcher, ImageDataset};

/// Largest accepted `image_size` / `pad_to`: far above what a diffusion U-Net trains on, low
/// enough to catch a typo before it allocates gigabytes.
pub const MAX_IMAGE_SIDE: usize = 4096;

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const CIFAR_CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The dataset part of an experiment.
#[derive(Config, Debug, PartialEq)]
pub struct DataConfig {
    /// Which dataset: `"mnist-sample"` (bundled, the default), `"mnist"`, `"fashion-mnist"`,
    /// `"cifar10"` or `{"folder": {"path": "..."}}`.
    #[config(default = "DatasetSource::MnistSample")]
    pub dataset: DatasetSource,
    /// Root of the downloaded datasets; unset: `$DIFFUSION_DATA`, else `data/`.
    pub data_dir: Option<String>,
    /// `"train"` or `"test"`.
    #[config(default = "Split::Train")]
    pub split: Split,
    /// Resize images to `image_size x image_size` (bilinear); 1..=4096. Unset: keep the size.
    pub image_size: Option<usize>,
    /// Pad with black to `pad_to x pad_to` after resizing (e.g. 28 -> 32 for MNIST);
    /// at least the image size, at most 4096.
    pub pad_to: Option<usize>,
    /// Random horizontal flips; unset: on for CIFAR-10 and folders, off for digits.
    pub random_flip: Option<bool>,
    /// Image folders only: load as one gray channel (`true`) or RGB (`false`, the default).
    pub grayscale: Option<bool>,
}

impl DataConfig {
    /// Checks every field's range without touching the file system.
    pub fn validate(&self) -> Result<(), DataError> {
        for (field, value) in [("image_size", self.image_size), ("pad_to", self.pad_to)] {
            if let Some(v) = value
                && !(1..=MAX_IMAGE_SIDE).contains(&v)
            {
                return Err(DataError::config(
                    field,
                    format!("must be in 1..={MAX_IMAGE_SIDE}, got {v}"),
                ));
            }
        }
        if self.grayscale.is_some() && !matches!(self.dataset, DatasetSource::Folder { .. }) {
            return Err(DataError::config(
                "grayscale",
                "applies to folder datasets only (MNIST and Fashion-MNIST are gray, CIFAR-10 is \
                 RGB): remove it",
            ));
        }
        if self.dataset == DatasetSource::MnistSample && self.split == Split::Test {
            return Err(DataError::config(
                "split",
                "must be \"train\" for mnist-sample, which has no test split",
            ));
        }
        if let DatasetSource::Folder { path } = &self.dataset
            && path.is_empty()
        {
            return Err(DataError::config(
                "dataset.folder.path",
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// Whether the batcher should mirror images (explicit setting or the dataset's default).
    pub fn random_flip_enabled(&self) -> bool {
        self.random_flip
            .unwrap_or_else(|| self.dataset.default_random_flip())
    }

    /// The resolved data directory (see [`resolve_data_dir`]).
    pub fn resolved_data_dir(&self) -> PathBuf {
        resolve_data_dir(self.data_dir.as_deref().map(Path::new))
    }

    /// The directory the dataset is read from.
    pub fn dataset_dir(&self) -> PathBuf {
        match &self.dataset {
            DatasetSource::MnistSample => mnist_sample_dir(),
            DatasetSource::Folder { path } => PathBuf::from(path),
            other => {
                let name = other.fetch_name().unwrap_or_default();
                self.resolved_data_dir().join(name)
            }
        }
    }

    /// Validates the config, reads the dataset and attaches the resize/padding.
    pub fn load_dataset(&self) -> Result<ImageDataset, DataError> {
        self.validate()?;
        let dir = self.dataset_dir();
        let transform = Transform {
            resize: self.image_size,
            pad_to: self.pad_to,
        };
        let dataset = match &self.dataset {
            DatasetSource::MnistSample => {
                // `fetch-data` cannot help here, so point at the assets override instead.
                load_idx_dataset(&dir, "mnist-sample", self.split).map_err(|e| match e {
                    DataError::DatasetNotFound { dir, .. } => DataError::FolderNotFound {
                        path: dir,
                        problem: "bundled MNIST sample missing: set DIFFUSION_ASSETS to the \
                                  directory holding mnist-sample/"
                            .into(),
                    },
                    other => other,
                })?
            }
            DatasetSource::Mnist => load_idx_dataset(&dir, "mnist", self.split)?,
            DatasetSource::FashionMnist => {
                let names = FASHION_CLASSES.iter().map(|s| s.to_string()).collect();
                load_idx_dataset(&dir, "fashion-mnist", self.split)?.with_class_names(names)?
            }
            DatasetSource::Cifar10 => load_cifar10(&dir, self.split)?,
            DatasetSource::Folder { .. } => {
                let options = FolderOptions {
                    grayscale: self.grayscale.unwrap_or(false),
                    resize: self.image_size,
                };
                // The folder loader already resized; only padding is left to do lazily.
                return load_image_folder(&dir, options)?.with_transform(Transform {
                    resize: None,
                    ..transform
                });
            }
        };
        dataset.with_transform(transform)
    }

    /// A batcher for `dataset` with this config's flip setting; `seed` seeds the RNG of its
    /// [`burn::data::dataloader::batcher::Batcher`] impl.
    pub fn batcher(&self, dataset: &ImageDataset, seed: u64) -> ImageBatcher {
        ImageBatcher::for_dataset(dataset, self.random_flip_enabled(), seed)
    }
}

/// Loads `<dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
fn load_idx_dataset(dir: &Path, name: &str, split: Split) -> Result<ImageDataset, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let not_found = || DataError::DatasetNotFound {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    };
    let images =
        find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte")).ok_or_else(not_found)?;
    let labels =
        find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte")).ok_or_else(not_found)?;
    let idx = read_idx_pair(&images, &labels, 10)?;
    let shape = ImageShape {
        channels: 1,
        height: idx.rows,
        width: idx.cols,
    };
    ImageDataset::from_raw(idx.pixels, idx.labels, shape, 10)
}

/// Loads CIFAR-10 from `<dir>/cifar-10-batches-bin/` (as unpacked by `fetch-data`) or `<dir>/`.
fn load_cifar10(dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
    let files: &[&str] = match split {
        Split::Train => &CIFAR_TRAIN_FILES,
        Split::Test => &CIFAR_TEST_FILES,
    };
    let unpacked = dir.join("cifar-10-batches-bin");
    let batches = if unpacked.is_dir() {
        unpacked
    } else {
        dir.to_path_buf()
    };
    if !files.iter().all(|f| batches.join(f).is_file()) {
        return Err(DataError::DatasetNotFound {
            name: "cifar10".into(),
            dir: dir.to_path_buf(),
        });
    }
    let records = read_cifar_batches(&batches, files)?;
    let shape = ImageShape {
        channels: CIFAR_CHANNELS,
        height: CIFAR_SIDE,
        width: CIFAR_SIDE,
    };
    let names = CIFAR_CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    ImageDataset::from_raw(records.pixels, records.labels, shape, CIFAR_CLASSES)?
        .with_class_names(names)
}

#[cfg(test)]
mod tests {
    use burn::data::dataset::Dataset;

    use super::*;
    use crate::data::cifar::{CIFAR_IMAGE_BYTES, encode_cifar_batch};
    use crate::data::idx::encode_idx;

    fn cfg(dataset: DatasetSource, data_dir: &Path) -> DataConfig {
        DataConfig::new()
            .with_dataset(dataset)
            .with_data_dir(Some(data_dir.to_string_lossy().into_owned()))
    }

    #[test]
    fn default_is_the_bundled_sample_and_it_loads() {
        let config = DataConfig::new();
        assert_eq!(config.dataset, DatasetSource::MnistSample);
        assert!(!config.random_flip_enabled());
        let ds = config.with_pad_to(Some(32)).load_dataset().unwrap();
        assert_eq!(ds.len(), 10_000);
        assert_eq!(
            (ds.channels(), ds.height(), ds.width(), ds.num_classes()),
            (1, 32, 32, 10)
        );
        // Round-robin order: the first ten labels are 0..9.
        assert_eq!(ds.labels()[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // Padding is black, and the digit itself has bright pixels.
        let item = ds.get(0).unwrap();
        assert!(item.pixels[..64].iter().all(|&v| v == 0));
        assert!(item.pixels.iter().any(|&v| v > 200));
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let config = DataConfig::new()
            .with_dataset(DatasetSource::Folder {
                path: "imgs".into(),
            })
            .with_image_size(Some(64))
            .with_random_flip(Some(false))
            .with_grayscale(Some(true))
            .with_split(Split::Test);
        let json = serde_json::to_string(&config).unwrap();
        let back: DataConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        // burn's Config derive has no serde defaults: `dataset` and `split` must be present,
        // unset options may be left out.
        let minimal: DataConfig =
            serde_json::from_str(r#"{"dataset":"cifar10","split":"train"}"#).unwrap();
        assert_eq!(minimal.image_size, None);
        assert!(minimal.random_flip_enabled());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let cases = [
            (DataConfig::new().with_image_size(Some(0)), "`image_size`"),
            (DataConfig::new().with_pad_to(Some(100_000)), "`pad_to`"),
            (DataConfig::new().with_grayscale(Some(true)), "`grayscale`"),
            (DataConfig::new().with_split(Split::Test), "`split`"),
            (DataConfig::new().with_pad_to(Some(20)), "`pad_to`"),
        ];
        for (config, field) in cases {
            let err = config.load_dataset().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn missing_datasets_say_how_to_fetch_them() {
        let dir = tempfile::tempdir().unwrap();
        for (source, name) in [
            (DatasetSource::Mnist, "mnist"),
            (DatasetSource::FashionMnist, "fashion-mnist"),
            (DatasetSource::Cifar10, "cifar10"),
        ] {
            let err = cfg(source, dir.path()).load_dataset().unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, DataError::DatasetNotFound { .. }), "{msg}");
            assert!(
                msg.contains(&format!("cargo xtask fetch-data --dataset {name}")),
                "{msg}"
            );
            assert!(
                msg.contains(&dir.path().join(name).display().to_string()),
                "{msg}"
            );
        }
    }

    #[test]
    fn idx_test_split_reads_t10k_raw_files() {
        let dir = tempfile::tempdir().unwrap();
        let mnist = dir.path().join("mnist");
        std::fs::create_dir(&mnist).unwrap();
        let pixels: Vec<u8> = (0..3 * 4 * 4).map(|i| i as u8).collect();
        std::fs::write(
            mnist.join("t10k-images-idx3-ubyte"),
            encode_idx(&[3, 4, 4], &pixels),
        )
        .unwrap();
        std::fs::write(
            mnist.join("t10k-labels-idx1-ubyte"),
            encode_idx(&[3], &[5, 6, 7]),
        )
        .unwrap();
        let config = cfg(DatasetSource::Mnist, dir.path()).with_split(Split::Test);
        let ds = config.load_dataset().unwrap();
        assert_eq!(ds.labels(), [5, 6, 7]);
        assert_eq!(ds.get(1).unwrap().pixels, pixels[16..32]);
        // The train split is still missing.
        assert!(
            cfg(DatasetSource::Mnist, dir.path())
                .load_dataset()
                .is_err()
        );
    }

    #[test]
    fn cifar_loads_from_the_unpacked_folder_and_resizes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("cifar10/cifar-10-batches-bin");
        std::fs::create_dir_all(&bin).unwrap();
        for (i, name) in CIFAR_TRAIN_FILES.iter().enumerate() {
            let pixels = vec![i as u8 * 40; 2 * CIFAR_IMAGE_BYTES];
            std::fs::write(bin.join(name), encode_cifar_batch(&pixels, &[i as u8, 9])).unwrap();
        }
        let config = cfg(DatasetSource::Cifar10, dir.path()).with_image_size(Some(64));
        let ds = config.load_dataset().unwrap();
        assert_eq!(ds.len(), 10);
        assert_eq!((ds.channels(), ds.height(), ds.width()), (3, 64, 64));
        assert_eq!(ds.labels(), [0, 9, 1, 9, 2, 9, 3, 9, 4, 9]);
        assert_eq!(ds.class_names()[9], "truck");
        assert!(ds.get(4).unwrap().pixels.iter().all(|&v| v == 80));
        assert!(config.random_flip_enabled());
        // The test split is missing.
        let err = config.with_split(Split::Test).load_dataset().unwrap_err();
        assert!(matches!(err, DataError::DatasetNotFound { .. }), "{err}");
    }
}
