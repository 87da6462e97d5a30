//! What the binary's tests share: the command, a tiny config, assertions on its output.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub fn cli() -> Command {
    let mut cmd = Command::cargo_bin("diffusion-cli").unwrap();
    cmd.env_remove("DIFFUSION_DATA");
    cmd
}

/// The mnist preset shrunk to seconds: a 2-level net with 8 base channels, 8 images a step.
pub fn tiny_config(dir: &Path) -> PathBuf {
    let preset = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/configs/mnist.json"
    );
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(preset).unwrap()).unwrap();
    config["model"]["base_channels"] = 8.into();
    config["model"]["channel_mults"] = serde_json::json!([1, 2]);
    config["model"]["attention_resolutions"] = serde_json::json!([14]);
    config["model"]["norm_groups"] = 4.into();
    config["batch_size"] = 8.into();
    config["max_steps"] = 4.into();
    config["checkpoint_every"] = 2.into();
    config["sample_every"] = 4.into();
    config["log_every"] = 1.into();
    config["preview"]["num_images"] = 2.into();
    config["preview"]["columns"] = 2.into();
    config["preview"]["ddim_steps"] = 2.into();
    let path = dir.join("tiny.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "stderr: {stderr}");
    assert!(last.contains(needle), "`{needle}` not in: {last}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `train --config CONFIG --run RUN EXTRA...`, run to its end.
pub fn train(config: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    cli()
        .arg("train")
        .args(extra)
        .arg("--config")
        .arg(config)
        .arg("--run")
        .arg(run)
        .output()
        .unwrap()
}

/// The lines of standard error that contain `needle`.
pub fn stderr_lines_with(out: &std::process::Output, needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_string)
        .collect()
}
