//! The 28x28 classifier: deterministic training, accuracy, and its cache under bad files.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Int, Tensor, TensorData};
use diffusion_eval::classifier::cache::{INFO_FILE, RECORD_FILE};
use diffusion_eval::classifier::{
    Classifier, ClassifierConfig, ClassifierInfo, accuracy, class_accuracy, load_classifier,
    save_classifier, train_classifier,
};
use diffusion_eval::{EvalError, FeatureExtractor};

type B = burn::backend::Flex;
type AB = burn::backend::Autodiff<B>;

/// Every float parameter of `module`, in visiting order.
fn flat<M: Module<B>>(module: &M) -> Vec<f32> {
    struct Values(Vec<f32>);
    impl ModuleVisitor<B> for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.extend(param.val().into_data().iter::<f32>());
        }
    }
    let mut values = Values(Vec::new());
    module.visit(&mut values);
    values.0
}

/// `per_class` images of each of `classes` classes: class `k` is a bright band at rows
/// `4 + 8k ± 2` over a faint deterministic texture, in `[-1, 1]`.
fn bands(classes: usize, per_class: usize) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let count = classes * per_class;
    let mut values = Vec::with_capacity(count * 28 * 28);
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let class = i % classes;
        for y in 0..28usize {
            for x in 0..28usize {
                let texture = ((x * 7 + y * 13 + i * 31) % 40) as f32 / 100.0;
                let band = if y.abs_diff(4 + 8 * class) <= 2 {
                    1.4
                } else {
                    0.0
                };
                values.push(-1.0 + texture + band);
            }
        }
        labels.push(class as i64);
    }
    let device = Default::default();
    (
        Tensor::from_data(TensorData::new(values, [count, 1, 28, 28]), &device),
        Tensor::from_data(TensorData::new(labels, [count]), &device),
    )
}

fn small_config() -> ClassifierConfig {
    ClassifierConfig::new(3)
        .with_epochs(2)
        .with_batch_size(16)
        .with_seed(5)
}

fn train(config: &ClassifierConfig, per_class: usize) -> Classifier<B> {
    let (images, labels) = bands(config.num_classes, per_class);
    train_classifier::<AB>(config, images, labels, &mut |_, _| {}).unwrap()
}

#[test]
fn training_is_bit_identical_for_a_seed_and_differs_across_seeds() {
    let config = small_config();
    let first = flat(&train(&config, 16));
    assert_eq!(first, flat(&train(&config, 16)));
    assert_ne!(first, flat(&train(&config.clone().with_seed(6), 16)));
    assert_ne!(first, flat(&config.init::<B>(&Default::default())));
}

#[test]
fn training_reports_every_step_and_learns_separable_classes() {
    let config = small_config().with_epochs(6);
    let (images, labels) = bands(3, 16);
    let mut steps = Vec::new();
    let model = train_classifier::<AB>(
        &config,
        images.clone(),
        labels.clone(),
        &mut |done, total| steps.push((done, total)),
    )
    .unwrap();
    assert_eq!(steps, (1..=18).map(|d| (d, 18)).collect::<Vec<_>>());
    let counts = class_accuracy(&model, images.clone(), labels.clone(), 7).unwrap();
    assert_eq!(counts.total, [16, 16, 16]);
    let overall = accuracy(&model, images, labels, 100).unwrap();
    assert_eq!(overall, counts.overall());
    assert!(overall > 0.9, "accuracy {overall}");
}

#[test]
fn mismatched_or_out_of_range_inputs_are_errors() {
    let config = small_config();
    let device = Default::default();
    let (images, labels) = bands(3, 2);
    let cases = [
        (
            images.clone(),
            labels.clone().narrow(0, 0, 5),
            "6 images and 5 labels",
        ),
        (
            images.clone(),
            labels.clone().add_scalar(1),
            "label 3 is out of range 0..3",
        ),
        (
            Tensor::zeros([6, 3, 28, 28], &device),
            labels.clone(),
            "3 channels",
        ),
    ];
    for (images, labels, expected) in cases {
        let err = train_classifier::<AB>(&config, images, labels, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    let err =
        train_classifier::<AB>(&config.with_lr(-1.0), images, labels, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("`lr`"), "{err}");
}

fn info(config: &ClassifierConfig) -> ClassifierInfo {
    ClassifierInfo {
        dataset: "bands".into(),
        config: config.clone(),
        train_images: 48,
        test_images: 12,
        test_accuracy: 0.75,
        train_seconds: 1.5,
    }
}

/// A saved untrained network and its directory.
fn saved() -> (tempfile::TempDir, Classifier<B>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let model = config.init::<B>(&Default::default());
    let tag = save_classifier(dir.path(), &model, &info(&config)).unwrap();
    (dir, model, tag)
}

fn load(dir: &Path) -> Result<Option<(Classifier<B>, ClassifierInfo)>, EvalError> {
    load_classifier::<B>(dir, &Default::default())
}

/// The error of loading `dir`, which must be a one-line [`EvalError::Cache`] naming the JSON.
fn cache_error(dir: &Path) -> String {
    let err = load(dir).expect_err("the cache should be refused");
    let message = err.to_string();
    assert!(matches!(err, EvalError::Cache { .. }), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains(&dir.join(INFO_FILE).display().to_string()),
        "{message}"
    );
    assert!(message.contains("delete it"), "{message}");
    message
}

#[test]
fn a_cache_round_trip_is_exact_and_leaves_no_temporary_file() {
    let (dir, model, tag) = saved();
    let (loaded, loaded_info) = load(dir.path()).unwrap().unwrap();
    assert_eq!(flat(&loaded), flat(&model));
    assert_eq!(loaded_info, info(&small_config()));
    assert!(
        tag.starts_with("bands-") && tag.len() == "bands-".len() + 8,
        "{tag}"
    );
    assert_eq!(loaded.id(), format!("classifier-v2-{tag}"));
    assert_eq!(model.clone().with_weights_tag(tag).id(), loaded.id());
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [INFO_FILE, RECORD_FILE]);

    // Saving again replaces the cache.
    let other = small_config().with_seed(9).init::<B>(&Default::default());
    save_classifier(dir.path(), &other, &info(&small_config())).unwrap();
    assert_eq!(flat(&load(dir.path()).unwrap().unwrap().0), flat(&other));
}

#[test]
fn no_sidecar_means_no_cache_even_with_a_record() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load(&dir.path().join("absent")).unwrap().is_none());
    let (dir, _, _) = saved();
    std::fs::remove_file(dir.path().join(INFO_FILE)).unwrap();
    assert!(load(dir.path()).unwrap().is_none());
}

#[test]
fn a_cache_of_another_version_is_refused() {
    let (dir, _, _) = saved();
    let path = dir.path().join(INFO_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("classifier-v2", "classifier-v1")).unwrap();
    let message = cache_error(dir.path());
    assert!(message.contains("classifier-v1"), "{message}");
}

#[test]
fn a_half_written_sidecar_is_refused() {
    let (dir, _, _) = saved();
    let path = dir.path().join(INFO_FILE);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    assert!(cache_error(dir.path()).contains("not JSON"));
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    cache_error(dir.path());
}

#[test]
fn a_truncated_or_altered_record_is_refused() {
    let (dir, _, _) = saved();
    let path = dir.path().join(RECORD_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    assert!(cache_error(dir.path()).contains("truncated"));
    let mut altered = bytes.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x55;
    std::fs::write(&path, altered).unwrap();
    assert!(cache_error(dir.path()).contains("changed after it was written"));
}

#[test]
fn a_missing_record_with_its_sidecar_is_refused() {
    let (dir, _, _) = saved();
    std::fs::remove_file(dir.path().join(RECORD_FILE)).unwrap();
    assert!(cache_error(dir.path()).contains("missing"));
}

#[test]
fn other_image_sizes_are_resized_to_28() {
    let model = small_config().init::<B>(&Default::default());
    let (images, _) = bands(3, 1);
    let large = burn::tensor::module::interpolate(
        images.clone(),
        [56, 56],
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Bilinear),
    );
    assert_eq!(model.features(large.clone()).dims(), [3, 128]);
    assert_eq!(model.predict(large).dims(), [3]);
    assert_eq!(model.logits(images).dims(), [3, 3]);
}
