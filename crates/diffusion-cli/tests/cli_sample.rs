//! `sample`'s sampler options, img2img and inpainting through the binary, the progress lines
//! of `sample`, `denoise` and `forward`, and every bad input of them: one clear line and a
//! failure, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_one_line_error, assert_success, cli, tiny_config, train};

/// A tiny class-conditional run with checkpoints at steps 0, 2 and 4, in `dir/run`.
fn tiny_run(dir: &Path) -> PathBuf {
    let config = tiny_config(dir);
    let run = dir.join("run");
    assert_success(&train(&config, &run, &[]));
    run
}

/// `sample` of two images, with 4 steps unless `args` says otherwise.
fn sample(run: &Path, args: &[&str]) -> Output {
    let steps: &[&str] = if args.contains(&"--steps") {
        &[]
    } else {
        &["--steps", "4"]
    };
    cli()
        .arg("sample")
        .arg("--run")
        .arg(run)
        .args(["-n", "2"])
        .args(steps)
        .args(args)
        .output()
        .unwrap()
}

/// A 28x28 grey image: a gradient on the left half, white on the right.
fn write_init_image(path: &Path) -> image::GrayImage {
    let img = image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if x < 14 { (x * 9 + y) as u8 } else { 255 }])
    });
    img.save(path).unwrap();
    img
}

/// White (kept) on the left half, black (generated) on the right, `w x h`.
fn write_left_half_mask(path: &Path, w: u32, h: u32) {
    image::GrayImage::from_fn(w, h, |x, _| image::Luma([if x < w / 2 { 255 } else { 0 }]))
        .save(path)
        .unwrap();
}

#[test]
fn img2img_and_inpainting_start_where_the_strength_says_and_keep_the_known_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let (init, mask) = (dir.path().join("init.png"), dir.path().join("mask.png"));
    let original = write_init_image(&init);
    write_left_half_mask(&mask, 28, 28);
    let init_arg = init.to_str().unwrap();

    // DDIM, 4 leading steps: 750, 500, 250, 0; strength 0.5 keeps the last floor(2) of them.
    let out = sample(&run, &["--init-image", init_arg, "--strength", "0.5"]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("img2img: strength 0.5, from t = 250"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sampling 2 images (ddim, 2 steps): 0/2"),
        "one progress unit per evaluation: {stderr}"
    );
    assert!(run.join("samples/ddim-2-seed0-img2img.png").is_file());

    // An image of another size and colour is stretched and converted to the model's 28x28 grey.
    let photo = dir.path().join("photo.jpg");
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 30, 90]))
        .save(&photo)
        .unwrap();
    assert_success(&sample(&run, &["--init-image", photo.to_str().unwrap()]));

    let pngs = dir.path().join("inpainted");
    let out = sample(
        &run,
        &[
            "--init-image",
            init_arg,
            "--mask",
            mask.to_str().unwrap(),
            "--seed",
            "5",
            "--out-dir",
            pngs.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("inpainting: 50.0% of the pixels kept"),
        "{stderr}"
    );
    assert!(
        stderr.contains("from t = 750"),
        "strength 1 by default: {stderr}"
    );
    for (i, class) in [(0, 0), (1, 1)] {
        let name = format!("sample_{i:05}_class_{class}_seed_5.png");
        let img = image::open(pngs.join(&name)).unwrap().to_luma8();
        let mut generated_differs = false;
        for (x, y, pixel) in img.enumerate_pixels() {
            if x < 14 {
                assert_eq!(
                    pixel,
                    original.get_pixel(x, y),
                    "{name}: kept pixel ({x}, {y})"
                );
            } else {
                generated_differs |= pixel != original.get_pixel(x, y);
            }
        }
        assert!(
            generated_differs,
            "{name}: the right half is generated, not copied"
        );
    }
}

#[test]
fn sampler_options_apply_or_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    for ok in [
        &[
            "--sampler",
            "ddpm",
            "--spacing",
            "trailing",
            "--variance",
            "fixed-large",
        ][..],
        &["--sampler", "ddim", "--clip", "2", "--spacing", "linspace"],
        &["--sampler", "ddim", "--clip"],
        &["--sampler", "ddpm", "--no-clip"],
        &["--sampler", "dpm++", "--spacing", "trailing"],
        &["--checkpoint", "2"],
    ] {
        let out = sample(&run, ok);
        assert_success(&out);
    }
    // The same seed with and without clipping: the option reaches the sampler.
    let grid = |args: &[&str], name: &str| {
        let path = dir.path().join(name);
        let mut all = vec!["--sampler", "ddpm", "--out", path.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = sample(&run, &all);
        assert_success(&out);
        std::fs::read(path).unwrap()
    };
    assert_ne!(grid(&[], "clip.png"), grid(&["--no-clip"], "no-clip.png"));
    // Karras sigmas reach the sigma samplers.
    let png = |args: &[&str]| {
        let path = dir.path().join("karras-check.png");
        let mut all = vec!["--steps", "3", "--out", path.to_str().unwrap()];
        all.extend_from_slice(args);
        assert_success(&sample(&run, &all));
        std::fs::read(path).unwrap()
    };
    for sampler in ["euler", "heun", "dpm++", "unipc"] {
        let plain = png(&["--sampler", sampler]);
        let karras = png(&["--sampler", sampler, "--karras"]);
        assert_ne!(plain, karras, "--karras had no effect on {sampler}");
        // The tiny net's x0 predictions leave [-1, 1] at 3 steps: a clip shows.
        let clipped = png(&["--sampler", sampler, "--clip"]);
        assert_ne!(plain, clipped, "--clip had no effect on {sampler}");
    }

    let (init, mask) = (dir.path().join("init.png"), dir.path().join("mask.png"));
    write_init_image(&init);
    write_left_half_mask(&mask, 28, 28);
    let (small, rgb, text) = (
        dir.path().join("small.png"),
        dir.path().join("rgb.png"),
        dir.path().join("notes.png"),
    );
    write_left_half_mask(&small, 14, 28);
    image::RgbImage::new(28, 28).save(&rgb).unwrap();
    std::fs::write(&text, "not an image").unwrap();
    let missing = dir.path().join("missing.png");
    let [init, mask, small, rgb, text, missing] =
        [&init, &mask, &small, &rgb, &text, &missing].map(|p| p.to_str().unwrap().to_string());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--steps", "0"],
            "--steps 0 is out of range for --sampler ddim: must be in 1..=1000",
        ),
        (vec!["--steps", "1001"], "--steps 1001 is out of range"),
        (
            vec!["--sampler", "dpm++", "--steps", "5000"],
            "--steps 5000 is out of range for --sampler dpm++",
        ),
        (
            vec!["--sampler", "ddim", "--clip", "0"],
            "--clip 0 is out of range",
        ),
        (
            vec!["--sampler", "dpm++", "--variance", "fixed-large"],
            "--variance: the dpm++ sampler does not use",
        ),
        (
            vec!["--sampler", "ddim", "--variance", "fixed-small"],
            "--variance: the ddim sampler does not use",
        ),
        (
            vec!["--clip", "--no-clip"],
            "--clip and --no-clip contradict",
        ),
        (
            vec!["--sampler", "ddim", "--karras"],
            "--karras: the ddim sampler does not use",
        ),
        (
            vec!["--sampler", "heun", "--steps", "1001"],
            "--steps 1001 is out of range for --sampler heun",
        ),
        (
            vec!["--sampler", "ddpm", "--eta", "0.5"],
            "--eta applies to --sampler ddim only",
        ),
        (
            vec!["--checkpoint", "3"],
            "has no checkpoint of step 3; it keeps steps 0, 2, 4",
        ),
        (vec!["--strength", "0.5"], "--strength needs --init-image"),
        (vec!["--mask", &mask], "--mask needs --init-image"),
        (
            vec!["--init-image", &init, "--strength", "0"],
            "--strength 0 is out of range: must be in (0, 1]",
        ),
        (
            vec!["--init-image", &init, "--strength", "1.5"],
            "--strength 1.5 is out of range",
        ),
        (
            vec!["--init-image", &init, "--strength", "0.1"],
            "--strength 0.1 keeps none of the sampler's 4 steps",
        ),
        (
            vec!["--init-image", &init, "--mask", &small],
            "is 14x28 but --init-image",
        ),
        (
            vec!["--init-image", &init, "--mask", &rgb],
            "has 3 colour channels but the model has 1",
        ),
        (vec!["--init-image", &text], "not a readable image"),
        (
            vec!["--init-image", &missing],
            "missing.png: cannot open it",
        ),
        (vec!["--init-image", &init, "--mask", &text], "--mask"),
    ];
    for (args, needle) in cases {
        let out = sample(&run, &args);
        assert_one_line_error(&out, needle);
    }
}

#[test]
fn denoise_eval_and_forward_check_their_flags_and_show_progress() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let den = dir.path().join("den.png");
    let denoise = |args: &[&str]| {
        cli()
            .args(["denoise", "--from-t", "5,50", "-n", "2", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&den)
            .args(args)
            .output()
            .unwrap()
    };
    let out = denoise(&["--sampler", "ddim", "--steps", "100", "--no-clip"]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // DDIM with 100 leading steps visits 0 from 5 and 50, 40, ..., 0 from 50: 1 + 6 evaluations.
    assert!(
        stderr.contains("denoising 2 images from 2 starts (ddim): 0/7"),
        "{stderr}"
    );
    assert!(stderr.contains("done in"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert_one_line_error(
        &denoise(&["--sampler", "dpm++", "--variance", "fixed-large"]),
        "--variance",
    );
    assert_one_line_error(
        &denoise(&["--steps", "0"]),
        "--steps 0 is out of range for --sampler ddpm",
    );
    assert_one_line_error(&denoise(&["--checkpoint", "1"]), "it keeps steps 0, 2, 4");

    // eval refuses before it prepares any reference (which would train a classifier).
    let data_dir = dir.path().join("data");
    let eval = |args: &[&str]| {
        cli()
            .args(["eval", "-n", "2", "--run"])
            .arg(&run)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .output()
            .unwrap()
    };
    assert_one_line_error(&eval(&["--steps", "2000"]), "--steps 2000 is out of range");
    assert_one_line_error(
        &eval(&["--sampler", "dpm++", "--variance", "fixed-large"]),
        "--variance",
    );
    assert_one_line_error(&eval(&["--sampler", "ddim", "--karras"]), "--karras");
    assert_one_line_error(&eval(&["--checkpoint", "3"]), "it keeps steps 0, 2, 4");
    assert!(
        !data_dir.exists(),
        "nothing prepared before the flags were checked"
    );

    let strip = dir.path().join("f.png");
    let out = cli()
        .args([
            "forward",
            "--dataset",
            "mnist-sample",
            "--at",
            "0,500",
            "--out",
        ])
        .arg(&strip)
        .output()
        .unwrap();
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("noising to 2 timesteps: 0/2"), "{stderr}");
}
