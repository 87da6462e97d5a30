//! [`Evaluator`]: the feature networks and the reference features of one dataset, prepared
//! once, then any number of image sets scored against them.

use std::path::PathBuf;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use diffusion_eval::inception::{FidInception, NUM_CLASSES, weights_path};
use diffusion_eval::metrics::{
    KidConfig, frechet_distance, inception_score, kid, precision_recall,
};
use diffusion_eval::stats::FeatureStats;
use diffusion_eval::{EvalError, FeatureExtractor, Features};
use serde::{Deserialize, Serialize};

use super::QualityProgress;
use super::classifier::{ClassifierProgress, TrainedClassifier, load_or_train_classifier};
use super::reference::{RealImages, RealSplits, real_features, real_splits};
use crate::TrainError;
use crate::data::{DataConfig, DatasetSource, ImageShape, Split};

/// Splits of the Inception Score (torch-fidelity's and the original code's 10).
const IS_SPLITS: usize = 10;

/// Which feature networks to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricSet {
    /// Every one that applies and is installed: the classifier for 28x28 grayscale datasets,
    /// Inception when its weights have been fetched. An error only when none is left.
    #[default]
    Auto,
    /// The classifier only (FD-classifier, conditional accuracy); an error where it does not
    /// apply.
    Classifier,
    /// Inception only (FID, KID, precision/recall, Inception Score); an error without its
    /// weights.
    Inception,
    /// Both; an error when either is missing.
    All,
}

/// What to evaluate against.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSpec {
    /// The reference dataset at the geometry of the images to score (resize, padding).
    pub data: DataConfig,
    /// The split samples are compared with (the floor uses the other one).
    pub reference: Split,
    /// Which feature networks.
    pub metrics: MetricSet,
    /// At most this many reference images (the first ones).
    pub reference_limit: usize,
    /// Images per forward pass of the feature networks.
    pub batch_size: usize,
    /// The shape of the images that will be scored, when known: checked against the
    /// reference's before any work (training the classifier, extracting features).
    pub image_shape: Option<ImageShape>,
}

/// The features of one set of images under each feature network in use.
#[derive(Debug, Clone, Default)]
pub struct SampleFeatures {
    /// Images seen.
    pub n: usize,
    /// The classifier's penultimate features.
    pub classifier: Option<Features>,
    /// The classifier's predicted class of each image.
    pub predictions: Vec<usize>,
    /// The class each image was asked for (conditional samples) or is (real images).
    pub labels: Option<Vec<usize>>,
    /// Inception's pool3 features.
    pub inception: Option<Features>,
}

/// The metrics of one image set; `None` where a metric does not apply or its network is
/// missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Images scored.
    pub n: usize,
    /// Fréchet distance in the classifier's feature space.
    pub fd_classifier: Option<f64>,
    /// Fraction of images the classifier assigns to the class they were asked for.
    pub accuracy: Option<f64>,
    /// Fréchet Inception Distance (pytorch-fid's network and formula).
    pub fid: Option<f64>,
    /// Kernel Inception Distance: mean over subsets.
    pub kid: Option<f64>,
    /// Its standard deviation over subsets.
    pub kid_std: Option<f64>,
    /// Precision (Kynkäänniemi et al. 2019, k = 3, Inception features).
    pub precision: Option<f64>,
    /// Recall (same).
    pub recall: Option<f64>,
    /// Inception Score: mean over splits of `exp(E KL(p(y|x) || p(y)))`, Inception's unbiased
    /// logits as torch-fidelity computes it.
    pub inception_score: Option<f64>,
    /// Its standard deviation over the splits.
    pub inception_score_std: Option<f64>,
}

/// A feature network in use, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractorInfo {
    /// Its identifier (architecture and weights).
    pub id: String,
    /// Its weights file.
    pub path: PathBuf,
    /// The classifier's accuracy on held-out real images.
    pub test_accuracy: Option<f64>,
}

/// Everything one evaluation found, as `eval --json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The dataset compared with.
    pub dataset: String,
    /// Which of its images are the reference.
    pub reference: String,
    /// How many reference images.
    pub reference_n: usize,
    /// The scores of the images evaluated (`n` among them).
    #[serde(flatten)]
    pub scores: Scores,
    /// The same metrics for real images of the other split at the same n: the floor.
    pub floor: Option<Scores>,
    /// Which real images gave the floor.
    pub floor_images: Option<String>,
    /// The classifier used, if any.
    pub classifier: Option<ExtractorInfo>,
    /// The Inception network used, if any.
    pub inception: Option<ExtractorInfo>,
    /// Metrics left out and why, and similar remarks.
    pub notes: Vec<String>,
}

/// The prepared state of an evaluation: feature networks and reference features.
pub struct Evaluator<B: Backend> {
    spec: EvalSpec,
    splits: RealSplits,
    classifier: Option<TrainedClassifier<B>>,
    inception: Option<(FidInception<B>, PathBuf)>,
    reference: SampleFeatures,
    classifier_stats: Option<FeatureStats>,
    inception_stats: Option<FeatureStats>,
    device: B::Device,
    notes: Vec<String>,
}

impl<B: Backend> std::fmt::Debug for Evaluator<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("spec", &self.spec)
            .field("reference_n", &self.reference.n)
            .finish_non_exhaustive()
    }
}

/// Inception's logits without `fc`'s bias, from pool3 features: a linear map of them, so cached
/// features serve the Inception Score too. A block of rows at a time.
fn unbiased_logits<B: Backend>(
    net: &FidInception<B>,
    pool3: &Features,
    device: &B::Device,
) -> Result<Features, TrainError> {
    const ROWS: usize = 1000;
    let dim = pool3.dim();
    let mut logits = Features::new(NUM_CLASSES);
    for block in pool3.as_slice().chunks(ROWS * dim) {
        let rows = Tensor::<B, 2>::from_data(
            TensorData::new(block.to_vec(), [block.len() / dim, dim]),
            device,
        );
        logits.push_tensor(net.logits_unbiased(rows))?;
    }
    Ok(logits)
}

/// Whether the classifier applies to `data`: MNIST-like 28x28 grayscale digits and clothes.
fn classifier_applies(data: &DataConfig) -> bool {
    matches!(
        data.dataset,
        DatasetSource::MnistSample | DatasetSource::Mnist | DatasetSource::FashionMnist
    )
}

impl<B: Backend> Evaluator<B> {
    /// Loads the reference images, trains or loads the classifier (`AB`: the backend it trains
    /// on), loads Inception when its weights are there, and extracts (or reads from the cache)
    /// the reference features.
    pub fn prepare<AB: AutodiffBackend<InnerBackend = B, Device = B::Device>>(
        spec: EvalSpec,
        device: &B::Device,
        progress: &mut dyn QualityProgress,
    ) -> Result<Self, TrainError> {
        if spec.batch_size == 0 || spec.reference_limit < 2 {
            return Err(TrainError::invalid(
                "eval",
                "the batch size must be at least 1 and the reference at least 2 images",
            ));
        }
        let splits = real_splits(&spec.data, spec.reference, spec.reference_limit)?;
        if let Some(shape) = spec.image_shape {
            check_shape(shape, splits.reference.shape(), &splits.dataset)?;
        }
        let mut notes = Vec::new();
        let want_classifier = matches!(spec.metrics, MetricSet::Classifier | MetricSet::All)
            || (spec.metrics == MetricSet::Auto && classifier_applies(&spec.data));
        let classifier = if want_classifier {
            let mut training = false;
            let mut on_progress = |p: ClassifierProgress| match p {
                ClassifierProgress::Loading => {}
                ClassifierProgress::Training { done, total } => {
                    if !training {
                        training = true;
                        progress.begin("training the classifier (once per dataset)", total);
                    }
                    progress.advance(done);
                }
                ClassifierProgress::Testing => {
                    if training {
                        training = false;
                        progress.finish();
                    }
                }
            };
            let trained = load_or_train_classifier::<AB>(&spec.data, device, &mut on_progress)?;
            if trained.trained_now {
                progress.note(&format!(
                    "classifier trained on {} images, test accuracy {:.2}% on {}; cached in {}",
                    trained.train_images,
                    100.0 * trained.test_accuracy,
                    trained.test_images,
                    trained.path.display()
                ));
            }
            Some(trained)
        } else {
            if spec.metrics == MetricSet::Auto {
                notes.push(format!(
                    "FD-classifier and accuracy skipped: the classifier applies to 28x28 \
                     grayscale datasets (mnist-sample, mnist, fashion-mnist), not {}",
                    splits.dataset
                ));
            }
            None
        };
        let want_inception = spec.metrics != MetricSet::Classifier;
        let weights = weights_path(&spec.data.resolved_data_dir());
        let inception = if !want_inception {
            None
        } else if weights.is_file() || spec.metrics != MetricSet::Auto {
            Some((FidInception::load(&weights, device)?, weights.clone()))
        } else {
            notes.push(format!(
                "FID, KID, precision/recall and IS skipped: no Inception weights at {} (fetch them \
                 with `cargo xtask fetch-data --dataset inception-fid`)",
                weights.display()
            ));
            None
        };
        if classifier.is_none() && inception.is_none() {
            return Err(TrainError::invalid(
                "eval",
                format!(
                    "no metric applies to {}: the classifier is for 28x28 grayscale datasets, \
                     and Inception needs its weights at {} (`cargo xtask fetch-data --dataset \
                     inception-fid`)",
                    splits.dataset,
                    weights.display()
                ),
            ));
        }
        let mut evaluator = Self {
            spec,
            splits,
            classifier,
            inception,
            reference: SampleFeatures::default(),
            classifier_stats: None,
            inception_stats: None,
            device: device.clone(),
            notes,
        };
        evaluator.reference =
            evaluator.real_set(&evaluator.splits.reference.clone(), device, progress)?;
        evaluator.classifier_stats = evaluator
            .reference
            .classifier
            .as_ref()
            .map(FeatureStats::from_features)
            .transpose()?;
        evaluator.inception_stats = evaluator
            .reference
            .inception
            .as_ref()
            .map(FeatureStats::from_features)
            .transpose()?;
        Ok(evaluator)
    }

    /// The shape images must have to be scored (the reference's).
    pub fn image_shape(&self) -> ImageShape {
        self.splits.reference.shape()
    }

    /// The reference and floor images.
    pub fn splits(&self) -> &RealSplits {
        &self.splits
    }

    /// An empty feature set to [`observe`](Self::observe) images into.
    pub fn collector(&self) -> SampleFeatures {
        SampleFeatures {
            classifier: self
                .classifier
                .as_ref()
                .map(|c| Features::new(c.model.dim())),
            inception: self
                .inception
                .as_ref()
                .map(|(net, _)| Features::new(net.dim())),
            ..SampleFeatures::default()
        }
    }

    /// Adds a batch of images (`[n, c, h, w]`, clamped to `[-1, 1]`, the reference's shape) and the
    /// classes they were asked for (conditional samples) to `into`.
    pub fn observe(
        &self,
        into: &mut SampleFeatures,
        images: Tensor<B, 4>,
        labels: Option<&[usize]>,
    ) -> Result<(), TrainError> {
        let [n, channels, height, width] = images.dims();
        let shape = ImageShape {
            channels,
            height,
            width,
        };
        check_shape(shape, self.image_shape(), &self.splits.dataset)?;
        // Scored as a PNG of them would hold them: samplers that never clip (DPM-Solver++,
        // Euler, Heun, UniPC) can return pixels far outside [-1, 1], which a feature network
        // has never seen and which no saved image shows.
        let images = images.clamp(-1.0, 1.0);
        if let (Some(classifier), Some(features)) = (&self.classifier, &mut into.classifier) {
            features.push_tensor(classifier.model.features(images.clone()))?;
            let predicted = classifier.model.predict(images.clone()).into_data();
            into.predictions.extend(
                predicted
                    .convert::<i64>()
                    .iter::<i64>()
                    .map(|p| p.max(0) as usize),
            );
        }
        if let (Some((net, _)), Some(features)) = (&self.inception, &mut into.inception) {
            features.push_tensor(net.features(images))?;
        }
        if let Some(labels) = labels {
            into.labels
                .get_or_insert_with(Vec::new)
                .extend_from_slice(labels);
        }
        into.n += n;
        Ok(())
    }

    /// The metrics of `samples` against the reference.
    pub fn score(&self, samples: &SampleFeatures) -> Result<Scores, TrainError> {
        if samples.n < 2 {
            return Err(EvalError::TooFewSamples {
                metric: "the Fréchet distance",
                need: 2,
                got: samples.n,
            }
            .into());
        }
        let fd = |features: Option<&Features>, reference: Option<&FeatureStats>| match (
            features, reference,
        ) {
            (Some(f), Some(r)) => frechet_distance(&FeatureStats::from_features(f)?, r).map(Some),
            _ => Ok::<_, EvalError>(None),
        };
        let accuracy = match (&samples.labels, self.classifier.is_some()) {
            (Some(labels), true) if labels.len() == samples.predictions.len() => Some(
                labels
                    .iter()
                    .zip(&samples.predictions)
                    .filter(|(l, p)| l == p)
                    .count() as f64
                    / labels.len().max(1) as f64,
            ),
            _ => None,
        };
        let mut scores = Scores {
            n: samples.n,
            fd_classifier: fd(samples.classifier.as_ref(), self.classifier_stats.as_ref())?,
            accuracy,
            fid: fd(samples.inception.as_ref(), self.inception_stats.as_ref())?,
            kid: None,
            kid_std: None,
            precision: None,
            recall: None,
            inception_score: None,
            inception_score_std: None,
        };
        if let (Some((net, _)), Some(pool3)) = (&self.inception, &samples.inception) {
            let (mean, std) = inception_score(
                &unbiased_logits(net, pool3, &self.device)?,
                IS_SPLITS.min(pool3.len()),
            )?;
            scores.inception_score = Some(mean);
            scores.inception_score_std = Some(std);
        }
        if let (Some(fake), Some(real)) = (&samples.inception, &self.reference.inception) {
            let subset_size = 1000.min(fake.len()).min(real.len());
            let k = kid(
                real,
                fake,
                &KidConfig {
                    subset_size,
                    ..KidConfig::default()
                },
            )?;
            scores.kid = Some(k.mean);
            scores.kid_std = Some(k.std);
            let pr = precision_recall(real, fake, 3)?;
            scores.precision = Some(pr.precision);
            scores.recall = Some(pr.recall);
        }
        Ok(scores)
    }

    /// The floor: the first `n` real images of the other split (all of them if it has fewer)
    /// scored against the reference.
    pub fn floor(
        &self,
        n: usize,
        device: &B::Device,
        progress: &mut dyn QualityProgress,
    ) -> Result<Scores, TrainError> {
        let images = self.splits.floor.head(n);
        let features = self.real_set(&images, device, progress)?;
        self.score(&features)
    }

    /// A report of `scores` (and the floor's) with this evaluator's reference and networks.
    pub fn report(&self, scores: Scores, floor: Option<Scores>) -> QualityReport {
        let mut notes = self.notes.clone();
        if scores.n < 10_000 {
            notes.push(format!(
                "FID-type metrics are biased by n: compare only numbers measured at the same n \
                 (here {}; the usual protocol is 10,000 or 50,000)",
                scores.n
            ));
        }
        if let Some(floor) = &floor
            && floor.n != scores.n
        {
            notes.push(format!(
                "the floor uses {} real images, fewer than the {} scored: only that many are \
                 outside the reference",
                floor.n, scores.n
            ));
        }
        QualityReport {
            dataset: self.splits.dataset.clone(),
            reference: self.splits.reference.description.clone(),
            reference_n: self.reference.n,
            scores,
            floor_images: floor
                .as_ref()
                .map(|_| self.splits.floor.description.clone()),
            floor,
            classifier: self.classifier.as_ref().map(|c| ExtractorInfo {
                id: c.model.id(),
                path: c.path.clone(),
                test_accuracy: Some(c.test_accuracy),
            }),
            inception: self.inception.as_ref().map(|(net, path)| ExtractorInfo {
                id: net.id(),
                path: path.clone(),
                test_accuracy: None,
            }),
            notes,
        }
    }

    /// Features of real images under every network in use (cached), with their labels and
    /// the classifier's predictions.
    fn real_set(
        &self,
        images: &RealImages,
        device: &B::Device,
        progress: &mut dyn QualityProgress,
    ) -> Result<SampleFeatures, TrainError> {
        let data = &self.spec.data;
        let batch = self.spec.batch_size;
        let mut set = SampleFeatures {
            n: images.len(),
            labels: Some(images.labels().to_vec()),
            ..SampleFeatures::default()
        };
        if let Some(classifier) = &self.classifier {
            set.classifier = Some(real_features(
                data,
                images,
                &classifier.model,
                batch,
                device,
                progress,
            )?);
            images.for_each_batch::<B>(batch, device, |batch, _| {
                let predicted = classifier.model.predict(batch).into_data();
                set.predictions.extend(
                    predicted
                        .convert::<i64>()
                        .iter::<i64>()
                        .map(|p| p.max(0) as usize),
                );
                Ok(())
            })?;
        }
        if let Some((net, _)) = &self.inception {
            set.inception = Some(real_features(data, images, net, batch, device, progress)?);
        }
        Ok(set)
    }
}

/// Images of `shape` can be compared with reference images of `want`.
fn check_shape(shape: ImageShape, want: ImageShape, dataset: &str) -> Result<(), TrainError> {
    if shape == want {
        return Ok(());
    }
    Err(EvalError::Shape(format!(
        "the images are {}x{} with {} channel(s), but the {dataset} reference images are {}x{} \
         with {}: scores only compare images of one size and channel count",
        shape.width, shape.height, shape.channels, want.width, want.height, want.channels
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use diffusion_eval::inception::FEATURE_DIM;

    use super::*;
    use crate::tests::TestBackend;

    /// The block-wise logits equal `logits_unbiased` of all rows at once (1,001 rows: one block
    /// and a partial one), and give the Inception Score of those logits.
    #[test]
    fn inception_score_comes_from_block_wise_unbiased_logits() {
        let device = Default::default();
        // A small closed-form weight pattern, so that the logits differ from class to class.
        let net =
            FidInception::<TestBackend>::from_fn(|_, _, i| ((i % 7) as f32 - 3.0) * 0.01, &device);
        let n = 1001;
        let data: Vec<f32> = (0..n * FEATURE_DIM)
            .map(|k| ((k * 37 % 101) as f32) / 101.0)
            .collect();
        let pool3 = Features::from_rows(FEATURE_DIM, data.clone()).unwrap();
        let logits = unbiased_logits(&net, &pool3, &device).unwrap();
        let whole = net
            .logits_unbiased(Tensor::<TestBackend, 2>::from_data(
                TensorData::new(data, [n, FEATURE_DIM]),
                &device,
            ))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!((logits.len(), logits.dim()), (n, NUM_CLASSES));
        let worst = logits
            .as_slice()
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "block-wise logits differ by {worst}");
        let (score, _) = inception_score(&logits, IS_SPLITS).unwrap();
        assert!(score > 1.0 && score.is_finite(), "IS {score}");
    }
}
