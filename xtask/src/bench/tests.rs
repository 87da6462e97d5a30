//! Tests of the `bench` orchestration with fake children (`sh` scripts and closures): neither
//! Python nor a burn build is needed.

use std::cell::RefCell;

use super::*;

/// A result in the shape `diffusion-cli bench` prints.
fn result(implementation: &str, params: u64) -> RunResult {
    let json = format!(
        r#"{{"impl":"{implementation}","preset":"mnist","batch_size":32,"params":{params},
            "threads":2,"model":{{"base_channels":16}},"num_timesteps":1000,
            "train_images_per_sec":[100.0],"sample_images_per_sec":[10.0],"peak_rss_mib":null}}"#
    );
    RunResult::parse(&json, implementation).unwrap()
}

#[test]
fn missing_interpreter_skips_pytorch() {
    let torch = detect_torch(Path::new("/nonexistent/python3"));
    assert_eq!(
        torch,
        Torch::Skipped("interpreter `/nonexistent/python3` not found".into())
    );
}

#[test]
fn interpreter_that_cannot_import_skips_pytorch() {
    // `sh -c "import torch, diffusers"` fails like a Python without torch: exit status != 0.
    let Torch::Skipped(why) = detect_torch(Path::new("sh")) else {
        panic!("sh imported torch");
    };
    assert!(
        why.starts_with("`sh -c \"import torch, diffusers\"` failed: "),
        "{why}"
    );
}

#[test]
fn child_failure_quotes_the_end_of_its_stderr() {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "echo 'step 1/3\rstep 2/3' >&2; echo 'error: out of memory' >&2; exit 3",
    ]);
    let msg = run_child(&mut command, "`diffusion-cli bench`")
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "`diffusion-cli bench` failed (exit status: 3); the end of its stderr:\n  \
         step 2/3\n  error: out of memory"
    );
}

#[test]
fn silent_child_failure_says_so() {
    let msg = run_child(
        Command::new("sh").args(["-c", "exit 1"]),
        "the PyTorch twin",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        msg,
        "the PyTorch twin failed (exit status: 1) and printed nothing on stderr"
    );
}

#[test]
fn child_output_is_returned_and_unstartable_child_named() {
    let stdout = run_child(Command::new("sh").args(["-c", "echo '{}'"]), "echo").unwrap();
    assert_eq!(stdout, "{}\n");
    let msg = run_child(&mut Command::new("/nonexistent/diffusion-cli"), "ours")
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("cannot start ours"), "{msg}");
}

#[test]
fn rounds_alternate_which_side_goes_first() {
    let order = RefCell::new(Vec::new());
    let ours = || {
        order.borrow_mut().push("ours");
        Ok(result("ours", 268_017))
    };
    let twin = |reference: &RunResult| {
        assert_eq!(reference.model["base_channels"], 16);
        order.borrow_mut().push("twin");
        Ok(result("pytorch", 268_017))
    };
    let rounds = run_rounds(3, ours, Some(twin)).unwrap();
    assert_eq!((rounds.ours.len(), rounds.twin.len()), (3, 3));
    assert_eq!(
        order.into_inner(),
        ["ours", "twin", "twin", "ours", "ours", "twin"]
    );
}

#[test]
fn rounds_without_twin_run_ours_only() {
    let no_twin: Option<fn(&RunResult) -> anyhow::Result<RunResult>> = None;
    let rounds = run_rounds(2, || Ok(result("ours", 1)), no_twin).unwrap();
    assert_eq!((rounds.ours.len(), rounds.twin.len()), (2, 0));
}

#[test]
fn rounds_stop_at_a_parameter_count_mismatch() {
    let twin_runs = RefCell::new(0);
    let twin = |_: &RunResult| {
        *twin_runs.borrow_mut() += 1;
        Ok(result("pytorch", 268_000))
    };
    let err = run_rounds(3, || Ok(result("ours", 268_017)), Some(twin)).unwrap_err();
    assert!(
        err.to_string().starts_with("parameter counts differ"),
        "{err}"
    );
    assert_eq!(twin_runs.into_inner(), 1);
}

#[test]
fn a_failing_child_stops_the_rounds() {
    let twin = |_: &RunResult| -> anyhow::Result<RunResult> { bail!("twin crashed") };
    let err = run_rounds(2, || Ok(result("ours", 1)), Some(twin)).unwrap_err();
    assert_eq!(err.to_string(), "twin crashed");
}

#[test]
fn both_sides_get_the_same_measuring_flags() {
    let args = BenchArgs {
        preset: "mnist".into(),
        batch_size: 8,
        threads: 2,
        rounds: 1,
        train_steps: 5,
        warmup: 1,
        sample_batches: 2,
        ddim_steps: 20,
        no_torch: false,
        python: "python3".into(),
        json: None,
        skip_build: true,
    };
    assert_eq!(
        shared_flags(&args).join(" "),
        "--batch-size 8 --train-steps 5 --warmup 1 --sample-batches 2 --ddim-steps 20"
    );
}

#[test]
fn finds_the_executable_among_build_messages() {
    let messages = concat!(
        r#"{"reason":"compiler-artifact","target":{"name":"diffusion_nets"},"executable":null}"#,
        "\n",
        r#"{"reason":"compiler-artifact","target":{"name":"diffusion-cli"},"#,
        r#""executable":"/t/release/diffusion-cli"}"#,
        "\n",
        r#"{"reason":"build-finished","success":true}"#,
        "\n"
    );
    assert_eq!(
        executable_in_build_messages(messages, "diffusion-cli"),
        Some(PathBuf::from("/t/release/diffusion-cli"))
    );
    assert_eq!(executable_in_build_messages("", "diffusion-cli"), None);
}
