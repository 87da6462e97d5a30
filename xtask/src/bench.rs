//! `cargo xtask bench`: our training and sampling speed and peak memory next to the PyTorch twin
//! of the same network (`scripts/bench/torch_twin.py`), run alternately, with the ratio
//! ours / PyTorch of each figure. The twin runs only where `torch` and `diffusers` import; it
//! is optional and never part of CI.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

mod machine;
mod report;
mod results;

use report::{Setting, markdown, table};
use results::{Figures, RunResult, check_same_setup};

/// The twin, relative to the workspace root.
const TWIN_SCRIPT: &str = "scripts/bench/torch_twin.py";
/// How much of a child's standard error an error message quotes.
const STDERR_TAIL_LINES: usize = 8;

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Training preset to measure (assets/configs/<NAME>.json).
    #[arg(long, default_value = "mnist")]
    pub preset: String,
    /// Images per training step and per sampling batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Compute threads of each implementation (RAYON_NUM_THREADS for ours, torch's for the twin).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Rounds; each runs ours and the twin once, alternating which goes first.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Measured training steps per run.
    #[arg(long, default_value_t = 10)]
    pub train_steps: usize,
    /// Training steps before measuring, per run.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Measured sampling batches per run (after one warm-up batch).
    #[arg(long, default_value_t = 2)]
    pub sample_batches: usize,
    /// DDIM steps per sampling batch.
    #[arg(long, default_value_t = 50)]
    pub ddim_steps: usize,
    /// Measure ours only, even where PyTorch is installed.
    #[arg(long)]
    pub no_torch: bool,
    /// Python interpreter that runs the twin.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// Also write every run's raw result to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Use the release `diffusion-cli` already built instead of building it.
    #[arg(long)]
    pub skip_build: bool,
}

/// Whether the PyTorch column can be measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Torch {
    /// `torch` and `diffusers` import.
    Available,
    /// Skipped, and why.
    Skipped(String),
}

/// Checks that `python -c "import torch, diffusers"` succeeds; a missing interpreter or module
/// is a reason to skip, never an error.
pub fn detect_torch(python: &Path) -> Torch {
    let output = Command::new(python)
        .args(["-c", "import torch, diffusers"])
        .stdin(Stdio::null())
        .output();
    let shown = python.display();
    match output {
        Ok(out) if out.status.success() => Torch::Available,
        Ok(out) => Torch::Skipped(format!(
            "`{shown} -c \"import torch, diffusers\"` failed: {}",
            last_line(&String::from_utf8_lossy(&out.stderr)).unwrap_or("no message")
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Torch::Skipped(format!("interpreter `{shown}` not found"))
        }
        Err(e) => Torch::Skipped(format!("cannot run `{shown}`: {e}")),
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// Runs `command`, passing its standard error through, and returns its standard output.
/// A failure names the command and quotes the end of its standard error.
pub fn run_child(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {what} ({:?})", command.get_program()))?;
    let mut stderr = child.stderr.take().context("child stderr was not piped")?;
    // Forwarded as it comes, so that progress shows, and kept for the error message.
    // (`eprint!` rather than writing to io::stderr, so that tests capture it.)
    let echo = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            eprint!("{}", String::from_utf8_lossy(&buf[..n]));
            kept.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)
            .with_context(|| format!("reading the output of {what}"))?;
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    let stderr = echo.join().unwrap_or_default();
    if !status.success() {
        // A progress line redrawn with `\r` counts as its last state.
        let lines: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.rsplit('\r').next())
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.is_empty() {
            bail!("{what} failed ({status}) and printed nothing on stderr");
        }
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n  ");
        bail!("{what} failed ({status}); the end of its stderr:\n  {tail}");
    }
    Ok(stdout)
}

/// The runs of both implementations, in the order they ran within each implementation.
#[derive(Debug, Default)]
pub struct Rounds {
    /// Our runs.
    pub ours: Vec<RunResult>,
    /// The twin's runs (empty when it was skipped).
    pub twin: Vec<RunResult>,
}

/// Runs `rounds` rounds: ours alone, or ours and the twin, ours first in even rounds and the
/// twin first in odd ones (the first round always starts with ours, whose result tells the
/// twin which network to build). Every twin result is checked against our first.
pub fn run_rounds(
    rounds: usize,
    mut ours: impl FnMut() -> anyhow::Result<RunResult>,
    mut twin: Option<impl FnMut(&RunResult) -> anyhow::Result<RunResult>>,
) -> anyhow::Result<Rounds> {
    let mut done = Rounds::default();
    for round in 0..rounds {
        eprintln!("bench: round {}/{rounds}", round + 1);
        let twin_first = round % 2 == 1 && twin.is_some();
        if !twin_first {
            done.ours.push(ours()?);
        }
        if let Some(twin) = twin.as_mut() {
            let reference = &done.ours[0];
            let result = twin(reference)?;
            check_same_setup(reference, &result)?;
            done.twin.push(result);
        }
        if twin_first {
            done.ours.push(ours()?);
        }
    }
    Ok(done)
}

/// Builds `diffusion-cli` in release mode and returns the executable cargo reports.
fn build_cli(root: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("bench: cargo build --release -p diffusion-cli");
    let stdout = run_child(
        Command::new(cargo())
            .args(["build", "--release", "-p", "diffusion-cli"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(root),
        "`cargo build --release -p diffusion-cli`",
    )?;
    executable_in_build_messages(&stdout, "diffusion-cli")
        .context("`cargo build` reported no diffusion-cli executable")
}

/// The executable of binary `name` among cargo's JSON build messages.
fn executable_in_build_messages(stdout: &str, name: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// The release `diffusion-cli` in cargo's target directory (honours CARGO_TARGET_DIR).
fn locate_cli(root: &Path) -> anyhow::Result<PathBuf> {
    let stdout = run_child(
        Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(root),
        "`cargo metadata`",
    )?;
    let metadata: serde_json::Value =
        serde_json::from_str(&stdout).context("parsing `cargo metadata` output")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` reported no target_directory")?;
    let exe = Path::new(target_dir)
        .join("release")
        .join(format!("diffusion-cli{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        bail!(
            "no release build at {}: run `cargo xtask bench` without --skip-build",
            exe.display()
        );
    }
    Ok(exe)
}

/// The cargo that runs us (`cargo xtask` sets CARGO), else the one on PATH.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn run_ours(cli: &Path, args: &BenchArgs) -> anyhow::Result<RunResult> {
    let what = "`diffusion-cli bench`";
    let stdout = run_child(
        Command::new(cli)
            .arg("bench")
            .args(["--preset", &args.preset])
            .args(shared_flags(args))
            .env("RAYON_NUM_THREADS", args.threads.to_string()),
        what,
    )?;
    RunResult::parse(&stdout, what)
}

fn run_twin(
    python: &Path,
    script: &Path,
    model_file: &Path,
    reference: &RunResult,
    args: &BenchArgs,
) -> anyhow::Result<RunResult> {
    let what = "the PyTorch twin";
    let model = serde_json::to_string_pretty(&reference.model)?;
    std::fs::write(model_file, model)
        .with_context(|| format!("writing {}", model_file.display()))?;
    let stdout = run_child(
        Command::new(python)
            .arg(script)
            .arg("--model-config")
            .arg(model_file)
            .args(["--preset", &args.preset])
            .args(shared_flags(args))
            .args(["--threads", &args.threads.to_string()])
            .args(["--num-timesteps", &reference.num_timesteps.to_string()])
            // Fails fast; `run_rounds` checks the count again whatever the twin does.
            .args(["--expect-params", &reference.params.to_string()]),
        what,
    )?;
    RunResult::parse(&stdout, what)
}

/// The measuring flags both sides take.
fn shared_flags(args: &BenchArgs) -> Vec<String> {
    [
        ("--batch-size", args.batch_size),
        ("--train-steps", args.train_steps),
        ("--warmup", args.warmup),
        ("--sample-batches", args.sample_batches),
        ("--ddim-steps", args.ddim_steps),
    ]
    .iter()
    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
    .collect()
}

/// `cargo xtask bench`.
pub fn run(args: &BenchArgs, root: &Path) -> anyhow::Result<()> {
    for (flag, value) in [
        ("--batch-size", args.batch_size),
        ("--threads", args.threads),
        ("--rounds", args.rounds),
        ("--train-steps", args.train_steps),
        ("--sample-batches", args.sample_batches),
        ("--ddim-steps", args.ddim_steps),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    let cli = if args.skip_build {
        locate_cli(root)?
    } else {
        build_cli(root)?
    };
    if let Some(busy) = machine::busy_fraction(Duration::from_secs(1)).filter(|b| *b > 0.25) {
        println!(
            "warning: the CPUs are {:.0}% busy before the benchmark starts; another process \
             will slow both sides down and make the figures noisy",
            100.0 * busy
        );
    }
    let torch = if args.no_torch {
        Torch::Skipped("--no-torch".into())
    } else {
        detect_torch(&args.python)
    };
    if let Torch::Skipped(why) = &torch {
        println!("PyTorch column skipped: {why}");
    }
    let script = root.join(TWIN_SCRIPT);
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let model_file = scratch.path().join("model.json");
    let twin = (torch == Torch::Available).then_some(|reference: &RunResult| {
        run_twin(&args.python, &script, &model_file, reference, args)
    });
    let rounds = run_rounds(args.rounds, || run_ours(&cli, args), twin)?;

    let ours = Figures::pool(&rounds.ours).context("no run of ours")?;
    let twin = Figures::pool(&rounds.twin);
    let first = &rounds.ours[0];
    let setting = Setting {
        cpu: machine::cpu_model(),
        cores: machine::cores(),
        threads: args.threads,
        date: time::OffsetDateTime::now_utc().date().to_string(),
        preset: args.preset.clone(),
        batch_size: args.batch_size,
        params: first.params,
        ddim_steps: args.ddim_steps,
        rounds: args.rounds,
    };
    if first.threads != args.threads {
        println!(
            "note: ours reports {} threads, not the {} asked for",
            first.threads, args.threads
        );
    }
    let skipped = match &torch {
        Torch::Skipped(why) => Some(why.as_str()),
        Torch::Available => None,
    };
    println!();
    let twin_or_why = twin.as_ref().ok_or(skipped.unwrap_or("no run"));
    print!("{}", table(&setting, &ours, twin_or_why));
    println!("\nMarkdown:\n{}", markdown(&setting, &ours, twin.as_ref()));
    if let Some(path) = &args.json {
        write_raw(path, &setting, &rounds, skipped)?;
        println!("raw results written to {}", path.display());
    }
    Ok(())
}

/// Every run's result, with the setting, as JSON.
fn write_raw(
    path: &Path,
    setting: &Setting,
    rounds: &Rounds,
    pytorch_skipped: Option<&str>,
) -> anyhow::Result<()> {
    let raw = serde_json::json!({
        "cpu": setting.cpu,
        "cores": setting.cores,
        "threads": setting.threads,
        "date": setting.date,
        "rounds": setting.rounds,
        "ours": rounds.ours,
        "pytorch": rounds.twin,
        "pytorch_skipped": pytorch_skipped,
    });
    std::fs::write(path, serde_json::to_string_pretty(&raw)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
