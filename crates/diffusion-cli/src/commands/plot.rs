//! `diffusion-cli plot`: loss curves of one or several runs, to compare architectures.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use diffusion_train::RunDir;
use diffusion_train::metrics::read_metrics;
use diffusion_train::quality::Scores;

use crate::plot::{LinePlot, Series, write_line_plot, write_line_plots};

/// The quality metrics `plot` draws: distances, where lower is better (accuracy is a fraction
/// on another scale and stays in metrics.jsonl).
const QUALITY: [(&str, fn(&Scores) -> Option<f64>); 2] =
    [("FD-classifier", |s| s.fd_classifier), ("FID", |s| s.fid)];

/// Plot the training loss of runs from their metrics.jsonl, and next to it the sample quality
/// measured during training (`train --eval-every`) where there is any.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories (each with a metrics.jsonl).
    #[arg(long, num_args = 1.., required = true, value_name = "DIR")]
    pub runs: Vec<PathBuf>,
    /// PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Moving-average window over logged points (1 = raw).
    #[arg(long, default_value_t = 5)]
    pub smooth: usize,
    /// Linear instead of logarithmic loss axis.
    #[arg(long)]
    pub linear: bool,
}

pub fn run(args: PlotArgs) -> Result<()> {
    let mut series = Vec::with_capacity(args.runs.len());
    let mut quality: Vec<Series> = Vec::new();
    let mut quality_n = Vec::new();
    for run in &args.runs {
        let path = RunDir::new(run).metrics_file();
        if !path.is_file() {
            bail!(
                "{} not found: is {} a run directory written by `train`?",
                path.display(),
                run.display()
            );
        }
        let records = read_metrics(&path).with_context(|| format!("reading {}", path.display()))?;
        let points: Vec<(f64, f64)> = records.iter().map(|r| (r.step as f64, r.loss)).collect();
        let name = run.file_name().map_or_else(
            || run.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for (metric, get) in QUALITY {
            let measured: Vec<(f64, f64)> = records
                .iter()
                .filter_map(|r| Some((r.step as f64, get(r.eval.as_ref()?)?)))
                .collect();
            if !measured.is_empty() {
                quality.push(Series {
                    name: format!("{name}: {metric}"),
                    points: measured,
                });
            }
        }
        quality_n.extend(records.iter().filter_map(|r| r.eval.as_ref().map(|e| e.n)));
        series.push(Series {
            name,
            points: moving_average(&points, args.smooth.max(1)),
        });
    }
    let plot = LinePlot {
        title: "training loss",
        x_label: "optimizer step",
        y_label: "loss",
        log_y: !args.linear,
        series,
    };
    crate::images::ensure_parent(&args.out)?;
    if quality.is_empty() {
        write_line_plot(&args.out, &plot)?;
    } else {
        quality_n.sort_unstable();
        quality_n.dedup();
        let counts: Vec<String> = quality_n.iter().map(usize::to_string).collect();
        let title = format!("sample quality (n = {})", counts.join(", "));
        let quality = LinePlot {
            title: &title,
            x_label: "optimizer step",
            y_label: "distance (lower is better)",
            log_y: !args.linear,
            series: quality,
        };
        write_line_plots(&args.out, &[plot, quality])?;
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Trailing moving average of the y values; non-finite points are skipped.
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, y)| y.is_finite())
        .collect();
    (0..finite.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(window);
            let slice = &finite[from..=i];
            (
                finite[i].0,
                slice.iter().map(|p| p.1).sum::<f64>() / slice.len() as f64,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing_and_skips_nan() {
        let points = [(1.0, 1.0), (2.0, 3.0), (3.0, f64::NAN), (4.0, 5.0)];
        assert_eq!(
            moving_average(&points, 2),
            vec![(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
        );
        assert_eq!(moving_average(&points, 1).len(), 3);
    }
}
