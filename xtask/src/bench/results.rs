//! What `cargo xtask bench` reads: the result of one benchmark run (the JSON that both
//! `diffusion-cli bench` and `scripts/bench/torch_twin.py` print), and the pooled medians of
//! one implementation's runs.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One run of one implementation, as printed on its standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Which implementation measured: `burn-diffusion (cpu)`, `pytorch 2.x`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Training preset (or, for the twin, the name it was given).
    pub preset: String,
    /// Images per training step and per sampling batch.
    pub batch_size: usize,
    /// Parameter count of the network.
    pub params: u64,
    /// Threads the implementation computed with.
    pub threads: usize,
    /// The network, as our `UNetConfig` JSON; the twin is built from it.
    pub model: serde_json::Value,
    /// Length of the noise schedule.
    pub num_timesteps: usize,
    /// Images/s of each measured training step.
    pub train_images_per_sec: Vec<f64>,
    /// Images/s of each measured sampling batch (whole DDIM runs).
    pub sample_images_per_sec: Vec<f64>,
    /// Peak resident set size of the process, when the platform reports it.
    pub peak_rss_mib: Option<f64>,
}

impl RunResult {
    /// Parses the standard output of `who`, which must be one JSON object with at least one
    /// positive, finite figure per kind.
    pub fn parse(stdout: &str, who: &str) -> anyhow::Result<Self> {
        let result: Self = serde_json::from_str(stdout.trim()).with_context(|| {
            let start: String = stdout.trim().chars().take(200).collect();
            format!("{who} did not print one result JSON object; its output began: {start:?}")
        })?;
        for (name, values) in [
            ("train_images_per_sec", &result.train_images_per_sec),
            ("sample_images_per_sec", &result.sample_images_per_sec),
        ] {
            if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                bail!("{who} reported {name} = {values:?}; expected positive, finite figures");
            }
        }
        Ok(result)
    }
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// One implementation's figures over all its rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// `impl` of its runs.
    pub implementation: String,
    /// Median images/s over every measured training step of every round.
    pub train: f64,
    /// Median images/s over every measured sampling batch of every round.
    pub sample: f64,
    /// The largest peak RSS of the rounds, if any round reported one.
    pub peak_rss_mib: Option<f64>,
    /// How many training steps the median pools.
    pub train_samples: usize,
    /// How many sampling batches the median pools.
    pub sample_samples: usize,
}

impl Figures {
    /// Pools the runs of one implementation; `None` when there are none.
    pub fn pool(runs: &[RunResult]) -> Option<Self> {
        let train: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.train_images_per_sec.iter().copied())
            .collect();
        let sample: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.sample_images_per_sec.iter().copied())
            .collect();
        Some(Self {
            implementation: runs.first()?.implementation.clone(),
            train: median(&train)?,
            sample: median(&sample)?,
            peak_rss_mib: runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max),
            train_samples: train.len(),
            sample_samples: sample.len(),
        })
    }
}

/// Fails when the twin did not build the same network, or measured another batch size.
pub fn check_same_setup(ours: &RunResult, twin: &RunResult) -> anyhow::Result<()> {
    if ours.params != twin.params {
        bail!(
            "parameter counts differ: ours ({}) has {}, the PyTorch twin ({}) has {}; the twin \
             does not build the same network: fix the mapping in scripts/bench/torch_twin.py",
            ours.implementation,
            ours.params,
            twin.implementation,
            twin.params
        );
    }
    if ours.batch_size != twin.batch_size {
        bail!(
            "batch sizes differ: ours {}, the PyTorch twin {}",
            ours.batch_size,
            twin.batch_size
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output in the shape `diffusion-cli bench` prints (the contract of the two sides).
    const OURS_JSON: &str = r#"{"impl":"burn-diffusion (cpu)","preset":"mnist",
        "batch_size":32,"params":268017,"threads":2,
        "model":{"in_channels":1,"image_size":28,"base_channels":16,"variant":"residual-attention"},
        "num_timesteps":1000,"train_images_per_sec":[100.0,110.0,90.0],
        "sample_images_per_sec":[10.0,12.0],"peak_rss_mib":123.4}"#;

    fn run(implementation: &str, train: &[f64], sample: &[f64], rss: Option<f64>) -> RunResult {
        RunResult {
            implementation: implementation.into(),
            train_images_per_sec: train.to_vec(),
            sample_images_per_sec: sample.to_vec(),
            peak_rss_mib: rss,
            ..RunResult::parse(OURS_JSON, "test").unwrap()
        }
    }

    #[test]
    fn parses_the_contract_json_and_a_null_rss() {
        let r = RunResult::parse(OURS_JSON, "ours").unwrap();
        assert_eq!(r.implementation, "burn-diffusion (cpu)");
        assert_eq!((r.batch_size, r.params, r.threads), (32, 268_017, 2));
        assert_eq!(r.train_images_per_sec, vec![100.0, 110.0, 90.0]);
        assert_eq!(r.peak_rss_mib, Some(123.4));
        assert_eq!(r.model["base_channels"], 16);
        let no_rss = OURS_JSON.replace("123.4", "null");
        assert_eq!(
            RunResult::parse(&no_rss, "ours").unwrap().peak_rss_mib,
            None
        );
    }

    #[test]
    fn bad_output_is_an_error_naming_the_producer() {
        let err = RunResult::parse("Segmentation fault", "`diffusion-cli bench`").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("`diffusion-cli bench` did not print one result"),
            "{msg}"
        );
        assert!(msg.contains("\"Segmentation fault\""), "{msg}");
        let missing = OURS_JSON.replace("\"params\":268017,", "");
        let msg = format!("{:#}", RunResult::parse(&missing, "twin").unwrap_err());
        assert!(msg.contains("missing field `params`"), "{msg}");
        let empty = OURS_JSON.replace("[10.0,12.0]", "[]");
        let msg = RunResult::parse(&empty, "twin").unwrap_err().to_string();
        assert_eq!(
            msg,
            "twin reported sample_images_per_sec = []; expected positive, finite figures"
        );
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn figures_pool_steps_across_rounds() {
        let runs = [
            run("ours", &[1.0, 2.0], &[10.0], Some(100.0)),
            run("ours", &[3.0, 100.0], &[20.0, 30.0], Some(150.0)),
        ];
        let f = Figures::pool(&runs).unwrap();
        // Pooled [1, 2, 3, 100]: the median is not the median of the per-round medians.
        assert_eq!((f.train, f.sample), (2.5, 20.0));
        assert_eq!(f.peak_rss_mib, Some(150.0));
        assert_eq!((f.train_samples, f.sample_samples), (4, 3));
        assert_eq!(Figures::pool(&[]), None);
        let no_rss = Figures::pool(&[run("ours", &[1.0], &[1.0], None)]).unwrap();
        assert_eq!(no_rss.peak_rss_mib, None);
    }

    #[test]
    fn parameter_count_mismatch_is_an_error() {
        let ours = run("burn-diffusion (cpu)", &[1.0], &[1.0], None);
        let twin = RunResult {
            params: 268_000,
            ..run("pytorch 2.15.0", &[1.0], &[1.0], None)
        };
        let msg = check_same_setup(&ours, &twin).unwrap_err().to_string();
        assert!(
            msg.starts_with(
                "parameter counts differ: ours (burn-diffusion (cpu)) has 268017, \
                 the PyTorch twin (pytorch 2.15.0) has 268000"
            ),
            "{msg}"
        );
        assert!(msg.contains("scripts/bench/torch_twin.py"), "{msg}");
        check_same_setup(&ours, &ours.clone()).unwrap();
    }
}
