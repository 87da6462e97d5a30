//! `diffusion-cli`: train, sample, visualize and inspect diffusion models from one command line.

mod backend;
mod commands;
mod images;
mod plot;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Training allocates and frees tensors of a few megabytes hundreds of times a step. glibc
/// serves those with fresh `mmap`s, so each costs page faults and zeroing; mimalloc keeps
/// them in its own pages and hands them back (see the README's benchmark notes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Train and sample image diffusion models (DDPM, DDIM, DPM-Solver++) on Burn.
#[derive(Debug, Parser)]
#[command(name = "diffusion-cli", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model (default: the mnist preset on the bundled MNIST sample, CPU).
    Train(commands::train::TrainArgs),
    /// Generate images from a trained run: grid, individual PNGs, GIF, progressive strip.
    Sample(commands::sample::SampleArgs),
    /// The forward process on a real image: a strip of x_t at several t, and a GIF.
    Forward(commands::forward::ForwardArgs),
    /// Noise real images to t, denoise them from there, and compare (MSE, PSNR).
    Denoise(commands::denoise::DenoiseArgs),
    /// Plot the loss curves of one or several runs.
    Plot(commands::plot::PlotArgs),
    /// Show the configuration, parameter count and checkpoints of a preset or a run.
    Info(commands::info::InfoArgs),
    /// Measure training and sampling speed and peak memory (JSON; see `cargo xtask bench`).
    Bench(commands::bench::BenchArgs),
    /// Print a noise schedule (betas, alpha_bar, SNR) as JSON or CSV, or plot it.
    Schedule(commands::schedule::ScheduleArgs),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Sample(args) => commands::sample::run(args),
        Command::Forward(args) => commands::forward::run(args),
        Command::Denoise(args) => commands::denoise::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Schedule(args) => commands::schedule::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, the whole chain of causes, no backtrace: user mistakes are not crashes.
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Library logs go to standard error; `RUST_LOG=info` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
