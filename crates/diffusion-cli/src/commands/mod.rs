//! One file per subcommand: its flags (clap) and its `run`.

pub mod bench;
pub mod denoise;
pub mod eval;
pub mod export;
pub mod forward;
pub mod import_diffusers;
pub mod info;
pub mod plot;
pub mod sample;
pub mod schedule;
pub mod train;
