//! `metrics.jsonl`: one JSON object per logged step, appended and flushed as training goes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::checkpoint::store::replace_file;
use crate::run_dir::RunDir;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// Optimizer steps completed.
    pub step: usize,
    /// Mean loss over the steps since the previous line (non-finite steps excluded).
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Global gradient norm before clipping, mean since the previous line.
    pub grad_norm: f64,
    /// EMA decay used by the last update.
    pub ema_decay: f64,
    /// Training throughput since the previous line.
    pub images_per_sec: f64,
    /// Training wall time of the run so far (across resumes), in seconds.
    pub wall_time_s: f64,
    /// Steps skipped so far for a non-finite loss or gradient.
    pub skipped_nonfinite: usize,
    /// Sample quality measured at this step (`eval_every`), on lines where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<crate::quality::Scores>,
}

/// Appends [`MetricsRecord`]s to a run's `metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    file: File,
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `run_dir/metrics.jsonl` for appending, first dropping every line after
    /// `resume_step` (steps logged after the checkpoint being resumed, which will be trained
    /// again) and any torn last line left by a kill.
    pub fn open(run_dir: &Path, resume_step: usize) -> Result<Self, TrainError> {
        let path = RunDir::new(run_dir).metrics_file();
        if path.exists() {
            let kept = read_metrics(&path)?
                .into_iter()
                .filter(|r| r.step <= resume_step)
                .map(|r| record_line(&r))
                .collect::<Result<String, _>>()?;
            replace_file(&path, kept.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { file, path })
    }

    /// Appends one line and flushes it.
    pub fn append(&mut self, record: &MetricsRecord) -> Result<(), TrainError> {
        let line = record_line(record)?;
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// One record as a line of `metrics.jsonl`; a failure is an error, never an empty line.
fn record_line(record: &MetricsRecord) -> Result<String, TrainError> {
    serde_json::to_string(record)
        .map(|json| json + "\n")
        .map_err(|e| TrainError::invalid("metrics", format!("cannot be written as JSON: {e}")))
}

/// Reads every well-formed line of a metrics file (unparsable lines are skipped).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRecord>, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if let Ok(record) = serde_json::from_str::<MetricsRecord>(&line) {
            out.push(record);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: usize) -> MetricsRecord {
        MetricsRecord {
            eval: None,
            step,
            loss: 0.5 / step as f64,
            lr: 1e-3,
            grad_norm: 1.5,
            ema_decay: 0.9,
            images_per_sec: 100.0,
            wall_time_s: step as f64,
            skipped_nonfinite: 0,
        }
    }

    #[test]
    fn appends_and_resume_truncates_later_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        for step in [10, 20, 30] {
            log.append(&record(step)).unwrap();
        }
        drop(log);
        let path = RunDir::new(dir.path()).metrics_file();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "step",
            "loss",
            "lr",
            "grad_norm",
            "ema_decay",
            "images_per_sec",
            "wall_time_s",
            "skipped_nonfinite",
        ] {
            assert!(first.get(key).is_some(), "{key}");
        }
        // a kill in the middle of a line
        std::fs::write(&path, text + "{\"step\": 4").unwrap();
        let mut log = MetricsLog::open(dir.path(), 20).unwrap();
        log.append(&record(30)).unwrap();
        let steps: Vec<usize> = read_metrics(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![10, 20, 30]);
    }
}
