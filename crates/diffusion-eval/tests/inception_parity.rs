//! `FidInception` against pytorch-fid itself, without the official weights: the golden files
//! in `assets/golden/` come from `scripts/golden/inception_fid.py`, which runs pytorch-fid's
//! `InceptionV3` (resize_input, normalize_input, pool3) in float64 with the deterministic
//! weights defined there and rebuilt here by [`deterministic`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use diffusion_eval::inception::{
    EXTRACTOR_ID, FEATURE_DIM, FidInception, INPUT_SIZE, NUM_CLASSES, PthWeights, WeightSource,
};
use diffusion_eval::{EvalError, FeatureExtractor};
use serde_json::Value;

type B = burn::backend::Flex;

/// Features and logits must match pytorch-fid's float64 values to 1e-4, absolute for values
/// below 1 and relative above (features reach ~13). PyTorch's own float32 run stays within
/// ~3e-6 of float64 (recorded in the golden file), so this leaves room for another summation
/// order in Flex's convolutions and nothing for a wrong pool, padding, resize or weight layout,
/// each of which moves features by 1e-2 or more.
const TOL: f64 = 1e-4;

fn golden(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("golden files are committed in assets/golden");
    serde_json::from_str(&text).expect("golden file is valid JSON")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

fn usizes(value: &Value) -> Vec<usize> {
    floats(value).into_iter().map(|v| v as usize).collect()
}

// The deterministic weights, as specified in scripts/golden/inception_fid.py.

fn seed(key: &str) -> u32 {
    key.bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

fn unit(seed: u32, index: usize) -> f64 {
    let mut x = seed ^ (index as u32).wrapping_mul(0x9E37_79B9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^= x >> 16;
    f64::from(x) / 4_294_967_296.0 * 2.0 - 1.0
}

fn deterministic(key: &str, shape: &[usize], index: usize) -> f32 {
    value(key, shape, unit(seed(key), index))
}

fn value(key: &str, shape: &[usize], u: f64) -> f32 {
    let v = if key.ends_with(".conv.weight") {
        let fan_in: usize = shape[1..].iter().product();
        u * (3f64.sqrt() * 2f64.sqrt() / (fan_in as f64).sqrt())
    } else if key.ends_with(".bn.weight") {
        1.0 + 0.2 * u
    } else if key.ends_with(".bn.bias") || key.ends_with(".bn.running_mean") || key == "fc.bias" {
        0.1 * u
    } else if key.ends_with(".bn.running_var") {
        1.0 + 0.5 * u
    } else if key == "fc.weight" {
        u * (3f64.sqrt() / 2048f64.sqrt())
    } else {
        panic!("no deterministic value for {key}")
    };
    v as f32
}

/// `deterministic` for all 23.9M parameters, hashing each key once rather than per element.
fn deterministic_network() -> FidInception<B> {
    let mut cached = (String::new(), 0u32);
    let f = |key: &str, shape: &[usize], index: usize| {
        if cached.0 != key {
            cached = (key.to_string(), seed(key));
        }
        value(key, shape, unit(cached.1, index))
    };
    FidInception::from_fn(f, &Default::default())
}

/// Golden image `i` in the workspace convention: `[1, C, H, W]` in `[-1, 1]`.
fn image(golden: &Value, i: usize) -> Tensor<B, 4> {
    let img = &golden["images"][i];
    let shape: [usize; 3] = usizes(&img["shape"]).try_into().expect("[C, H, W]");
    let values: Vec<f32> = floats(&img["pixels"])
        .into_iter()
        .map(|k| (k / 255.0 * 2.0 - 1.0) as f32)
        .collect();
    let [c, h, w] = shape;
    Tensor::from_data(TensorData::new(values, [1, c, h, w]), &Default::default())
}

/// Largest error of `got` against `want`, scaled as [`TOL`] is: (absolute, relative to max(1, |want|)).
fn compare(got: &[f32], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .fold((0.0, 0.0), |(abs, rel), (&g, &w)| {
            let e = (f64::from(g) - w).abs();
            (abs.max(e), rel.max(e / w.abs().max(1.0)))
        })
}

#[test]
fn pool3_features_and_logits_match_pytorch_fid() {
    let golden = golden("inception_fid_features.json");
    let net = deterministic_network();
    assert!(net.id().starts_with(EXTRACTOR_ID), "{}", net.id());
    let (mut worst_feature, mut worst_logit) = ((0.0f64, 0.0f64), (0.0f64, 0.0f64));
    for batch in golden["batches"].as_array().expect("batches") {
        let indices = usizes(batch);
        let images = Tensor::cat(indices.iter().map(|&i| image(&golden, i)).collect(), 0);
        let pool3 = net.pool3(images).expect("valid images");
        assert_eq!(pool3.dims(), [indices.len(), FEATURE_DIM]);
        let logits = net.logits(pool3.clone());
        assert_eq!(logits.dims(), [indices.len(), NUM_CLASSES]);
        let pool3 = pool3.into_data().to_vec::<f32>().expect("f32");
        let logits = logits.into_data().to_vec::<f32>().expect("f32");
        for (row, &i) in indices.iter().enumerate() {
            let f = compare(
                &pool3[row * FEATURE_DIM..(row + 1) * FEATURE_DIM],
                &floats(&golden["features"][i]),
            );
            let l = compare(
                &logits[row * NUM_CLASSES..(row + 1) * NUM_CLASSES],
                &floats(&golden["logits"][i]),
            );
            eprintln!(
                "image {i}: pool3 max abs {:.2e} scaled {:.2e}; logits max abs {:.2e} scaled {:.2e}",
                f.0, f.1, l.0, l.1
            );
            worst_feature = (worst_feature.0.max(f.0), worst_feature.1.max(f.1));
            worst_logit = (worst_logit.0.max(l.0), worst_logit.1.max(l.1));
        }
    }
    assert!(
        worst_feature.1 <= TOL,
        "pool3 error {worst_feature:?} above {TOL}"
    );
    assert!(
        worst_logit.1 <= TOL,
        "logits error {worst_logit:?} above {TOL}"
    );
}

#[test]
fn burn_bilinear_resize_is_pytorch_interpolate_without_align_corners() {
    let golden = golden("inception_fid_features.json");
    let probes = &golden["resize_probes"];
    let x = image(&golden, probes["image"].as_u64().expect("index") as usize);
    let options =
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Bilinear)
            .with_align_corners(false);
    let resized = burn::tensor::module::interpolate(x, [INPUT_SIZE, INPUT_SIZE], options);
    let values = resized.into_data().to_vec::<f32>().expect("f32");
    for point in probes["points"].as_array().expect("points") {
        let p = floats(point);
        let (y, x, want) = (p[0] as usize, p[1] as usize, p[2]);
        let got = f64::from(values[y * INPUT_SIZE + x]);
        assert!(
            (got - want).abs() < 1e-6,
            "({y}, {x}): {got} vs pytorch {want}"
        );
    }
}

/// Hands out zeros and records what was asked for.
#[derive(Default)]
struct Recorder(Vec<(String, Vec<usize>)>);

impl WeightSource for Recorder {
    fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, EvalError> {
        self.0.push((key.to_string(), shape.to_vec()));
        Ok(vec![0.0; shape.iter().product()])
    }
}

#[test]
fn the_network_asks_for_exactly_pytorch_fids_state_dict() {
    // Deliberately not read: batch-norm step counters (int64 scalars, unused in eval mode).
    let ignored = |key: &str| key.ends_with(".num_batches_tracked");
    let golden = golden("inception_fid_keys.json");
    let want: Vec<(String, Vec<usize>)> = golden["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["key"].as_str().expect("key").to_string(),
                usizes(&k["shape"]),
            )
        })
        .filter(|(key, _)| !ignored(key))
        .collect();
    let mut recorder = Recorder::default();
    let net = FidInception::<B>::from_source(&mut recorder, &Default::default()).unwrap();
    let asked = recorder.0;
    let unique: HashSet<&String> = asked.iter().map(|(k, _)| k).collect();
    assert_eq!(unique.len(), asked.len(), "a key was read twice");
    assert_eq!(asked, want, "keys and shapes, in state-dict order");
    assert_eq!(asked.len(), 472);
    let again = FidInception::<B>::from_source(&mut Recorder::default(), &Default::default());
    assert_eq!(
        net.id(),
        again.unwrap().id(),
        "the id is a function of the weights"
    );
    let ones = FidInception::<B>::from_fn(|_, _, _| 1.0, &Default::default());
    assert_ne!(net.id(), ones.id(), "other weights, other id");
}

#[test]
fn legacy_and_zip_files_are_read_and_checked_key_by_key() {
    let legacy = fixture("inception_fid_legacy.pth");
    let zip = fixture("inception_fid_zip.pth");
    for (path, format) in [(&legacy, "legacy"), (&zip, "zip")] {
        let mut weights = PthWeights::open(path).unwrap();
        assert_eq!(weights.format(), format, "{}", path.display());
        assert!(
            weights
                .keys()
                .contains(&"Conv2d_1a_3x3.bn.num_batches_tracked".to_string())
        );
        for (key, shape) in [
            ("Conv2d_1a_3x3.conv.weight", vec![32, 3, 3, 3]),
            ("Conv2d_1a_3x3.bn.weight", vec![32]),
            ("Conv2d_1a_3x3.bn.bias", vec![32]),
            ("Conv2d_1a_3x3.bn.running_mean", vec![32]),
            ("Conv2d_1a_3x3.bn.running_var", vec![32]),
        ] {
            let values = weights.tensor(key, &shape).unwrap();
            let want: Vec<f32> = (0..values.len())
                .map(|i| deterministic(key, &shape, i))
                .collect();
            assert_eq!(values, want, "{key} in {}", path.display());
        }
    }

    let device = Default::default();
    let err = FidInception::<B>::load(&legacy, &device).unwrap_err();
    assert!(matches!(err, EvalError::Weights { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("no tensor `Conv2d_2a_3x3.conv.weight` (expected shape [32, 32, 3, 3])"),
        "{msg}"
    );

    let msg = FidInception::<B>::load(&zip, &device)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "tensor `Conv2d_2a_3x3.conv.weight` has shape [4, 32, 3, 3], expected [32, 32, 3, 3]"
        ),
        "{msg}"
    );
}

#[test]
fn a_missing_file_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = diffusion_eval::inception::weights_path(dir.path());
    let msg = FidInception::<B>::load(&path, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("cargo xtask fetch-data --dataset inception-fid"),
        "{msg}"
    );

    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"not a pickle").unwrap();
    let msg = FidInception::<B>::load(&garbage, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a readable PyTorch file"), "{msg}");
}

#[test]
fn wrong_channel_counts_are_an_error() {
    let mut recorder = Recorder::default();
    let net = FidInception::<B>::from_source(&mut recorder, &Default::default()).unwrap();
    assert!(net.accepts_channels(1) && net.accepts_channels(3) && !net.accepts_channels(2));
    let images = Tensor::<B, 4>::zeros([1, 2, 8, 8], &Default::default());
    let msg = net.pool3(images).unwrap_err().to_string();
    assert!(msg.contains("[1, 2, 8, 8]"), "{msg}");
}

/// End to end through the reader with full-size files: set
/// `INCEPTION_FID_DETERMINISTIC_PTH` to the files `scripts/golden/inception_fid.py --full-pth
/// DIR` writes (comma-separated); skipped otherwise (95 MB each, not committed).
#[test]
fn full_deterministic_pth_files_give_the_golden_features() {
    let Some(paths) = std::env::var_os("INCEPTION_FID_DETERMINISTIC_PTH") else {
        eprintln!("skipped: set INCEPTION_FID_DETERMINISTIC_PTH (see the doc comment)");
        return;
    };
    let golden = golden("inception_fid_features.json");
    for path in paths.to_string_lossy().split(',') {
        let net = FidInception::<B>::load(Path::new(path), &Default::default()).unwrap();
        assert_eq!(
            net.id(),
            deterministic_network().id(),
            "same weights, same id"
        );
        let pool3 = net.pool3(image(&golden, 2)).unwrap();
        let (_, err) = compare(
            &pool3.into_data().to_vec::<f32>().unwrap(),
            &floats(&golden["features"][2]),
        );
        eprintln!("{path}: pool3 error {err:.2e}");
        assert!(err <= TOL, "{path}: {err}");
    }
}
