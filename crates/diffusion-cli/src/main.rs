//! `diffusion-cli`: train, sample, visualize and inspect diffusion models from one command line.

mod args;
mod backend;
mod commands;
mod images;
mod init_image;
mod plot;
mod progress;
mod real_images;
mod stop;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Training allocates and frees tensors of a few megabytes hundreds of times a step. glibc
/// serves those with fresh `mmap`s, so each costs page faults and zeroing; mimalloc keeps
/// them in its own pages and hands them back (see the README's benchmark notes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3; libmimalloc-sys names the
/// options around it but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the OS. By default it purges pages
/// unused for a second, and a training step's activations (a different mix of sizes in the
/// forward and the backward pass) then come back as fresh pages that the kernel faults in and
/// zeroes: 33,000 page faults and about a tenth of the CPU time over 25 `mnist` steps, 540
/// with purging off. The process keeps its peak footprint until it exits, which is what a
/// training or sampling run needs anyway.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; any value is
    // valid for this option (-1 disables purging).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

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
    /// Measure sample quality: FD-classifier, accuracy, FID, KID, precision/recall, Inception
    /// Score, and the floor real images reach.
    Eval(commands::eval::EvalArgs),
    /// Plot the loss curves of one or several runs.
    Plot(commands::plot::PlotArgs),
    /// Show the configuration, parameter count and checkpoints of a preset or a run.
    Info(commands::info::InfoArgs),
    /// Measure training and sampling speed and peak memory (JSON; see `cargo xtask bench`).
    Bench(commands::bench::BenchArgs),
    /// Import a diffusers UNet2DModel folder (safetensors or .bin) as a run directory.
    ImportDiffusers(commands::import_diffusers::ImportDiffusersArgs),
    /// Write a run's network as a diffusers UNet2DModel folder (safetensors).
    Export(commands::export::ExportArgs),
    /// Print a noise schedule (betas, alpha_bar, SNR) as JSON or CSV, or plot it.
    Schedule(commands::schedule::ScheduleArgs),
}

fn main() -> ExitCode {
    die_quietly_on_closed_pipe();
    keep_freed_memory();
    init_logging();
    let cli = Cli::parse();
    let result = on_compute_thread(|| match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Sample(args) => commands::sample::run(args),
        Command::Forward(args) => commands::forward::run(args),
        Command::Denoise(args) => commands::denoise::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Schedule(args) => commands::schedule::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::ImportDiffusers(args) => commands::import_diffusers::run(args),
        Command::Export(args) => commands::export::run(args),
    });
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

/// Restores the default action of SIGPIPE, which Rust's runtime ignores: output piped into a
/// reader that stops early (`diffusion-cli info --run r | head`) then ends the process
/// quietly, as it does for other Unix tools, instead of `println!` panicking with a backtrace
/// or a command printing "Broken pipe" as its error.
#[allow(unsafe_code)]
fn die_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with a valid signal number and `SIG_DFL`, before any other thread
    // exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs `work` on a thread of rayon's global pool, the one the CPU backend computes on.
///
/// Each parallel tensor op called from outside the pool is handed to the pool while the
/// caller sleeps until it is done: with two cores, one wake-up per op across hundreds of
/// small ops per training step. Called from a pool thread, the op runs on that thread and
/// the others steal from it, with no hand-over: the kernel's scheduling and wake-ups went
/// from 6.5% to 4.1% of a training profile, and the `mnist` preset trains about 5% faster.
fn on_compute_thread<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // Pool threads get the main thread's stack size, not the 2 MiB of spawned threads. An
    // error means the pool already exists, which is fine.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    rayon::scope(|_| work())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_option_set_is_mimallocs_purge_delay() {
        // SAFETY: reading and writing integers in mimalloc's option table.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // mimalloc 3's purge delay defaults to 1000 ms (2's to 10); no neighbouring option
        // has either default, so a shifted index would show here.
        assert!(default == 1000 || default == 10, "option 15 is {default}");
        keep_freed_memory();
        let set = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(set, -1);
    }
}
