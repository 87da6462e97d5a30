//! Project tasks. `cargo xtask fetch-data --dataset mnist|fashion-mnist|cifar10|inception-fid|all`
//! downloads datasets (and pytorch-fid's Inception weights) into `data/<name>/`, verified against
//! the SHA-256 table in [`table`];
//! `cargo xtask bench` compares our training and sampling speed with a PyTorch twin ([`bench`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod bench;
mod download;
mod fetch;
mod table;
#[cfg(test)]
mod test_server;

use fetch::{FetchOptions, Mirror, Outcome, fetch_dataset};

/// Environment variable overriding the default data directory; the training side reads it too.
const DATA_DIR_ENV: &str = "DIFFUSION_DATA";

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download and verify a dataset into <data-dir>/<name>/.
    FetchData {
        /// mnist, fashion-mnist, cifar10, inception-fid (pytorch-fid's Inception weights) or all.
        #[arg(long)]
        dataset: String,
        /// Where datasets go [default: $DIFFUSION_DATA, else data/ in the workspace root].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A local directory or a base URL holding the same file names.
        #[arg(long)]
        mirror: Option<String>,
        /// Fetch again even when the dataset is already complete.
        #[arg(long)]
        force: bool,
    },
    /// Measure training and DDIM sampling speed and peak memory of a preset, next to a
    /// PyTorch twin of the same network when `torch` and `diffusers` import.
    Bench(bench::BenchArgs),
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("data"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::FetchData {
            dataset,
            data_dir,
            mirror,
            force,
        } => fetch_data(&dataset, data_dir, mirror.as_deref(), force),
        Command::Bench(args) => bench::run(&args, workspace_root()),
    }
}

fn fetch_data(
    dataset: &str,
    data_dir: Option<PathBuf>,
    mirror: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let specs = table::select(dataset, &table::builtin_datasets())?;
    let options = FetchOptions {
        data_dir: data_dir.unwrap_or_else(default_data_dir),
        mirror: mirror.map(Mirror::parse),
        force,
        timeout: Duration::from_secs(30),
        env_proxy: true,
        verbose: true,
    };
    for spec in &specs {
        let dir = options.data_dir.join(&spec.name);
        match fetch_dataset(spec, &options)? {
            Outcome::AlreadyPresent => println!(
                "{}: already complete in {}, nothing to do (--force fetches it again)",
                spec.name,
                dir.display()
            ),
            Outcome::Fetched => {
                println!("{}: fetched and verified in {}", spec.name, dir.display())
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` keeps anyhow's context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
