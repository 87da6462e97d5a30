//! The classifier of a 28x28 grayscale dataset: trained once on its train split, cached in
//! `<data dir>/eval-cache/<dataset key>/`, and loaded from there afterwards.
//!
//! Which datasets: those with labels (at least 2 classes) and 1x28x28 images as stored, i.e.
//! `mnist`, `fashion-mnist`, `mnist-sample`, and image folders of 28x28 images loaded with
//! `grayscale: true` that have one subfolder per class. The run's `image_size`, `pad_to` and
//! `random_flip` are ignored: the classifier always trains on the native images, and
//! [`diffusion_eval::classifier::Classifier`] resizes samples of other sizes to 28x28.
//!
//! Test accuracy is measured on the dataset's test split (`t10k` for MNIST and
//! Fashion-MNIST). `mnist-sample` and folders have none: every 10th image of each class, in
//! dataset order, is held out (997 of the sample's 10,000) and the classifier trains on the
//! rest. Not simply the last 1,000: the sample interleaves the classes round-robin until the
//! rarest one runs out, so its last 1,000 images hold no 5 at all.
//!
//! A folder's cache key is `folder-<folder name>-<hash of its absolute path>`; after changing
//! the images of a folder, delete its cache directory.

use std::path::PathBuf;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use diffusion_eval::classifier::{
    CLASSIFIER_SIDE, Classifier, ClassifierConfig, ClassifierInfo, accuracy, load_classifier,
    save_classifier, train_classifier,
};

use crate::TrainError;
use crate::data::transform::scale_to_unit;
use crate::data::{DataConfig, DatasetSource, ImageDataset, Split};

/// Seed of every cached classifier (part of the config saved with it).
pub const CLASSIFIER_SEED: u64 = 0;
/// Datasets without a test split hold out one image of every this many of each class.
pub const HOLDOUT_EVERY: usize = 10;
/// Images per forward pass when measuring the test accuracy.
const TEST_BATCH: usize = 500;

/// What [`load_or_train_classifier`] is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierProgress {
    /// Reading the cache, or the dataset when there is no cache.
    Loading,
    /// `done` of `total` optimizer steps.
    Training {
        /// Steps done.
        done: usize,
        /// Steps in all.
        total: usize,
    },
    /// Measuring the accuracy on the test images.
    Testing,
}

/// A classifier ready for `eval`, and where it came from.
#[derive(Debug)]
pub struct TrainedClassifier<B: Backend> {
    /// The network; its `FeatureExtractor::id` names the dataset and the weights.
    pub model: Classifier<B>,
    /// Fraction of the test images it classifies correctly.
    pub test_accuracy: f64,
    /// How many test images that was measured on.
    pub test_images: usize,
    /// How many images it was trained on.
    pub train_images: usize,
    /// The cache directory (holding `classifier.mpk` and `classifier.json`).
    pub path: PathBuf,
    /// Whether it was trained by this call (`false`: loaded from the cache).
    pub trained_now: bool,
}

/// The training settings of the cached classifiers: 3 epochs of Adam at batch 128.
pub fn classifier_config(num_classes: usize) -> ClassifierConfig {
    ClassifierConfig::new(num_classes).with_seed(CLASSIFIER_SEED)
}

/// The name of the dataset's cache directory: `mnist-sample`, `mnist`, `fashion-mnist`,
/// `cifar10`, or `folder-<name>-<8 hex digits of the CRC-32 of its absolute path>`.
pub fn classifier_dataset_key(data: &DataConfig) -> String {
    match &data.dataset {
        DatasetSource::MnistSample => "mnist-sample".into(),
        DatasetSource::Folder { path } => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
            let name: String = absolute
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let hash = crc32fast::hash(absolute.to_string_lossy().as_bytes());
            format!("folder-{name}-{hash:08x}")
        }
        other => other.fetch_name().unwrap_or("dataset").into(),
    }
}

/// `<resolved data dir>/eval-cache/<dataset key>/`, for the bundled sample too, so that nothing
/// is ever written into `assets/`.
pub fn classifier_cache_dir(data: &DataConfig) -> PathBuf {
    data.resolved_data_dir()
        .join("eval-cache")
        .join(classifier_dataset_key(data))
}

/// Loads the dataset's cached classifier, or trains one (on `device`, with autodiff backend
/// `AB`), measures its test accuracy and caches it.
///
/// Errors when the dataset is not labelled 28x28 grayscale ([`TrainError::ClassifierDataset`],
/// before reading any image for CIFAR-10), when it cannot be read, and when the cache is of
/// another version or damaged (a [`diffusion_eval::EvalError::Cache`] naming the file to
/// delete); a damaged cache is never silently replaced.
pub fn load_or_train_classifier<AB: AutodiffBackend>(
    data: &DataConfig,
    device: &AB::Device,
    progress: &mut dyn FnMut(ClassifierProgress),
) -> Result<TrainedClassifier<AB::InnerBackend>, TrainError> {
    let key = classifier_dataset_key(data);
    if data.dataset == DatasetSource::Cifar10 {
        return Err(not_classifiable(&key, "its images are 3x32x32 (RGB)"));
    }
    let dir = classifier_cache_dir(data);
    progress(ClassifierProgress::Loading);
    if let Some((model, info)) = load_classifier::<AB::InnerBackend>(&dir, device)? {
        if info.dataset != key {
            return Err(diffusion_eval::EvalError::Cache {
                path: dir.join(diffusion_eval::classifier::cache::INFO_FILE),
                message: format!("it was trained on `{}`, not `{key}`", info.dataset),
            }
            .into());
        }
        // Other settings (epochs, seed, ...) give another classifier, whose scores would not
        // compare with those of the one this version trains.
        let expected = classifier_config(info.config.num_classes);
        if info.config != expected {
            return Err(diffusion_eval::EvalError::Cache {
                path: dir.join(diffusion_eval::classifier::cache::INFO_FILE),
                message: format!(
                    "it was trained with other settings ({}), not this version's ({})",
                    serde_json::to_string(&info.config).unwrap_or_default(),
                    serde_json::to_string(&expected).unwrap_or_default()
                ),
            }
            .into());
        }
        return Ok(TrainedClassifier {
            model,
            test_accuracy: info.test_accuracy,
            test_images: info.test_images,
            train_images: info.train_images,
            path: dir,
            trained_now: false,
        });
    }

    let (train, test) = load_splits(data, &key)?;
    let config = classifier_config(train.num_classes());
    let (train_indices, test_indices) = match &test {
        Some(test) => ((0..train.len()).collect(), (0..test.len()).collect()),
        None => holdout_split(train.labels(), HOLDOUT_EVERY),
    };
    let test = test.as_ref().unwrap_or(&train);

    let started = Instant::now();
    let (images, labels) = to_tensors::<AB::InnerBackend>(&train, &train_indices, device);
    let model = train_classifier::<AB>(&config, images, labels, &mut |done, total| {
        progress(ClassifierProgress::Training { done, total })
    })?;
    let train_seconds = started.elapsed().as_secs_f64();

    progress(ClassifierProgress::Testing);
    let (images, labels) = to_tensors::<AB::InnerBackend>(test, &test_indices, device);
    let test_accuracy = accuracy(&model, images, labels, TEST_BATCH)?;

    let info = ClassifierInfo {
        dataset: key,
        config,
        train_images: train_indices.len(),
        test_images: test_indices.len(),
        test_accuracy,
        train_seconds,
    };
    let tag = save_classifier(&dir, &model, &info)?;
    Ok(TrainedClassifier {
        model: model.with_weights_tag(tag),
        test_accuracy,
        test_images: info.test_images,
        train_images: info.train_images,
        path: dir,
        trained_now: true,
    })
}

/// The train split, and the test split where the dataset has one, both at their native size;
/// checks that they are labelled 1x28x28.
fn load_splits(
    data: &DataConfig,
    key: &str,
) -> Result<(ImageDataset, Option<ImageDataset>), TrainError> {
    let native = data
        .clone()
        .with_image_size(None)
        .with_pad_to(None)
        .with_random_flip(Some(false));
    let train = native.clone().with_split(Split::Train).load_dataset()?;
    let (c, h, w) = (train.channels(), train.height(), train.width());
    if (c, h, w) != (1, CLASSIFIER_SIDE, CLASSIFIER_SIDE) {
        let hint = if c == 3 && matches!(data.dataset, DatasetSource::Folder { .. }) {
            " (a gray folder needs `grayscale: true`)"
        } else {
            ""
        };
        return Err(not_classifiable(
            key,
            &format!("its images are {c}x{h}x{w}{hint}"),
        ));
    }
    if train.num_classes() < 2 {
        return Err(not_classifiable(
            key,
            "it has no labels (one class; a folder needs one subfolder per class)",
        ));
    }
    let test = match data.dataset {
        DatasetSource::Mnist | DatasetSource::FashionMnist => {
            Some(native.with_split(Split::Test).load_dataset()?)
        }
        _ => None,
    };
    Ok((train, test))
}

fn not_classifiable(dataset: &str, problem: &str) -> TrainError {
    TrainError::ClassifierDataset {
        dataset: dataset.to_string(),
        problem: problem.to_string(),
    }
}

/// Splits `0..labels.len()` into (train, test): the `every`-th, `2 * every`-th, ... image of
/// each class, in dataset order, is a test image.
pub fn holdout_split(labels: &[usize], every: usize) -> (Vec<usize>, Vec<usize>) {
    let mut seen = vec![0usize; labels.iter().max().map_or(0, |&l| l + 1)];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (index, &label) in labels.iter().enumerate() {
        seen[label] += 1;
        if seen[label].is_multiple_of(every.max(1)) {
            test.push(index);
        } else {
            train.push(index);
        }
    }
    (train, test)
}

/// The images at `indices` as one `[n, 1, 28, 28]` tensor in `[-1, 1]`, and their labels.
fn to_tensors<B: Backend>(
    dataset: &ImageDataset,
    indices: &[usize],
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let shape = dataset.shape();
    let mut values = Vec::with_capacity(indices.len() * shape.len());
    let mut labels = Vec::with_capacity(indices.len());
    for item in indices.iter().filter_map(|&i| dataset.get(i)) {
        values.extend(item.pixels.iter().copied().map(scale_to_unit));
        labels.push(item.label as i64);
    }
    let count = labels.len();
    let images = TensorData::new(values, [count, shape.channels, shape.height, shape.width]);
    (
        Tensor::from_data(images, device), // [n, 1, 28, 28]
        Tensor::from_data(TensorData::new(labels, [count]), device), // [n]
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::tests::{TestAutodiff, TestBackend};
    use diffusion_eval::{EvalError, FeatureExtractor};

    /// `classes` subfolders of `per_class` `side x side` PNGs (gray unless `rgb`): class `k`
    /// has a bright horizontal band at row `4 + 8k`, over pixel noise.
    fn write_folder(root: &Path, classes: usize, per_class: usize, side: u32, rgb: bool) {
        for class in 0..classes {
            let dir = root.join(format!("class{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let value = |x: u32, y: u32| {
                    let band = (y as usize).abs_diff(4 + 8 * class) < 3;
                    let noise = (x * 7 + y * 13 + i as u32 * 31) % 40;
                    if band { 200 + noise as u8 } else { noise as u8 }
                };
                let path = dir.join(format!("{i:03}.png"));
                if rgb {
                    image::RgbImage::from_fn(side, side, |x, y| image::Rgb([value(x, y); 3]))
                        .save(path)
                        .unwrap();
                } else {
                    image::GrayImage::from_fn(side, side, |x, y| image::Luma([value(x, y)]))
                        .save(path)
                        .unwrap();
                }
            }
        }
    }

    fn folder_config(folder: &Path, data_dir: &Path, grayscale: bool) -> DataConfig {
        DataConfig::new()
            .with_dataset(DatasetSource::Folder {
                path: folder.to_string_lossy().into_owned(),
            })
            .with_grayscale(Some(grayscale))
            .with_data_dir(Some(data_dir.to_string_lossy().into_owned()))
    }

    fn load_or_train(
        data: &DataConfig,
        events: &mut Vec<ClassifierProgress>,
    ) -> Result<TrainedClassifier<TestBackend>, TrainError> {
        let device = Default::default();
        load_or_train_classifier::<TestAutodiff>(data, &device, &mut |p| events.push(p))
    }

    #[test]
    fn the_holdout_of_the_sample_keeps_every_class() {
        let sample = DataConfig::new().load_dataset().unwrap();
        let (train, test) = holdout_split(sample.labels(), HOLDOUT_EVERY);
        assert_eq!((train.len(), test.len()), (9003, 997));
        let mut per_class = [0usize; 10];
        test.iter()
            .for_each(|&i| per_class[sample.labels()[i]] += 1);
        // floor(n / 10) of the class sizes in assets/mnist-sample/README.md.
        assert_eq!(per_class, [100, 112, 99, 103, 98, 86, 101, 107, 94, 97]);
        assert!(train.iter().all(|i| test.binary_search(i).is_err()));
    }

    #[test]
    fn caches_live_under_the_data_dir() {
        let data = DataConfig::new().with_data_dir(Some("/d".into()));
        assert_eq!(
            classifier_cache_dir(&data),
            Path::new("/d/eval-cache/mnist-sample")
        );
        let fashion = data.clone().with_dataset(DatasetSource::FashionMnist);
        assert_eq!(
            classifier_cache_dir(&fashion),
            Path::new("/d/eval-cache/fashion-mnist")
        );
        let folder = |path: &str| {
            classifier_dataset_key(
                &data
                    .clone()
                    .with_dataset(DatasetSource::Folder { path: path.into() }),
            )
        };
        assert!(folder("/x/my digits").starts_with("folder-my-digits-"));
        assert_ne!(folder("/x/my digits"), folder("/y/my digits"));
    }

    #[test]
    fn datasets_that_are_not_labelled_28x28_gray_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let cifar = DataConfig::new()
            .with_dataset(DatasetSource::Cifar10)
            .with_data_dir(Some(root.path().to_string_lossy().into_owned()));
        let cases = [
            (cifar, "3x32x32"),
            (
                folder_config(&root.path().join("rgb"), root.path(), false),
                "`grayscale: true`",
            ),
            (
                folder_config(&root.path().join("small"), root.path(), true),
                "1x8x8",
            ),
            (
                folder_config(&root.path().join("one"), root.path(), true),
                "no labels",
            ),
        ];
        write_folder(&root.path().join("rgb"), 2, 2, 28, true);
        write_folder(&root.path().join("small"), 2, 2, 8, false);
        write_folder(&root.path().join("one"), 1, 2, 28, false);
        for (data, expected) in cases {
            let err = load_or_train(&data, &mut Vec::new()).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, TrainError::ClassifierDataset { .. }),
                "{message}"
            );
            assert!(message.contains(expected), "{expected}: {message}");
            assert!(message.contains("28x28 grayscale"), "{message}");
        }
        assert!(!root.path().join("eval-cache").exists());
    }

    #[test]
    fn a_folder_classifier_trains_once_then_loads_and_refuses_a_damaged_cache() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("bands");
        write_folder(&folder, 2, 20, 28, false);
        let data = folder_config(&folder, root.path(), true);

        let mut events = Vec::new();
        let trained = load_or_train(&data, &mut events).unwrap();
        assert!(trained.trained_now);
        assert_eq!((trained.train_images, trained.test_images), (36, 4));
        assert!((0.0..=1.0).contains(&trained.test_accuracy));
        assert_eq!(trained.path, classifier_cache_dir(&data));
        let total = classifier_config(2).epochs; // one step per epoch
        let mut expected = vec![ClassifierProgress::Loading];
        expected.extend((1..=total).map(|done| ClassifierProgress::Training { done, total }));
        expected.push(ClassifierProgress::Testing);
        assert_eq!(events, expected);

        let loaded = load_or_train(&data, &mut Vec::new()).unwrap();
        assert!(!loaded.trained_now);
        assert_eq!(loaded.test_accuracy, trained.test_accuracy);
        assert_eq!(loaded.model.id(), trained.model.id());
        assert!(loaded.model.id().starts_with("classifier-v2-folder-bands-"));
        let images = Tensor::<TestBackend, 4>::ones([2, 1, 28, 28], &Default::default());
        assert_eq!(
            loaded.model.features(images.clone()).into_data(),
            trained.model.features(images).into_data()
        );

        // A cache trained with other settings (here: more epochs) is refused, then restored.
        let info = trained
            .path
            .join(diffusion_eval::classifier::cache::INFO_FILE);
        let sidecar = std::fs::read_to_string(&info).unwrap();
        let epochs = format!("\"epochs\": {total}");
        assert!(sidecar.contains(&epochs), "{sidecar}");
        std::fs::write(&info, sidecar.replace(&epochs, "\"epochs\": 99")).unwrap();
        let message = load_or_train(&data, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("other settings") && message.contains("delete"),
            "{message}"
        );
        std::fs::write(&info, &sidecar).unwrap();

        let record = trained
            .path
            .join(diffusion_eval::classifier::cache::RECORD_FILE);
        let bytes = std::fs::read(&record).unwrap();
        std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_or_train(&data, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, TrainError::Eval(EvalError::Cache { .. })),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("classifier.json") && message.contains("delete"),
            "{message}"
        );
        // Refused, not silently retrained over.
        assert_eq!(std::fs::read(&record).unwrap().len(), bytes.len() / 2);
    }

    /// Full training on Fashion-MNIST (when installed) and on the bundled sample; run in
    /// release: `cargo test --release -p diffusion-train --lib quality -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "trains on 60,000 images: a minute or more in release"]
    fn full_trainings_report_time_and_accuracy() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = Some(root.path().to_string_lossy().into_owned());
        let mut datasets = vec![(DatasetSource::MnistSample, 0.95)];
        let debian = Path::new("/usr/share/datasets/fashion-mnist");
        if debian.is_dir() {
            std::os::unix::fs::symlink(debian, root.path().join("fashion-mnist")).unwrap();
            datasets.push((DatasetSource::FashionMnist, 0.85));
        }
        for (source, floor) in datasets {
            let data = DataConfig::new()
                .with_dataset(source)
                .with_data_dir(data_dir.clone());
            let started = Instant::now();
            let trained = load_or_train(&data, &mut Vec::new()).unwrap();
            println!(
                "{}: trained on {} images in {:.1} s, test accuracy {:.4} on {} images",
                classifier_dataset_key(&data),
                trained.train_images,
                started.elapsed().as_secs_f64(),
                trained.test_accuracy,
                trained.test_images
            );
            assert!(trained.test_accuracy > floor, "{}", trained.test_accuracy);
        }
    }
}
