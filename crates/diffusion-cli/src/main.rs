//! `diffusion-cli`: train, sample, visualize and inspect diffusion models from one command line.

mod backend;
mod commands;
mod plot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Train and sample image diffusion models (DDPM, DDIM, DPM-Solver++) on Burn.
#[derive(Debug, Parser)]
#[command(name = "diffusion-cli", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a noise schedule (betas, alpha_bar, SNR) as JSON or CSV, or plot it.
    Schedule(commands::schedule::ScheduleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schedule(args) => commands::schedule::run(args),
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
