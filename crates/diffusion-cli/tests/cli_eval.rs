//! `diffusion-cli eval`: a run's samples and a folder of PNGs scored against the bundled MNIST
//! sample, the report, the caches, and every user mistake as one clear line.

mod common;

use std::path::Path;

use common::{assert_one_line_error, assert_success, cli, tiny_config, train};
use serde_json::Value;

fn write_png(path: &Path, side: u32, gray: bool) {
    let image = if gray {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(side, side, |x, y| {
            image::Luma([((x * 7 + y * 3) % 256) as u8])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::new(side, side))
    };
    image.save(path).unwrap();
}

fn eval(data_dir: &Path, args: &[&str]) -> std::process::Output {
    cli()
        .arg("eval")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Trains the classifier once (about a minute, during `train --eval-every`) and reuses it:
/// the curve is logged and plotted, scores of a barely trained run are far above the floor,
/// the report states n, and damaged caches are errors, not panics.
#[test]
fn run_and_folder_are_scored_against_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let run = dir.path().join("run");
    let data = dir.path().join("data");
    // Measured during training: the classifier is trained here, once, and cached.
    let out = train(
        &config,
        &run,
        &[
            "--eval-every",
            "2",
            "--eval-num",
            "8",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let measured: Vec<Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| !r["eval"].is_null())
        .collect();
    let steps: Vec<u64> = measured
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 4], "{metrics}");
    for record in &measured {
        assert_eq!(record["eval"]["n"], 8);
        assert!(
            record["eval"]["fd_classifier"].as_f64().unwrap() > 0.0,
            "{record}"
        );
    }
    let plot = dir.path().join("plot.png");
    let out = cli()
        .args([
            "plot",
            "--runs",
            run.to_str().unwrap(),
            "--out",
            plot.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let drawn = image::open(&plot).unwrap();
    assert!(
        drawn.width() > 2 * drawn.height(),
        "loss and quality side by side"
    );

    let json = dir.path().join("eval.json");
    let out = eval(
        &data,
        &[
            "--run",
            run.to_str().unwrap(),
            "-n",
            "24",
            "--batch-size",
            "12",
            "--sampler",
            "ddim",
            "--steps",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("n = 24"), "{stdout}");
    assert!(stdout.contains("biased by n"), "{stdout}");
    let report = read_json(&json);
    assert_eq!(report["n"], 24);
    assert_eq!(report["dataset"], "mnist-sample");
    assert!(
        report["fid"].is_null() && report["kid"].is_null(),
        "{report}"
    );
    assert_eq!(report["source"]["sampler"], "ddim");
    let fd = report["fd_classifier"].as_f64().unwrap();
    let floor = report["floor"]["fd_classifier"].as_f64().unwrap();
    assert_eq!(report["floor"]["n"], 24);
    // Four training steps give noise; real digits of the other half are far closer.
    assert!(
        fd > 2.0 * floor && floor > 0.0,
        "samples {fd}, floor {floor}"
    );
    // The preset is class-conditional: noise is classified as asked about as often as chance,
    // real digits nearly always.
    let asked = report["accuracy"].as_f64().unwrap();
    let real = report["floor"]["accuracy"].as_f64().unwrap();
    assert!(asked < 0.5 && real > 0.8, "samples {asked}, real {real}");
    let accuracy = report["classifier"]["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "classifier test accuracy {accuracy}");

    // A folder of real-looking files: the first 24 PNGs, gray 28x28, with class names.
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..24 {
        write_png(
            &images.join(format!("sample_{i:05}_class_{}.png", i % 10)),
            28,
            true,
        );
    }
    let json2 = dir.path().join("folder.json");
    let out = eval(
        &data,
        &[
            "--images",
            images.to_str().unwrap(),
            "--dataset",
            "mnist-sample",
            "-n",
            "24",
            "--no-floor",
            "--json",
            json2.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("training"),
        "the cached classifier is reused: {stderr}"
    );
    let report = read_json(&json2);
    assert_eq!(report["n"], 24);
    assert!(report["floor"].is_null());
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{report}");

    // A damaged features cache is one line naming it; nothing is overwritten silently.
    let cache = data.join("eval-cache/mnist-sample");
    let features = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("second-half-5000-") && name.ends_with(".features")
        })
        .expect("the reference's features in the cache");
    let bytes = std::fs::read(&features).unwrap();
    std::fs::write(&features, &bytes[..bytes.len() / 2]).unwrap();
    let out = eval(
        &data,
        &[
            "--images",
            images.to_str().unwrap(),
            "--dataset",
            "mnist-sample",
            "--no-floor",
        ],
    );
    assert_one_line_error(&out, "delete it");
}

#[test]
fn user_mistakes_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let folder = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let empty = folder("empty");
    let not_png = folder("not-png");
    write_png(&not_png.join("a.png"), 28, true);
    write_png(&not_png.join("b.png"), 28, true);
    std::fs::write(not_png.join("notes.txt"), "hello").unwrap();
    let mixed = folder("mixed");
    write_png(&mixed.join("a.png"), 28, true);
    write_png(&mixed.join("b.png"), 32, true);
    let rgb = folder("rgb");
    write_png(&rgb.join("a.png"), 28, false);
    write_png(&rgb.join("b.png"), 28, false);
    let big = folder("big");
    write_png(&big.join("a.png"), 32, true);
    write_png(&big.join("b.png"), 32, true);
    let fake = folder("fake");
    std::fs::write(fake.join("a.png"), "not a png").unwrap();
    std::fs::write(fake.join("b.png"), "not a png").unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--images".into(),
                path(&empty),
                "--dataset".into(),
                "mnist-sample".into(),
            ],
            "0 PNG files",
        ),
        (
            vec![
                "--images".into(),
                path(&not_png),
                "--dataset".into(),
                "mnist-sample".into(),
            ],
            "notes.txt is not one",
        ),
        (
            vec![
                "--images".into(),
                path(&mixed),
                "--dataset".into(),
                "mnist-sample".into(),
            ],
            "all images must share",
        ),
        (
            vec![
                "--images".into(),
                path(&rgb),
                "--dataset".into(),
                "mnist-sample".into(),
            ],
            "3 channel(s)",
        ),
        (
            vec![
                "--images".into(),
                path(&big),
                "--dataset".into(),
                "mnist-sample".into(),
            ],
            "32x32",
        ),
        (
            vec![
                "--images".into(),
                path(&fake),
                "--dataset".into(),
                "mnist-sample".into(),
            ],
            "is not a readable PNG",
        ),
        (
            vec!["--images".into(), path(&not_png)],
            "--images needs --dataset",
        ),
        (
            vec!["--run".into(), path(&dir.path().join("nope"))],
            "does not exist",
        ),
        (
            vec![
                "--images".into(),
                path(&big),
                "--dataset".into(),
                "mnist-sample".into(),
                "-n".into(),
                "1".into(),
            ],
            "-n must be at least 2",
        ),
        (
            vec![
                "--images".into(),
                path(&big),
                "--dataset".into(),
                "folder:".into(),
            ],
            "folder: needs a path",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = eval(&data, &args);
        if needle == "folder: needs a path" {
            // clap's own errors end with a usage hint; they still name the mistake.
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains(needle));
            continue;
        }
        assert_one_line_error(&out, needle);
    }
    // Inception asked for explicitly without its weights: the fetch command, before any work.
    let two = folder("two");
    write_png(&two.join("a.png"), 28, true);
    write_png(&two.join("b.png"), 28, true);
    let out = eval(
        &data,
        &[
            "--images",
            two.to_str().unwrap(),
            "--dataset",
            "mnist-sample",
            "--metrics",
            "inception",
        ],
    );
    assert_one_line_error(&out, "cargo xtask fetch-data --dataset inception-fid");
    assert!(
        !data.join("eval-cache").exists(),
        "nothing cached by failed runs"
    );
}
