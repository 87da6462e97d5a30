//! `diffusion-cli schedule` as users and scripts call it.

use assert_cmd::Command;
use serde_json::Value;

fn cli() -> Command {
    Command::cargo_bin("diffusion-cli").unwrap()
}

fn golden_schedule(beta_schedule: &str, timesteps: u64) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/golden/diffusers.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["kind"] == "schedule"
                && c["config"]["beta_schedule"] == beta_schedule
                && c["config"]["num_train_timesteps"] == timesteps
                && c["config"].get("rescale_betas_zero_snr").is_none()
        })
        .cloned()
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn json_matches_diffusers_betas_for_every_schedule() {
    for (flag, name, extra) in [
        ("linear", "linear", vec![]),
        ("cosine", "squaredcos_cap_v2", vec![]),
        (
            "scaled-linear",
            "scaled_linear",
            vec!["--beta-start", "0.00085", "--beta-end", "0.012"],
        ),
        ("sigmoid", "sigmoid", vec![]),
    ] {
        let out = cli()
            .args([
                "schedule",
                "--schedule",
                flag,
                "--timesteps",
                "1000",
                "--format",
                "json",
            ])
            .args(&extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let betas = floats(&doc["betas"]);
        let alphas_cumprod = floats(&doc["alphas_cumprod"]);
        assert_eq!(betas.len(), 1000);
        assert_eq!(alphas_cumprod.len(), 1000);
        let golden = golden_schedule(name, 1000);
        for (t, (ours, theirs)) in betas.iter().zip(floats(&golden["betas"])).enumerate() {
            // diffusers stores betas in float32: 1e-6 relative covers its rounding.
            assert!(
                (ours - theirs).abs() <= 1e-6 * theirs.abs(),
                "{flag} beta[{t}]: {ours} vs diffusers {theirs}"
            );
        }
    }
}

#[test]
fn csv_has_a_header_and_one_row_per_timestep() {
    let out = cli()
        .args(["schedule", "--timesteps", "7", "--format", "csv"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "t,beta,alpha_bar,snr");
    assert_eq!(lines.len(), 8);
    let last: Vec<f64> = lines[7].split(',').map(|f| f.parse().unwrap()).collect();
    assert_eq!(last[0], 6.0);
    assert!((last[1] - 0.02).abs() < 1e-15, "last beta is beta_end");
    assert!(
        (last[3] - last[2] / (1.0 - last[2])).abs() < 1e-9 * last[3],
        "snr = ab / (1 - ab)"
    );
}

#[test]
fn bad_arguments_give_one_line_and_a_failure() {
    for args in [
        vec!["schedule", "--timesteps", "0"],
        vec!["schedule", "--beta-start", "0.5", "--beta-end", "0.1"],
        vec!["schedule", "--beta-end", "NaN"],
        vec!["schedule", "--beta-end", "1.5"],
    ] {
        let out = cli().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = cli()
        .args(["schedule", "--schedule", "quadratic"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn plot_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("schedule.png");
    let out = cli()
        .args([
            "schedule",
            "--schedule",
            "cosine",
            "--format",
            "csv",
            "--plot",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
}
