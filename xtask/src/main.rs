//! Project tasks. `cargo xtask fetch-data --dataset mnist|fashion-mnist|cifar10|all` downloads
//! datasets into `data/<name>/`, verified against the SHA-256 table in [`table`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
        /// mnist, fashion-mnist, cifar10 or all.
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
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .join("data"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::FetchData {
        dataset,
        data_dir,
        mirror,
        force,
    } = cli.command;
    let specs = table::select(&dataset, &table::builtin_datasets())?;
    let options = FetchOptions {
        data_dir: data_dir.unwrap_or_else(default_data_dir),
        mirror: mirror.as_deref().map(Mirror::parse),
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
