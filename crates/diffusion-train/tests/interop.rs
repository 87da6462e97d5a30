//! Import and export of diffusers folders against the fixtures of
//! `scripts/golden/diffusers_interop.py` (`assets/diffusers/`, written by diffusers 0.42.1 with
//! seeded random weights): outputs within 1e-4 of diffusers' (float64), the schedule's
//! `alphas_cumprod`, import then export bit for bit, and every bad input as one error naming
//! the file, tensor or option, with no directory left behind.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use diffusion_train::checkpoint::CheckpointChoice;
use diffusion_train::interop::{export_diffusers_folder, import_diffusers_run};
use diffusion_train::{TrainConfig, TrainError, load_run};
use safetensors::SafeTensors;

type B = Autodiff<Flex>;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/diffusers")
        .join(case)
}

fn import(source: &Path, out: &Path) -> Result<(), TrainError> {
    import_diffusers_run::<B>(
        source,
        out,
        |_| TrainConfig::preset("mnist"),
        &Default::default(),
    )
    .map(|_| ())
}

/// The tensors of a safetensors file: name -> (dtype, shape, bytes).
fn tensors(path: &Path) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = format!("{:?}", view.dtype());
            (name, dtype, view.shape().to_vec(), view.data().to_vec())
        })
        .collect();
    all.sort();
    all
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Imports `case`, runs the imported net on the fixture's inputs and returns the largest
/// absolute differences from diffusers' output and from its `alphas_cumprod`.
fn parity(case: &str) -> (f32, f64) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    import(&fixture(case), &run).unwrap();
    let device = Default::default();
    let loaded = load_run::<Flex>(&run, CheckpointChoice::NewestReadable, true, &device).unwrap();
    let root = fixture(case);
    let io_bytes = std::fs::read(root.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io_bytes).unwrap();
    let x = io.tensor("x").unwrap();
    let x =
        Tensor::<Flex, 4>::from_data(TensorData::new(f32s(x.data()), x.shape().to_vec()), &device);
    let t = i64s(io.tensor("timesteps").unwrap().data());
    let t = Tensor::<Flex, 1, Int>::from_data(t.as_slice(), &device);
    let labels = io
        .tensor("labels")
        .ok()
        .map(|l| Tensor::<Flex, 1, Int>::from_data(i64s(l.data()).as_slice(), &device));
    let out = loaded.model.try_forward(x, t, labels).unwrap();
    let want = io.tensor("out").unwrap();
    assert_eq!(out.dims().to_vec(), want.shape().to_vec());
    let got = out.into_data().to_vec::<f32>().unwrap();
    let worst = got
        .iter()
        .zip(f32s(want.data()))
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    let alphas: Vec<f64> = io
        .tensor("alphas_cumprod")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let alpha_bar = loaded.schedule.alpha_bar();
    assert_eq!(alpha_bar.len(), alphas.len());
    let schedule_worst = alpha_bar
        .iter()
        .zip(&alphas)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    eprintln!("{case}: output max abs diff {worst:e}, alphas_cumprod {schedule_worst:e}");
    (worst, schedule_worst)
}

#[test]
fn ddpm_cifar10_layout_matches_diffusers() {
    let (out, schedule) = parity("ddpm-cifar10-tiny");
    assert!(out < 1e-4, "output differs by {out}");
    // diffusers keeps betas and alphas_cumprod in float32; ours are f64.
    assert!(schedule < 1e-6, "alphas_cumprod differs by {schedule}");
}

#[test]
fn conditional_scale_shift_attention_matches_diffusers() {
    let (out, schedule) = parity("attention-conditional-scale-shift");
    assert!(out < 1e-4, "output differs by {out}");
    // diffusers keeps betas and alphas_cumprod in float32; ours are f64.
    assert!(schedule < 1e-6, "alphas_cumprod differs by {schedule}");
}

#[test]
fn the_bin_pickle_imports_as_the_safetensors_file() {
    let (out, _) = parity("attention-conditional-bin");
    assert!(out < 1e-4, "output differs by {out}");
}

#[test]
fn import_then_export_gives_back_the_same_tensors_bit_for_bit() {
    for (case, weights) in [
        (
            "ddpm-cifar10-tiny",
            "unet/diffusion_pytorch_model.safetensors",
        ),
        (
            "attention-conditional-scale-shift",
            "diffusion_pytorch_model.safetensors",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        import(&fixture(case), &run).unwrap();
        let device = Default::default();
        let loaded =
            load_run::<Flex>(&run, CheckpointChoice::NewestReadable, false, &device).unwrap();
        let out = dir.path().join("export");
        export_diffusers_folder(&loaded.config, &loaded.model, &out).unwrap();
        let original = tensors(&fixture(case).join(weights));
        let exported = tensors(&out.join("diffusion_pytorch_model.safetensors"));
        let names = |t: &[(String, String, Vec<usize>, Vec<u8>)]| {
            t.iter().map(|(n, ..)| n.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&exported), names(&original), "{case}");
        for (a, b) in original.iter().zip(&exported) {
            assert!(a == b, "{case}: `{}` differs after the round trip", a.0);
        }
        // The exported folder imports again to the same run config.
        let again = dir.path().join("again");
        import(&out, &again).unwrap();
        let read = |p: &Path| TrainConfig::from_file(p.join("config.json")).unwrap();
        assert_eq!(read(&again), read(&run), "{case}");
    }
}

/// A copy of the conditional model folder in a fresh directory, for damaging.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(fixture("attention-conditional-scale-shift")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    (dir, copy)
}

/// Rewrites the copy's safetensors file with `edit` applied to its tensor list.
fn rewrite_weights(
    model: &Path,
    edit: impl FnOnce(&mut Vec<(String, String, Vec<usize>, Vec<u8>)>),
) {
    let file = model.join("diffusion_pytorch_model.safetensors");
    let mut all = tensors(&file);
    edit(&mut all);
    let views: Vec<(String, safetensors::tensor::TensorView)> = all
        .iter()
        .map(|(name, _, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &file).unwrap();
}

/// Imports the damaged copy: the error must name `needle`, and nothing may be left behind.
fn assert_refused(dir: &Path, model: &Path, needle: &str) {
    let out = dir.join("run");
    let err = import(model, &out).unwrap_err().to_string();
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(!err.contains('\n'), "not one line: {err}");
    assert!(!out.exists(), "{} was left behind", out.display());
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "model")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_folder_without_weights_is_refused() {
    let (dir, model) = model_copy();
    std::fs::remove_file(model.join("diffusion_pytorch_model.safetensors")).unwrap();
    assert_refused(dir.path(), &model, "has no weights");
    let empty = dir.path().join("model/empty");
    std::fs::create_dir(&empty).unwrap();
    let err = import(&empty, &dir.path().join("run")).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a diffusers model or pipeline folder")
    );
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named() {
    let (dir, model) = model_copy();
    rewrite_weights(&model, |all| all.retain(|(n, ..)| n != "conv_in.bias"));
    assert_refused(dir.path(), &model, "conv_in.bias");

    let (dir, model) = model_copy();
    rewrite_weights(&model, |all| {
        all.push(("extra.weight".into(), "F32".into(), vec![1], vec![0; 4]))
    });
    assert_refused(dir.path(), &model, "`extra.weight` has no counterpart");

    let (dir, model) = model_copy();
    rewrite_weights(&model, |all| {
        let t = all.iter_mut().find(|(n, ..)| n == "conv_out.bias").unwrap();
        t.2 = vec![1];
        t.3.truncate(4);
    });
    assert_refused(dir.path(), &model, "`conv_out.bias` has shape [1]");
}

#[test]
fn an_unsupported_option_or_a_truncated_file_is_one_line() {
    let (dir, model) = model_copy();
    let config = model.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"AttnDownBlock2D\"", "\"CrossAttnDownBlock2D\""),
    )
    .unwrap();
    assert_refused(dir.path(), &model, "`down_block_types`");

    let (dir, model) = model_copy();
    let scheduler = model.join("scheduler_config.json");
    let text = std::fs::read_to_string(&scheduler).unwrap();
    std::fs::write(&scheduler, text.replace("squaredcos_cap_v2", "exp")).unwrap();
    assert_refused(dir.path(), &model, "`beta_schedule`");

    let (dir, model) = model_copy();
    let weights = model.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(dir.path(), &model, "not a readable safetensors file");

    let (dir, model) = model_copy();
    std::fs::remove_file(model.join("diffusion_pytorch_model.safetensors")).unwrap();
    let bin =
        std::fs::read(fixture("attention-conditional-bin").join("diffusion_pytorch_model.bin"))
            .unwrap();
    std::fs::write(
        model.join("diffusion_pytorch_model.bin"),
        &bin[..bin.len() / 2],
    )
    .unwrap();
    assert_refused(dir.path(), &model, "diffusion_pytorch_model.bin");
}

#[test]
fn an_existing_target_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let err = import(&fixture("attention-conditional-scale-shift"), &run).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}
