//! Datasets, preprocessing and the batcher.
//!
//! Reads in data-flow order: [`source`] (which dataset, where), [`idx`], [`cifar`] and
//! [`folder`] (the file formats), [`dataset`] (u8 images in memory), [`transform`] (resize,
//! pad, scale, flip), [`batcher`] (tensors in [-1, 1]) and [`order`] (seeded, resumable order).
//! [`DataConfig::load_dataset`] ties them together:
//!
//! ```no_run
//! use diffusion_train::data::{DataConfig, DataOrder};
//! # fn main() -> Result<(), diffusion_train::data::DataError> {
//! let config = DataConfig::new().with_pad_to(Some(32));
//! let dataset = config.load_dataset()?; // bundled MNIST sample, 1x32x32
//! let batcher = config.batcher(&dataset, 0);
//! let mut order = DataOrder::new(42, burn::data::dataset::Dataset::len(&dataset), 64)?;
//! # let device = Default::default();
//! let batch = order.batch_for_step::<burn::backend::Flex, _>(0, &dataset, &batcher, &device);
//! # Ok(()) }
//! ```

pub mod batcher;
pub mod cifar;
pub mod config;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod idx;
pub mod order;
pub mod source;
pub mod transform;

pub use batcher::{ImageBatch, ImageBatcher};
pub use config::DataConfig;
pub use dataset::{ImageDataset, ImageItem};
pub use error::DataError;
pub use order::{DataOrder, batch_rng, epoch_permutation};
pub use source::{DatasetSource, Split, assets_dir, mnist_sample_dir, resolve_data_dir};
pub use transform::{ImageShape, Transform};
