//! `import-diffusers` and `export` through the binary: an imported diffusers folder is a run
//! that `info`, `sample`, `denoise`, `train --resume` and `export` take; bad input is one line,
//! a non-zero exit, and no run directory.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_one_line_error, assert_success, cli};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/diffusers")
        .join(case)
}

#[test]
fn an_imported_pipeline_samples_fine_tunes_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // A 2-class folder of 32x32 RGB images to fine-tune on.
    for class in ["a", "b"] {
        let folder = dir.path().join("imgs").join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..2u8 {
            let img = image::RgbImage::from_pixel(32, 32, image::Rgb([i * 90, 30, 160]));
            img.save(folder.join(format!("{i}.png"))).unwrap();
        }
    }
    let dataset = format!("folder:{}", dir.path().join("imgs").display());
    let out = cli()
        .arg("import-diffusers")
        .arg(fixture("ddpm-cifar10-tiny"))
        .arg("--run")
        .arg(&run)
        .args(["--dataset", &dataset])
        .output()
        .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("residual-attention 3x32x32"), "{stdout}");

    let out = cli().arg("info").arg("--run").arg(&run).output().unwrap();
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint: step 0"));

    let grid = dir.path().join("grid.png");
    let out = cli()
        .args([
            "sample",
            "--sampler",
            "ddim",
            "--steps",
            "2",
            "-n",
            "2",
            "--run",
        ])
        .arg(&run)
        .arg("--out")
        .arg(&grid)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(grid.is_file());

    let out = cli()
        .args(["train", "--resume", "--max-steps", "1", "--batch-size", "2"])
        .args(["--sample-every", "1000", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(run.join("checkpoints/step-00000001").is_dir());

    let exported = dir.path().join("exported");
    let export = || {
        cli()
            .arg("export")
            .arg("--run")
            .arg(&run)
            .arg("--out")
            .arg(&exported)
            .output()
            .unwrap()
    };
    assert_success(&export());
    for file in [
        "config.json",
        "scheduler_config.json",
        "diffusion_pytorch_model.safetensors",
    ] {
        assert!(exported.join(file).is_file(), "{file}");
    }
    // Exporting over an existing folder is refused.
    assert_one_line_error(&export(), "already exists");
}

#[test]
fn bad_folders_are_one_line_and_leave_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let source = fixture("attention-conditional-scale-shift");
    std::fs::copy(source.join("config.json"), model.join("config.json")).unwrap();
    let run = dir.path().join("run");
    let import = |folder: &Path| {
        cli()
            .arg("import-diffusers")
            .arg(folder)
            .arg("--run")
            .arg(&run)
            .output()
            .unwrap()
    };
    assert_one_line_error(&import(&model), "has no weights");
    assert!(!run.exists());

    let weights = std::fs::read(source.join("diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(
        model.join("diffusion_pytorch_model.safetensors"),
        &weights[..weights.len() - 100],
    )
    .unwrap();
    assert_one_line_error(&import(&model), "not a readable safetensors file");
    assert!(!run.exists());

    std::fs::write(model.join("diffusion_pytorch_model.safetensors"), &weights).unwrap();
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        config.replace("\"silu\"", "\"gelu\""),
    )
    .unwrap();
    assert_one_line_error(&import(&model), "`act_fn`");
    assert!(!run.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("model")]);
}
