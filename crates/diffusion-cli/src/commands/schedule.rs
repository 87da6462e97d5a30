//! `diffusion-cli schedule`: print a noise schedule as JSON or CSV.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use diffusion_core::schedule::{NoiseSchedule, ScheduleConfig};
use serde::Serialize;

use crate::args::ScheduleFlags;
use crate::plot::{LinePlot, Series, write_line_plot};

/// Output formats of `schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// one object with arrays named as in diffusers (betas, alphas_cumprod, ...)
    Json,
    /// one row per timestep: t,beta,alpha_bar,snr
    Csv,
}

/// Print a noise schedule.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also draw alpha_bar, its square root and beta against t into this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

#[derive(Serialize)]
struct ScheduleJson<'a> {
    config: &'a ScheduleConfig,
    betas: &'a [f64],
    alphas: &'a [f64],
    alphas_cumprod: &'a [f64],
    snr: &'a [f64],
    posterior_variance: &'a [f64],
}

pub fn run(args: ScheduleArgs) -> Result<()> {
    let config = args.schedule.apply(ScheduleConfig::new());
    let schedule = config.init()?;
    let mut text = Vec::new();
    match args.format {
        Format::Json => write_json(&config, &schedule, &mut text)?,
        Format::Csv => write_csv(&schedule, &mut text)?,
    }
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => io::stdout().lock().write_all(&text)?,
    }
    if let Some(path) = &args.plot {
        plot_schedule(path, &config, &schedule)?;
    }
    Ok(())
}

fn write_json(
    config: &ScheduleConfig,
    schedule: &NoiseSchedule,
    out: &mut impl Write,
) -> Result<()> {
    let doc = ScheduleJson {
        config,
        betas: schedule.betas(),
        alphas: schedule.alphas(),
        alphas_cumprod: schedule.alpha_bar(),
        snr: schedule.snr(),
        posterior_variance: schedule.posterior_variance(),
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}

fn write_csv(schedule: &NoiseSchedule, out: &mut impl Write) -> Result<()> {
    writeln!(out, "t,beta,alpha_bar,snr")?;
    let rows = schedule
        .betas()
        .iter()
        .zip(schedule.alpha_bar())
        .zip(schedule.snr());
    for (t, ((beta, alpha_bar), snr)) in rows.enumerate() {
        // `{:?}` prints the shortest text that reads back to the same f64.
        writeln!(out, "{t},{beta:?},{alpha_bar:?},{snr:?}")?;
    }
    Ok(())
}

fn plot_schedule(
    path: &std::path::Path,
    config: &ScheduleConfig,
    schedule: &NoiseSchedule,
) -> Result<()> {
    let curve = |name: &str, values: &[f64], f: fn(f64) -> f64| Series {
        name: name.to_string(),
        points: values
            .iter()
            .enumerate()
            .map(|(t, &v)| (t as f64, f(v)))
            .collect(),
    };
    let title = format!(
        "{:?} schedule, T = {}",
        config.schedule, config.num_timesteps
    );
    let plot = LinePlot {
        title: &title,
        x_label: "timestep t",
        y_label: "value",
        log_y: false,
        series: vec![
            curve("alpha_bar", schedule.alpha_bar(), |v| v),
            curve("sqrt(alpha_bar)", schedule.alpha_bar(), f64::sqrt),
            curve("sqrt(1 - alpha_bar)", schedule.alpha_bar(), |v| {
                (1.0 - v).sqrt()
            }),
            curve("beta", schedule.betas(), |v| v),
        ],
    };
    write_line_plot(path, &plot)
}
