//! The user's workflow end to end through the binary: train a tiny model, resume, sample,
//! denoise, plot, inspect; and every user mistake gives one clear line and a failure.

mod common;

use std::path::Path;

use common::{assert_one_line_error, assert_success, cli, tiny_config, train};
use serde_json::Value;

#[test]
fn train_resume_sample_denoise_plot_info() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let run = dir.path().join("run");

    let out = train(&config, &run, &[]);
    assert_success(&out);
    assert!(run.join("config.json").is_file());
    assert!(run.join("checkpoints/step-00000004").is_dir());
    assert!(run.join("samples/step-00000004.png").is_file());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4, "{metrics}");

    // A second run into the same directory must not clobber it.
    assert_one_line_error(&train(&config, &run, &[]), "--resume");

    // --max-steps counts the run's total steps: 4 done, 2 more.
    let out = cli()
        .args(["train", "--resume", "--max-steps", "6", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(run.join("checkpoints/step-00000006").is_dir());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 6);

    // Same seed, same images; one PNG per sample named by class and seed; a looping GIF; a strip.
    let sample = |seed: &str, out: &Path| {
        cli()
            .args(["sample", "--steps", "3", "-n", "4", "--seed", seed, "--run"])
            .arg(&run)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let (a, b, c) = (
        dir.path().join("a.png"),
        dir.path().join("b.png"),
        dir.path().join("c.png"),
    );
    assert!(sample("7", &a).status.success());
    assert!(sample("7", &b).status.success());
    assert!(sample("8", &c).status.success());
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "same seed, same grid"
    );
    assert_ne!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&c).unwrap(),
        "other seed, other grid"
    );

    let pngs = dir.path().join("pngs");
    let gif = dir.path().join("reverse.gif");
    let strip = dir.path().join("strip.png");
    let out = cli()
        .args([
            "sample",
            "--sampler",
            "dpm++",
            "--steps",
            "3",
            "-n",
            "3",
            "--class",
            "7",
            "--run",
        ])
        .arg(&run)
        .arg("--out-dir")
        .arg(&pngs)
        .arg("--gif")
        .arg(&gif)
        .arg("--strip")
        .arg(&strip)
        .args(["--strip-steps", "3"])
        .output()
        .unwrap();
    assert_success(&out);
    for i in 0..3 {
        let png = pngs.join(format!("sample_{i:05}_class_7_seed_0.png"));
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (28, 28));
    }
    assert_eq!(&std::fs::read(&gif).unwrap()[..6], b"GIF89a");
    let strip = image::open(&strip).unwrap();
    // Three images (rows) by three steps (columns), tiles of equal size.
    assert_eq!(
        strip.width(),
        strip.height(),
        "{}x{}",
        strip.width(),
        strip.height()
    );

    let out = cli()
        .args([
            "sample",
            "--sampler",
            "ddpm",
            "--steps",
            "5",
            "-n",
            "2",
            "--run",
        ])
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&out);

    let den = dir.path().join("denoise.png");
    let out = cli()
        .args(["denoise", "--from-t", "5,50", "-n", "2", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&den)
        .output()
        .unwrap();
    assert_success(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.lines().nth(1).unwrap().trim_start().starts_with("5 "),
        "{table}"
    );
    // Two rows of original + (noisy, denoised) x 2.
    let img = image::open(&den).unwrap();
    assert!(
        img.width() > 2 * img.height(),
        "{}x{}",
        img.width(),
        img.height()
    );

    let plot = dir.path().join("loss.png");
    let out = cli()
        .arg("plot")
        .arg("--runs")
        .arg(&run)
        .arg("--out")
        .arg(&plot)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(image::open(&plot).is_ok());

    let out = cli().arg("info").arg("--run").arg(&run).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l == "step: 6"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("parameters: ")),
        "{text}"
    );

    // Mistakes about an existing run.
    let out = cli()
        .args(["sample", "--class", "12", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_one_line_error(&out, "--class 12 is out of range");
    let out = cli()
        .args(["denoise", "--from-t", "5000", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&den)
        .output()
        .unwrap();
    assert_one_line_error(&out, "--from-t 5000 is out of range");
}

#[test]
fn info_prints_the_exact_parameter_count_of_the_ddpm_network() {
    let out = cli()
        .args(["info", "--preset", "cifar10-ddpm"])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l == "parameters: 35746307"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("forward cost: ") && l.ends_with("GMACs per image"))
    );
}

#[test]
fn forward_writes_a_strip_and_a_gif_of_a_bundled_digit() {
    let dir = tempfile::tempdir().unwrap();
    let (strip, gif) = (dir.path().join("f.png"), dir.path().join("f.gif"));
    let out = cli()
        .args([
            "forward",
            "--dataset",
            "mnist-sample",
            "--index",
            "5",
            "--at",
            "0,100,999",
            "--out",
        ])
        .arg(&strip)
        .arg("--gif")
        .arg(&gif)
        .output()
        .unwrap();
    assert_success(&out);
    let img = image::open(&strip).unwrap();
    assert!(
        img.width() >= 3 * img.height() - 8,
        "three tiles side by side"
    );
    assert_eq!(&std::fs::read(&gif).unwrap()[..6], b"GIF89a");
}

#[test]
fn user_mistakes_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (missing, run, out_png) = (path("nope"), path("r"), path("o.png"));
    let (no_config, no_image) = (format!("{missing}/c.json"), format!("{missing}/x.png"));
    let data_dir = dir.path().display().to_string();
    let cases: [(Vec<&str>, &str); 8] = [
        (vec!["sample", "--run", &missing], "does not exist"),
        (vec!["info", "--run", &missing], "does not exist"),
        (vec!["train", "--config", &no_config], "c.json"),
        (
            vec![
                "train",
                "--dataset",
                "cifar10",
                "--data-dir",
                &data_dir,
                "--run",
                &run,
            ],
            "cargo xtask fetch-data --dataset cifar10",
        ),
        (
            vec!["train", "--batch-size", "0", "--run", &run],
            "batch_size",
        ),
        (vec!["info", "--preset", "imagenet"], "known presets"),
        (
            vec!["forward", "--image", &no_image, "--out", &out_png],
            "x.png",
        ),
        (
            vec!["sample", "--run", &missing, "--checkpoint", "3"],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        let out = cli().args(&args).output().unwrap();
        assert_one_line_error(&out, needle);
    }
    let missing = dir.path().join("nope");
    #[cfg(not(feature = "cuda"))]
    {
        let run = dir.path().join("cuda-run");
        let out = cli()
            .args(["train", "--device", "cuda", "--run"])
            .arg(&run)
            .output()
            .unwrap();
        assert_one_line_error(&out, "--features cuda");
        assert!(!run.exists(), "nothing written before the device check");
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let out = cli()
            .args(["sample", "--device", "wgpu", "--run"])
            .arg(&missing)
            .output()
            .unwrap();
        assert_one_line_error(&out, "--features wgpu");
    }
    // clap's own usage errors fail too.
    assert!(
        !cli()
            .args(["train", "--device", "tpu"])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        !cli()
            .args(["sample", "--run", "x", "--sampler", "euler"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

/// Every training setting that has a flag lands in the run's config.json; bad values and the
/// eps + zero-terminal-SNR combination are one clear line, with no run directory left behind.
#[test]
fn training_flags_reach_the_run_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let run = dir.path().join("run");
    let flags = [
        "--max-steps",
        "2",
        "--weight-decay",
        "0.05",
        "--warmup-steps",
        "7",
        "--lr-decay",
        "cosine",
        "--ema-decay",
        "0.99",
        "--grad-clip",
        "0.5",
        "--loss-weighting",
        "min-snr:5",
        "--p-uncond",
        "0.2",
        "--grad-accum",
        "2",
        "--keep-checkpoints",
        "3",
        "--zero-terminal-snr",
        "--prediction",
        "v",
    ];
    let out = train(&config, &run, &flags);
    assert_success(&out);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let f = |pointer: &str| saved.pointer(pointer).cloned().unwrap_or_default();
    let weight_decay = f("/optimizer/weight_decay").as_f64().unwrap();
    assert!((weight_decay - 0.05).abs() < 1e-7, "{weight_decay}");
    assert_eq!(f("/lr_schedule/warmup_steps"), 7);
    assert_eq!(f("/lr_schedule/decay"), "cosine");
    assert_eq!(f("/ema/decay").as_f64(), Some(0.99));
    assert_eq!(f("/optimizer/grad_clip_norm").as_f64(), Some(0.5));
    assert_eq!(f("/loss_weighting/min-snr/gamma").as_f64(), Some(5.0));
    assert_eq!(f("/p_uncond").as_f64(), Some(0.2));
    assert_eq!(f("/grad_accum_steps"), 2);
    assert_eq!(f("/keep_last_checkpoints"), 3);
    assert_eq!(f("/schedule/rescale_zero_terminal_snr"), true);
    assert_eq!(f("/prediction_type"), "v");

    // `off` turns clipping off; `uniform` is the other weighting.
    let run = dir.path().join("run-off");
    let out = train(
        &config,
        &run,
        &[
            "--max-steps",
            "1",
            "--grad-clip",
            "off",
            "--loss-weighting",
            "uniform",
        ],
    );
    assert_success(&out);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert!(saved["optimizer"]["grad_clip_norm"].is_null(), "{saved}");
    assert_eq!(saved["loss_weighting"], "uniform");

    let cases: [(&[&str], &str); 7] = [
        (&["--zero-terminal-snr"], "--prediction v"),
        (&["--grad-clip", "0"], "norm > 0"),
        (&["--loss-weighting", "min-snr:-1"], "gamma"),
        (&["--loss-weighting", "snr"], "min-snr:GAMMA"),
        (&["--ema-decay", "1.5"], "ema.decay"),
        (&["--grad-accum", "0"], "grad_accum_steps"),
        (&["--unconditional", "--p-uncond", "0.1"], "p_uncond"),
    ];
    for (extra, needle) in cases {
        let run = dir.path().join("refused");
        let out = train(&config, &run, extra);
        assert!(!out.status.success(), "{extra:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{extra:?}: `{needle}` not in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!run.exists(), "{extra:?} left {}", run.display());
    }
}

#[test]
fn every_flag_has_help_text() {
    // The flags of the sampler and of img2img and inpainting, where they are taken.
    let sampler_flags = [
        "--sampler",
        "--steps",
        "--spacing",
        "--karras",
        "--variance",
        "--clip",
        "--no-clip",
        "--eta",
    ];
    let sample_flags = ["--init-image", "--strength", "--mask", "--out-dir"];
    for command in [
        "train",
        "sample",
        "forward",
        "denoise",
        "eval",
        "schedule",
        "plot",
        "info",
        "bench",
        "import-diffusers",
        "export",
    ] {
        let out = cli().args([command, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        let expected: &[&str] = match command {
            "sample" => &[&sampler_flags[..], &sample_flags[..]].concat(),
            "denoise" | "eval" => &sampler_flags,
            _ => &[],
        };
        for flag in expected {
            let listed = help
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{flag} ")));
            assert!(listed, "`{command} --help` does not list {flag}\n{help}");
        }
        // Every option line ("  --flag ...") is followed by a description on the same line or
        // the next indented line; clap prints a bare flag when a doc comment is missing.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if !(trimmed.starts_with("--") || trimmed.starts_with("-n")) {
                continue;
            }
            let described = trimmed.contains("  ")
                || lines
                    .get(i + 1)
                    .is_some_and(|next| next.starts_with("          ") && !next.trim().is_empty());
            assert!(
                described,
                "`{command} --help`: no description for `{trimmed}`\n{help}"
            );
        }
    }
}

/// An image folder of another size trains once `--image-size` resizes it and sizes the net.
#[test]
fn image_folder_of_any_size_trains_with_image_size() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(dir.path().join("imgs").join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_pixel(20, 20, image::Rgb([i * 80, 40, 200]));
            img.save(dir.path().join("imgs").join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let dataset = format!("folder:{}", dir.path().join("imgs").display());
    let run = dir.path().join("run");
    let common = [
        "--preset",
        "cifar10",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--sample-every",
        "1000",
    ];
    let out = cli()
        .args(["train", "--dataset", &dataset])
        .args(common)
        .arg("--run")
        .arg(&run)
        .output()
        .unwrap();
    assert_one_line_error(&out, "the images are 20x20");
    let out = cli()
        .args(["train", "--dataset", &dataset, "--image-size", "16"])
        .args(common)
        .arg("--run")
        .arg(dir.path().join("run16"))
        .output()
        .unwrap();
    assert_success(&out);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run16/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["model"]["image_size"], 16);
    assert_eq!(config["data"]["image_size"], 16);
}

#[test]
fn bench_prints_one_json_object_with_the_measured_rates() {
    let out = cli()
        .args([
            "bench",
            "--batch-size",
            "2",
            "--train-steps",
            "2",
            "--warmup",
            "1",
        ])
        .args(["--sample-batches", "1", "--ddim-steps", "2"])
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    assert_success(&out);
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(report["preset"], "mnist");
    assert_eq!(
        report["params"], 268_017,
        "the training preset's parameter count"
    );
    assert_eq!(report["threads"], 2);
    assert_eq!(report["model"]["base_channels"], 16);
    let rates = |key: &str| report[key].as_array().unwrap().clone();
    assert_eq!(
        rates("train_images_per_sec").len(),
        2,
        "one rate per measured step"
    );
    assert_eq!(
        rates("sample_images_per_sec").len(),
        1,
        "one rate per measured batch"
    );
    for rate in rates("train_images_per_sec")
        .iter()
        .chain(&rates("sample_images_per_sec"))
    {
        assert!(rate.as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 0.0);

    let out = cli().args(["bench", "--batch-size", "0"]).output().unwrap();
    assert_one_line_error(&out, "--batch-size");
}

#[test]
fn info_of_the_mnist_training_preset_describes_only_its_own_network() {
    let out = cli().args(["info", "--preset", "mnist"]).output().unwrap();
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("parameters: 268017"), "{text}");
    // The network preset `mnist` (base 32, 1.1M parameters) is another network.
    assert!(!text.contains("1.1M params"), "{text}");
    let out = cli()
        .args(["info", "--preset", "mnist-residual"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(String::from_utf8(out.stdout).unwrap().contains("network: "));
}

/// Output piped into a reader that stops early (`| head`) ends the process quietly, like any
/// Unix tool: no panic, no "Broken pipe" error line. 100,000 CSV rows overflow the pipe's
/// buffer, so the write fails whenever the reader closes.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    for args in [
        &["schedule", "--format", "csv", "--timesteps", "100000"][..],
        &["info", "--preset", "cifar10-ddpm"][..],
    ] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("diffusion-cli"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        // Killed by SIGPIPE, or done before the reader closed (info's output is short).
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
            "{args:?}: {:?}",
            out.status
        );
    }
}
