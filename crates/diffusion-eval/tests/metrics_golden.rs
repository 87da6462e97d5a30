//! Golden numbers from pytorch-fid 0.3.0 and torch-fidelity 0.4.0 (scipy 1.17, numpy 2.4),
//! in `assets/golden/eval_metrics.json`, written by `scripts/golden/eval_metrics.py`.
//!
//! The inputs are float32 features; the references computed in float64 on them. Tolerances:
//! - Fréchet distance: `1e-6` relative (the bound), plus `1e-12` of `tr S1 + tr S2`
//!   absolute for the case whose distance is zero up to rounding. The statistics themselves
//!   match `np.mean` / `np.cov` to 1e-12.
//! - KID and IS: `1e-10` relative (plus 1e-14 absolute for a zero std): same formulas in f64,
//!   differing only in summation order.
//! - precision/recall: the exact counts (torch-fidelity's float32 means to 1e-7); the script
//!   checks that no distance lies within 1e-9 relative of its radius, so rounding cannot flip
//!   a comparison.

use diffusion_eval::metrics::{
    KidConfig, frechet_distance, inception_score, kid_from_subsets, precision_recall,
};
use diffusion_eval::stats::FeatureStats;
use diffusion_eval::{EvalError, Features};
use serde_json::Value;

const FD_RTOL: f64 = 1e-6;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/golden/eval_metrics.json"
    );
    let text = std::fs::read_to_string(path).expect("golden file is committed in assets/golden");
    serde_json::from_str(&text).expect("golden file is valid JSON")
}

fn cases(kind: &str) -> Vec<Value> {
    let cases: Vec<Value> = golden()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|case| case["kind"] == kind)
        .cloned()
        .collect();
    assert!(!cases.is_empty(), "no golden cases of kind {kind}");
    cases
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

fn num(case: &Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {key}", case["name"]))
}

fn int(case: &Value, key: &str) -> usize {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: {key}", case["name"])) as usize
}

/// A feature matrix stored as decimals that round to the float32 values the script used.
fn features(case: &Value, key: &str) -> Features {
    let data = floats(&case[key]).into_iter().map(|v| v as f32).collect();
    Features::from_rows(int(case, "dim"), data).expect("rows of dim")
}

fn assert_rel(what: &str, ours: f64, theirs: f64, rtol: f64, atol: f64) {
    let err = (ours - theirs).abs();
    assert!(
        err <= atol + rtol * theirs.abs(),
        "{what}: ours {ours}, reference {theirs}, |diff| {err:e}, relative {:e}",
        err / theirs.abs()
    );
    eprintln!(
        "{what}: |diff| {err:.2e}, relative {:.2e}",
        err / theirs.abs().max(f64::MIN_POSITIVE)
    );
}

#[test]
fn fd_from_features_matches_pytorch_fid() {
    for case in cases("fd") {
        let name = case["name"].as_str().unwrap();
        assert_eq!(case["eps_fallback"], false, "{name}: the script's premise");
        let a = FeatureStats::from_features(&features(&case, "features1")).unwrap();
        let b = FeatureStats::from_features(&features(&case, "features2")).unwrap();
        assert_eq!((a.n, b.n), (int(&case, "n1"), int(&case, "n2")));
        let fd = frechet_distance(&a, &b).unwrap();
        let atol = 1e-12 * num(&case, "trace_sum");
        assert_rel(
            &format!("fd {name}"),
            fd,
            num(&case, "expected"),
            FD_RTOL,
            atol,
        );
    }
}

#[test]
fn feature_stats_match_numpy() {
    let case = cases("fd")
        .into_iter()
        .find(|c| c["mean1"].is_array())
        .expect("a case with statistics");
    let stats = FeatureStats::from_features(&features(&case, "features1")).unwrap();
    for (what, ours, theirs) in [
        ("mean", &stats.mean, floats(&case["mean1"])),
        ("cov", &stats.cov, floats(&case["cov1"])),
    ] {
        assert_eq!(ours.len(), theirs.len(), "{what}");
        for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (o - t).abs() <= 1e-12 * (1.0 + t.abs()),
                "{what}[{i}]: {o} vs {t}"
            );
        }
    }
}

#[test]
fn fd_from_statistics_matches_pytorch_fid_or_its_error() {
    for case in cases("fd_stats") {
        let name = case["name"].as_str().unwrap();
        let stats = |i: u8| FeatureStats {
            n: 2,
            mean: floats(&case[format!("mean{i}").as_str()]),
            cov: floats(&case[format!("cov{i}").as_str()]),
        };
        let result = frechet_distance(&stats(1), &stats(2));
        match case["expected_error"].as_str() {
            Some(theirs) => match result {
                Err(EvalError::Linalg(ours)) => eprintln!("fd {name}: {theirs} / ours: {ours}"),
                other => panic!("fd {name}: pytorch-fid raised {theirs}, we gave {other:?}"),
            },
            None => assert_rel(
                &format!("fd {name}"),
                result.unwrap(),
                num(&case, "expected"),
                FD_RTOL,
                0.0,
            ),
        }
    }
}

#[test]
fn kid_on_torch_fidelity_subsets_matches() {
    for case in cases("kid") {
        let name = case["name"].as_str().unwrap();
        let real = features(&case, "real");
        let fake = features(&case, "fake");
        let subsets: Vec<(Vec<usize>, Vec<usize>)> = case["subsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let idx = |v: &Value| -> Vec<usize> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_u64().unwrap() as usize)
                        .collect()
                };
                (idx(&pair[0]), idx(&pair[1]))
            })
            .collect();
        let cfg = KidConfig {
            degree: int(&case, "degree") as u32,
            gamma: case["gamma"].as_f64(),
            coef0: num(&case, "coef0"),
            ..KidConfig::default()
        };
        let kid = kid_from_subsets(&real, &fake, &subsets, &cfg).unwrap();
        assert_eq!(kid.subset_size, int(&case, "subset_size"));
        assert_rel(
            &format!("kid {name} mean"),
            kid.mean,
            num(&case, "expected_mean"),
            1e-10,
            0.0,
        );
        assert_rel(
            &format!("kid {name} std"),
            kid.std,
            num(&case, "expected_std"),
            1e-10,
            0.0,
        );
    }
}

#[test]
fn inception_score_matches_torch_fidelity() {
    for case in cases("isc") {
        let logits = features(&case, "logits");
        let means = floats(&case["expected_mean"]);
        let stds = floats(&case["expected_std"]);
        for (i, splits) in case["splits"].as_array().unwrap().iter().enumerate() {
            let splits = splits.as_u64().unwrap() as usize;
            let (mean, std) = inception_score(&logits, splits).unwrap();
            assert_rel(
                &format!("isc splits={splits} mean"),
                mean,
                means[i],
                1e-10,
                0.0,
            );
            assert_rel(
                &format!("isc splits={splits} std"),
                std,
                stds[i],
                1e-10,
                1e-14,
            );
        }
    }
}

#[test]
fn precision_recall_matches_torch_fidelity() {
    for case in cases("prc") {
        let name = case["name"].as_str().unwrap();
        let real = features(&case, "real");
        let fake = features(&case, "fake");
        let pr = precision_recall(&real, &fake, int(&case, "k")).unwrap();
        let (n_real, n_fake) = (int(&case, "n_real") as f64, int(&case, "n_fake") as f64);
        assert_eq!(
            (pr.precision * n_fake).round() as usize,
            int(&case, "precision_count"),
            "{name}: precision {}",
            pr.precision
        );
        assert_eq!(
            (pr.recall * n_real).round() as usize,
            int(&case, "recall_count"),
            "{name}: recall {}",
            pr.recall
        );
        assert_rel(
            &format!("prc {name} precision"),
            pr.precision,
            num(&case, "expected_precision"),
            1e-7,
            0.0,
        );
        assert_rel(
            &format!("prc {name} recall"),
            pr.recall,
            num(&case, "expected_recall"),
            1e-7,
            0.0,
        );
    }
}
