//! Stopping and recovering the way schedulers and people do it: SIGINT, SIGTERM and a second
//! signal; damaged checkpoints; `--resume` with nothing to resume. Every wait is bounded.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{assert_one_line_error, assert_success, cli, stderr_lines_with, tiny_config, train};
use diffusion_train::checkpoint::{RunLock, list_checkpoints};
use serde_json::Value;

/// A training process whose standard error goes to a file.
struct Training {
    child: Child,
    stderr: PathBuf,
}

impl Training {
    /// `train --config CONFIG --run RUN` for 100,000 steps, with checkpoints only at step 0 and on stop.
    fn start(config: &Path, run: &Path) -> Self {
        let stderr = run.with_extension("stderr.txt");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("diffusion-cli"))
            .args([
                "train",
                "--max-steps",
                "100000",
                "--checkpoint-every",
                "100000",
            ])
            .arg("--config")
            .arg(config)
            .arg("--run")
            .arg(run)
            .env_remove("DIFFUSION_DATA")
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr }
    }

    /// Waits (at most two minutes) until `ready` holds, while the process runs.
    fn wait_until(&mut self, what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "exited before {what}: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[allow(unsafe_code)]
    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let result = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(result, 0, "kill failed");
    }

    /// Waits (at most two minutes) for the exit, killing the process if it does not come.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("no exit within two minutes: {}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logged_steps(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |m| m.lines().count())
}

fn newest_checkpoint(run: &Path) -> usize {
    list_checkpoints(run).unwrap().last().unwrap().0
}

/// Stops a fast run with `send` once a few steps are logged; it must save the step it was at,
/// exit 0, say how to continue, release the lock, and `--resume` must go on from there.
fn stop_saves_and_resume_goes_on(send: impl Fn(&Training)) {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let run = dir.path().join("run");
    let mut training = Training::start(&config, &run);
    training.wait_until("three logged steps", || logged_steps(&run) >= 3);
    send(&training);
    let status = training.wait_exit();
    let stderr = training.stderr_text();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("--resume"),
        "tells how to continue: {stderr}"
    );
    let newest = newest_checkpoint(&run);
    assert!(
        newest >= 3 && newest == logged_steps(&run),
        "checkpoint at step {newest}, {} steps logged",
        logged_steps(&run)
    );
    RunLock::acquire(&run).expect("the run lock is released");

    let out = cli()
        .args(["train", "--resume", "--max-steps"])
        .arg((newest + 2).to_string())
        .arg("--run")
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(logged_steps(&run), newest + 2);
}

#[test]
fn two_sigints_within_a_millisecond_are_one_request_and_save() {
    stop_saves_and_resume_goes_on(|training| {
        // What GNU timeout and a terminal do: one to the process, one to its group.
        training.signal(libc::SIGINT);
        training.signal(libc::SIGINT);
    });
}

#[test]
fn sigterm_saves_like_ctrl_c() {
    stop_saves_and_resume_goes_on(|training| training.signal(libc::SIGTERM));
}

#[test]
fn sighup_saves_like_ctrl_c() {
    stop_saves_and_resume_goes_on(|training| training.signal(libc::SIGHUP));
}

/// The tiny config with a slow preview after every step (64 images, 400 DDIM steps: seconds
/// even with the optimised dev profile), so that a stop request waits long enough for a second
/// one.
fn slow_preview_config(dir: &Path) -> PathBuf {
    let path = tiny_config(dir);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["sample_every"] = 1.into();
    config["preview"]["num_images"] = 64.into();
    config["preview"]["columns"] = 8.into();
    config["preview"]["ddim_steps"] = 400.into();
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

#[test]
fn a_second_sigint_after_the_grace_period_quits_at_once_without_saving() {
    let dir = tempfile::tempdir().unwrap();
    let config = slow_preview_config(dir.path());
    let run = dir.path().join("run");
    let mut training = Training::start(&config, &run);
    // The first preview is reported, and step 1's own stop check (right after the report) is
    // behind us: the request lands in step 2, whose preview (seconds long) it must wait for.
    // Signalling as soon as the PNG exists raced with the end of step 1 on a loaded machine.
    let stderr = run.with_extension("stderr.txt");
    training.wait_until("the first preview", || {
        std::fs::read_to_string(&stderr).is_ok_and(|text| text.contains("step 1: preview"))
    });
    std::thread::sleep(Duration::from_millis(250));
    training.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(1300));
    let asked = Instant::now();
    training.signal(libc::SIGINT);
    let status = training.wait_exit();
    let quit_after = asked.elapsed();
    let stderr = training.stderr_text();
    assert_eq!(status.code(), Some(130), "128 + SIGINT: {stderr}");
    assert!(stderr.contains("quitting without saving"), "{stderr}");
    assert!(
        quit_after < Duration::from_secs(5),
        "took {quit_after:?} to quit"
    );
    assert_eq!(newest_checkpoint(&run), 0, "nothing saved after step 0");
    RunLock::acquire(&run).expect("the run lock is released");
}

/// A run of 4 steps with checkpoints at 0, 2 and 4.
fn trained_run(dir: &Path) -> PathBuf {
    let config = tiny_config(dir);
    let run = dir.join("run");
    assert_success(&train(&config, &run, &[]));
    let steps: Vec<usize> = list_checkpoints(&run)
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(steps, vec![0, 2, 4]);
    run
}

#[test]
fn a_damaged_newest_checkpoint_is_passed_over_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let ema = run.join("checkpoints/step-00000004/ema.mpk");
    let bytes = std::fs::read(&ema).unwrap();
    let sample = |extra: &[&str]| {
        cli()
            .args(["sample", "-n", "2", "--steps", "2", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(dir.path().join("grid.png"))
            .args(extra)
            .output()
            .unwrap()
    };
    for damaged in [bytes[..bytes.len() / 3].to_vec(), vec![0u8; bytes.len()]] {
        std::fs::write(&ema, &damaged).unwrap();
        let out = sample(&[]);
        assert_success(&out);
        let warnings = stderr_lines_with(&out, "warning:");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("step-00000004") && warnings[0].contains("ema.mpk"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("using step 2"), "{warnings:?}");
        // --checkpoint names one and turns the fallback off
        assert_one_line_error(&sample(&["--checkpoint", "4"]), "ema.mpk");
        assert_success(&sample(&["--checkpoint", "2"]));
    }
    assert_one_line_error(&sample(&["--checkpoint", "3"]), "steps 0, 2, 4");

    // resuming passes over it too, and keeps it aside rather than deleting it
    let out = cli()
        .args(["train", "--resume", "--max-steps", "6", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("passing over checkpoint"), "{stderr}");
    assert_eq!(
        std::fs::read(run.join("checkpoints/step-00000004.damaged/ema.mpk")).unwrap(),
        vec![0u8; bytes.len()]
    );
    assert_eq!(newest_checkpoint(&run), 6);
    assert_eq!(
        logged_steps(&run),
        6,
        "steps 3 and 4 trained again, logged once each"
    );
}

#[test]
fn resume_with_nothing_to_resume_says_so_and_starts_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let run = dir.path().join("never-trained");
    let out = train(&config, &run, &["--resume", "--max-steps", "2"]);
    assert_success(&out);
    let notice = stderr_lines_with(&out, "nothing to resume");
    assert_eq!(notice.len(), 1, "{notice:?}");
    assert!(notice[0].contains("never-trained"), "{notice:?}");
    assert_eq!(newest_checkpoint(&run), 2);
}
