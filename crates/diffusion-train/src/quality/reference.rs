//! The real images an evaluation compares against: the *reference* (what samples are scored
//! against) and the *floor* set (real images of the other split, scored against the same
//! reference at the same n: the best a perfect model could get), and their features, cached.
//!
//! Datasets with a test split (MNIST, Fashion-MNIST, CIFAR-10) use it as the reference and
//! their train split for the floor (`Split::Train` as reference swaps them). Those without one
//! (the bundled `mnist-sample`, image folders) are cut in two halves: the second half is the
//! "test" part, the first the "train" part.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use diffusion_eval::{FeatureExtractor, Features};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{CACHE_VERSION, QualityProgress, dataset_name, eval_cache_dir};
use crate::TrainError;
use crate::data::{DataConfig, DatasetSource, ImageBatcher, ImageDataset, ImageShape, Split};

/// Some images of a loaded dataset, in order.
#[derive(Debug, Clone)]
pub struct RealImages {
    dataset: Arc<ImageDataset>,
    range: Range<usize>,
    /// Where they come from, for reports: e.g. `the test split` or `the second half of the
    /// train split (the dataset has no test split)`; the count is the report's.
    pub description: String,
    /// Their part in cache keys: `test`, `train`, `half-2`, ...
    part: String,
}

impl RealImages {
    /// How many images.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The first `n` of them.
    pub fn head(&self, n: usize) -> Self {
        let end = self.range.start + n.min(self.len());
        Self {
            range: self.range.start..end,
            ..self.clone()
        }
    }

    /// The shape of one image.
    pub fn shape(&self) -> ImageShape {
        self.dataset.shape()
    }

    /// Their labels.
    pub fn labels(&self) -> &[usize] {
        &self.dataset.labels()[self.range.clone()]
    }

    /// The images in batches of `batch_size` (`[n, c, h, w]` in `[-1, 1]`) with their labels.
    pub fn for_each_batch<B: Backend>(
        &self,
        batch_size: usize,
        device: &B::Device,
        mut f: impl FnMut(Tensor<B, 4>, &[usize]) -> Result<(), TrainError>,
    ) -> Result<(), TrainError> {
        let batcher = ImageBatcher::new(self.shape(), false, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(0); // unused: no flips
        let indices: Vec<usize> = self.range.clone().collect();
        for chunk in indices.chunks(batch_size.max(1)) {
            let items = chunk
                .iter()
                .filter_map(|&i| self.dataset.get(i))
                .collect::<Vec<_>>();
            let labels: Vec<usize> = items.iter().map(|item| item.label).collect();
            let batch = batcher.batch_with_rng::<B, _>(items, &mut rng, device);
            f(batch.images, &labels)?;
        }
        Ok(())
    }
}

/// The reference images and the floor's real images of one evaluation.
#[derive(Debug, Clone)]
pub struct RealSplits {
    /// What samples are scored against.
    pub reference: RealImages,
    /// Real images from elsewhere in the dataset, scored against the same reference.
    pub floor: RealImages,
    /// The dataset's name, as the CLI spells it.
    pub dataset: String,
}

/// Loads the reference and floor images of `data` (its dataset at its geometry: resize and
/// padding apply, random flips do not). `reference` names the split samples are compared with;
/// at most `reference_limit` of its images are used (the first ones).
pub fn real_splits(
    data: &DataConfig,
    reference: Split,
    reference_limit: usize,
) -> Result<RealSplits, TrainError> {
    let load = |split: Split| -> Result<Arc<ImageDataset>, TrainError> {
        let config = data.clone().with_split(split).with_random_flip(Some(false));
        Ok(Arc::new(config.load_dataset()?))
    };
    let other = match reference {
        Split::Test => Split::Train,
        Split::Train => Split::Test,
    };
    let name = |split: Split| match split {
        Split::Test => "test",
        Split::Train => "train",
    };
    let has_test_split = matches!(
        data.dataset,
        DatasetSource::Mnist | DatasetSource::FashionMnist | DatasetSource::Cifar10
    );
    let (reference, floor) = if has_test_split {
        let whole = |split: Split, dataset: Arc<ImageDataset>| RealImages {
            range: 0..dataset.len(),
            dataset,
            description: format!("the {} split", name(split)),
            part: name(split).to_string(),
        };
        (
            whole(reference, load(reference)?),
            whole(other, load(other)?),
        )
    } else {
        let dataset = load(Split::Train)?;
        let half = dataset.len() / 2;
        if half == 0 {
            return Err(TrainError::invalid(
                "dataset",
                "needs at least 2 images to be cut into a reference half and a floor half",
            ));
        }
        let part = |split: Split| {
            let (range, which) = match split {
                Split::Test => (half..dataset.len(), "second"),
                Split::Train => (0..half, "first"),
            };
            RealImages {
                description: format!(
                    "the {which} half of the train split (the dataset has no test split)"
                ),
                part: format!("{which}-half"),
                range,
                dataset: dataset.clone(),
            }
        };
        (part(reference), part(other))
    };
    Ok(RealSplits {
        reference: reference.head(reference_limit),
        floor,
        dataset: dataset_name(&data.dataset),
    })
}

/// The features of `images` under `extractor`, read from the cache under `data`'s
/// [`eval_cache_dir`] when there, else computed (with progress) and cached: written under a
/// temporary name and renamed, so that an interrupted run never leaves a half-written file. A
/// cache file written by another version or damaged is an error naming it.
pub fn real_features<B: Backend>(
    data: &DataConfig,
    images: &RealImages,
    extractor: &dyn FeatureExtractor<B>,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn QualityProgress,
) -> Result<Features, TrainError> {
    let shape = images.shape();
    let key = format!(
        "diffusion-eval features v{CACHE_VERSION}; dataset {}; {} images of {}; {}x{}x{}; {}",
        dataset_name(&data.dataset),
        images.len(),
        images.part,
        shape.channels,
        shape.height,
        shape.width,
        extractor.id()
    );
    let path = eval_cache_dir(data).map(|dir| {
        dir.join(format!(
            "{}-{}-{}x{}x{}-{}.features",
            images.part,
            images.len(),
            shape.channels,
            shape.height,
            shape.width,
            file_safe(&extractor.id())
        ))
    });
    if let Some(path) = path.as_deref()
        && path.is_file()
    {
        return Ok(Features::load(path, &key)?);
    }
    progress.begin(
        &format!(
            "features of {} real images ({})",
            images.len(),
            extractor.id()
        ),
        images.len(),
    );
    let mut features = Features::new(extractor.dim());
    images.for_each_batch::<B>(batch_size, device, |batch, _| {
        features.push_tensor(extractor.features(batch))?;
        progress.advance(features.len());
        Ok(())
    })?;
    progress.finish();
    if let Some(path) = path {
        write_cache(&features, &path, &key)?;
        progress.note(&format!("cached reference features in {}", path.display()));
    }
    Ok(features)
}

fn write_cache(features: &Features, path: &Path, key: &str) -> Result<(), TrainError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    Ok(features.save(path, key)?)
}

/// `id` with every character outside `[A-Za-z0-9._-]` replaced by `_`.
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            file_safe("classifier-v1/mnist 28"),
            "classifier-v1_mnist_28"
        );
    }
}
