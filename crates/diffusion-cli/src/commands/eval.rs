//! `diffusion-cli eval`: score a run's samples, or a folder of PNGs, against a dataset.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use diffusion_core::SamplerConfig;
use diffusion_train::data::{DataConfig, DatasetSource, ImageShape, Split};
use diffusion_train::quality::{
    EvalSpec, Evaluator, MetricSet, QualityProgress, QualityReport, SampleSpec, Scores,
    class_labels, sample_in_batches,
};

use crate::args::{DataFlags, RunFlags, SamplerFlags, config_name};
use crate::backend::{BackendTask, DeviceChoice, dispatch, ensure_available};
use crate::progress::PhaseProgress;

/// Measure sample quality: FD-classifier and conditional accuracy (28x28 grayscale datasets),
/// FID, KID, precision/recall and Inception Score (Inception, once fetched), next to the floor
/// that real images reach at the same n.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory to sample from (EMA weights unless --no-ema); or give --images.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "images",
        conflicts_with = "images"
    )]
    pub run: Option<PathBuf>,
    /// With --run: load the checkpoint of this step (default: the newest readable one).
    #[arg(long, value_name = "STEP", requires = "run")]
    pub checkpoint: Option<usize>,
    /// With --run: use the raw weights instead of their exponential moving average.
    #[arg(long, requires = "run")]
    pub no_ema: bool,
    /// Score the PNG files of this folder instead of sampling (names like
    /// sample_00012_class_3_seed_0.png, as `sample --out-dir` writes them, or
    /// sample_00012_class_3.png give conditional accuracy).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub sampler: SamplerFlags,
    #[command(flatten)]
    pub data: DataFlags,
    /// The split samples are compared with: test (the default) or train; the floor uses the
    /// other one. mnist-sample and folders have no test split: their second half is "test".
    #[arg(long, default_value = "test", value_parser = config_name::<Split>, value_name = "SPLIT")]
    pub reference: Split,
    /// Images to sample and score; FID-type metrics are biased by n, so compare only numbers
    /// measured at the same n. With --images: at most this many files (the first ones).
    #[arg(short = 'n', long = "num", default_value_t = 10_000)]
    pub num: usize,
    /// Feature networks: auto (every one that applies and is installed), classifier,
    /// inception, or all (an error when one is missing).
    #[arg(long, default_value = "auto", value_parser = config_name::<MetricSet>, value_name = "SET")]
    pub metrics: MetricSet,
    /// Leave out the floor (real images of the other split scored the same way).
    #[arg(long)]
    pub no_floor: bool,
    /// Classifier-free guidance scale for conditional models (1: none).
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
    /// Seed of the starting noise (the same images as `sample --seed` at the same batch size).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per forward pass of the sampler and of the feature networks.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Also write the report as JSON: n, dataset, fd_classifier, accuracy, fid, kid, ...
    /// (null where a metric does not apply or its network is missing), and the floor.
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Device: cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

struct EvalTask {
    args: EvalArgs,
}

impl BackendTask for EvalTask {
    type Output = ();

    fn run<AB: AutodiffBackend>(self, device: AB::Device) -> Result<()> {
        eval::<AB>(&self.args, &device)
    }
}

/// Where the scored images came from, for the report.
fn describe_source(
    args: &EvalArgs,
    step: Option<usize>,
    sampler: Option<(&SamplerConfig, usize)>,
) -> serde_json::Value {
    match (&args.run, &args.images) {
        (Some(run), _) => serde_json::json!({
            "run": run.display().to_string(),
            "step": step,
            "weights": if args.no_ema { "raw" } else { "ema" },
            "sampler": sampler.map(|(config, _)| config.name()),
            "steps": sampler.map(|(_, steps)| steps),
            "seed": args.seed,
            "guidance": args.guidance,
        }),
        (None, Some(dir)) => serde_json::json!({ "images": dir.display().to_string() }),
        (None, None) => serde_json::Value::Null,
    }
}

fn eval<AB: AutodiffBackend>(args: &EvalArgs, device: &AB::Device) -> Result<()> {
    type Inner<AB> = <AB as AutodiffBackend>::InnerBackend;
    if args.num < 2 || args.batch_size == 0 {
        bail!("-n must be at least 2 and --batch-size at least 1");
    }
    let mut progress = PhaseProgress::new();
    let started = std::time::Instant::now();
    let (report, source) = if let Some(run) = &args.run {
        let flags = RunFlags {
            run: run.clone(),
            checkpoint: args.checkpoint,
            no_ema: args.no_ema,
        };
        let loaded = flags.load::<Inner<AB>>(device)?;
        // The sampler's flags are checked before the reference is prepared, which takes long.
        let sampler = args.sampler.config(SamplerConfig::default())?;
        let steps = SamplerFlags::init::<Inner<AB>>(
            &sampler,
            &loaded.schedule,
            loaded.config.prediction_type,
        )?
        .timesteps()
        .len();
        let data = args.data.apply(loaded.config.data.clone());
        let shape = ImageShape {
            channels: loaded.config.model.in_channels,
            height: loaded.config.model.image_size,
            width: loaded.config.model.image_size,
        };
        let evaluator = prepare::<AB>(args, data, shape, device, &mut progress)?;
        let spec = SampleSpec {
            sampler: sampler.clone(),
            num: args.num,
            batch_size: args.batch_size,
            seed: args.seed,
            guidance: args.guidance,
        };
        let labels = class_labels(loaded.config.model.num_classes, args.num);
        let mut features = evaluator.collector();
        progress.begin(
            &format!("sampling {} images ({})", args.num, sampler.name()),
            args.num,
        );
        sample_in_batches(
            &loaded.model,
            &loaded.config,
            &loaded.schedule,
            &spec,
            labels.as_deref(),
            device,
            &mut |images, labels| evaluator.observe(&mut features, images, labels),
            &mut |done| progress.advance(done),
        )?;
        progress.finish();
        let report = finish(args, &evaluator, &features, device, &mut progress)?;
        (
            report,
            describe_source(args, Some(loaded.step), Some((&sampler, steps))),
        )
    } else {
        let dir = args
            .images
            .as_deref()
            .context("give --run DIR or --images DIR")?;
        let Some(dataset) = &args.data.dataset else {
            bail!(
                "--images needs --dataset NAME: the dataset to compare them with (mnist-sample, \
                 mnist, fashion-mnist, cifar10 or folder:PATH)"
            );
        };
        let folder = PngFolder::open(dir, args.num)?;
        let data = args
            .data
            .apply(DataConfig::new().with_dataset(dataset.clone()));
        let data = match_geometry(data, folder.shape)?;
        let evaluator = prepare::<AB>(args, data, folder.shape, device, &mut progress)?;
        let mut features = evaluator.collector();
        progress.begin(
            &format!("features of {} images", folder.files.len()),
            folder.files.len(),
        );
        for (chunk, labels) in folder.batches(args.batch_size) {
            let images = folder.load::<Inner<AB>>(chunk, device)?;
            evaluator.observe(&mut features, images, labels)?;
            progress.advance(features.n);
        }
        progress.finish();
        let report = finish(args, &evaluator, &features, device, &mut progress)?;
        (report, describe_source(args, None, None))
    };
    print_report(&report, started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let mut value = serde_json::to_value(&report)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("source".into(), source);
        }
        write_atomically(path, &(serde_json::to_string_pretty(&value)? + "\n"))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The reference at the size of the images scored: datasets keep their size unless the images
/// are of another one, which is an error (scores across sizes mean nothing).
fn match_geometry(data: DataConfig, shape: ImageShape) -> Result<DataConfig> {
    if shape.height != shape.width {
        bail!(
            "the images are {}x{} pixels: only square images can be compared with a dataset",
            shape.width,
            shape.height
        );
    }
    let data = match data.dataset {
        DatasetSource::Folder { .. } => data.with_grayscale(Some(shape.channels == 1)),
        _ => data,
    };
    Ok(data)
}

fn prepare<AB: AutodiffBackend>(
    args: &EvalArgs,
    data: DataConfig,
    shape: ImageShape,
    device: &AB::Device,
    progress: &mut PhaseProgress,
) -> Result<Evaluator<AB::InnerBackend>> {
    let spec = EvalSpec {
        data,
        reference: args.reference,
        metrics: args.metrics,
        reference_limit: args.num.max(10_000),
        batch_size: args.batch_size,
        image_shape: Some(shape),
    };
    Ok(Evaluator::prepare::<AB>(spec, device, progress)?)
}

fn finish<B: Backend>(
    args: &EvalArgs,
    evaluator: &Evaluator<B>,
    features: &diffusion_train::quality::SampleFeatures,
    device: &B::Device,
    progress: &mut dyn QualityProgress,
) -> Result<QualityReport> {
    let scores = evaluator.score(features)?;
    let floor = if args.no_floor {
        None
    } else {
        Some(evaluator.floor(scores.n, device, progress)?)
    };
    Ok(evaluator.report(scores, floor))
}

/// The table on standard output.
fn print_report(report: &QualityReport, seconds: f64) {
    let mut out = std::io::stdout().lock();
    let floor = report.floor.as_ref();
    let _ = writeln!(
        out,
        "{} images scored against {}: {} images of {}",
        report.scores.n, report.dataset, report.reference_n, report.reference
    );
    if let Some(classifier) = &report.classifier {
        let _ = writeln!(
            out,
            "classifier {} (test accuracy {:.2}%): {}",
            classifier.id,
            100.0 * classifier.test_accuracy.unwrap_or(f64::NAN),
            classifier.path.display()
        );
    }
    if let Some(inception) = &report.inception {
        let _ = writeln!(
            out,
            "inception {}: {}",
            inception.id,
            inception.path.display()
        );
    }
    let _ = writeln!(
        out,
        "{:<16} {:>14} {:>22}",
        "metric",
        format!("n = {}", report.scores.n),
        floor.map_or_else(
            || "floor: not measured".into(),
            |f| format!("floor (real, n = {})", f.n)
        )
    );
    let rows: [(&str, fn(&Scores) -> Option<f64>); 9] = [
        ("FD-classifier", |s| s.fd_classifier),
        ("accuracy", |s| s.accuracy),
        ("FID", |s| s.fid),
        ("KID", |s| s.kid),
        ("KID std", |s| s.kid_std),
        ("precision", |s| s.precision),
        ("recall", |s| s.recall),
        ("IS", |s| s.inception_score),
        ("IS std", |s| s.inception_score_std),
    ];
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    for (name, get) in rows {
        let _ = writeln!(
            out,
            "{:<16} {:>14} {:>22}",
            name,
            cell(get(&report.scores)),
            cell(floor.and_then(get))
        );
    }
    if let (Some(images), Some(floor)) = (&report.floor_images, floor) {
        let _ = writeln!(out, "floor: {} real images of {images}", floor.n);
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(out, "took {seconds:.1}s");
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    crate::images::ensure_parent(path)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A folder of PNG files, all of one size and channel count, checked before any work.
struct PngFolder {
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    shape: ImageShape,
}

impl PngFolder {
    /// Lists `dir` (the first `limit` PNGs by name) and reads every header: another kind of
    /// file, a subfolder, an undecodable PNG or one of another size or channel count is an
    /// error naming it.
    fn open(dir: &Path, limit: usize) -> Result<Self> {
        if !dir.is_dir() {
            bail!("--images {}: no such folder", dir.display());
        }
        let mut files = Vec::new();
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            let is_png = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if path.is_dir() || !is_png {
                bail!(
                    "--images takes a folder of PNG files only, and {} is not one",
                    path.display()
                );
            }
            files.push(path);
        }
        files.sort();
        files.truncate(limit);
        if files.len() < 2 {
            bail!(
                "--images {}: {} PNG files, at least 2 are needed",
                dir.display(),
                files.len()
            );
        }
        let mut shape = None;
        for file in &files {
            let (w, h, channels) = png_header(file)?;
            let this = ImageShape {
                channels,
                height: h,
                width: w,
            };
            match shape {
                None => shape = Some(this),
                Some(first) if first != this => bail!(
                    "{} is {}x{} with {} channel(s), but {} is {}x{} with {}: all images must share \
                     one size and channel count",
                    file.display(),
                    w,
                    h,
                    channels,
                    files[0].display(),
                    first.width,
                    first.height,
                    first.channels
                ),
                Some(_) => {}
            }
        }
        let labels: Option<Vec<usize>> = files.iter().map(|f| class_of(f)).collect();
        Ok(Self {
            shape: shape.context("no images")?,
            files,
            labels,
        })
    }

    /// File indices in batches, with their labels when every name carries one.
    fn batches(&self, size: usize) -> Vec<(std::ops::Range<usize>, Option<&[usize]>)> {
        (0..self.files.len())
            .step_by(size.max(1))
            .map(|start| {
                let range = start..(start + size).min(self.files.len());
                let labels = self.labels.as_ref().map(|l| &l[range.clone()]);
                (range, labels)
            })
            .collect()
    }

    /// Decodes the files of `range` into `[n, c, h, w]` in `[-1, 1]`.
    fn load<B: Backend>(
        &self,
        range: std::ops::Range<usize>,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>> {
        let ImageShape {
            channels,
            height,
            width,
        } = self.shape;
        let mut values = Vec::with_capacity(range.len() * self.shape.len());
        for file in &self.files[range.clone()] {
            let image = image::open(file)
                .with_context(|| format!("{} is not a readable PNG", file.display()))?;
            let (pixels, _) = diffusion_train::data::folder::image_to_chw(&image, channels == 1);
            values.extend(pixels.into_iter().map(|p| f32::from(p) / 127.5 - 1.0));
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [range.len(), channels, height, width]),
            device,
        ))
    }
}

/// Width, height and channel count (1 for gray, 3 for colour; alpha is dropped) of a PNG.
fn png_header(path: &Path) -> Result<(usize, usize, usize)> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if reader.format() != Some(image::ImageFormat::Png) {
        bail!("{} is not a PNG file (by its content)", path.display());
    }
    let decoder = reader
        .into_decoder()
        .with_context(|| format!("{} is not a readable PNG", path.display()))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    let channels = match image::ImageDecoder::color_type(&decoder).channel_count() {
        1 | 2 => 1,
        _ => 3,
    };
    Ok((w as usize, h as usize, channels))
}

/// The class in a name like `sample_00012_class_3_seed_0.png` or `sample_00012_class_3.png`.
fn class_of(path: &Path) -> Option<usize> {
    let stem = path.file_stem()?.to_str()?;
    let class = stem.rsplit_once("_class_")?.1;
    let class = class.split_once("_seed_").map_or(class, |(class, _)| class);
    class.parse().ok()
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device;
    ensure_available(device)?;
    dispatch(device, EvalTask { args })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_comes_from_the_sample_file_name() {
        assert_eq!(class_of(Path::new("d/sample_00012_class_3.png")), Some(3));
        assert_eq!(
            class_of(Path::new("d/sample_00012_class_3_seed_41.png")),
            Some(3)
        );
        assert_eq!(class_of(Path::new("d/sample_00012_seed_41.png")), None);
        assert_eq!(class_of(Path::new("d/sample_00012.png")), None);
        assert_eq!(class_of(Path::new("d/x_class_y.png")), None);
    }
}
