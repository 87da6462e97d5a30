//! Interop with diffusers: a `UNet2DModel` folder (model or pipeline, safetensors or `.bin`)
//! becomes a run directory, and a run becomes a folder that diffusers' `from_pretrained` loads.
//!
//! - [`folder`]: finding and reading the folder's configs and weights (burn-store).
//! - [`scheduler`]: `scheduler_config.json` to and from the schedule and prediction type.
//! - [`run`]: [`import_diffusers_run`] and [`export_diffusers_folder`], each written into a
//!   temporary sibling and renamed.
//!
//! The network's config mapping is `UNetConfig::from_diffusers_config` in diffusion-nets.

pub mod folder;
pub mod run;
pub mod scheduler;

pub use folder::{DiffusersModel, read_diffusers_folder};
pub use run::{ImportReport, export_diffusers_folder, import_diffusers_run};
pub use scheduler::{ImportedSchedule, schedule_from_diffusers, schedule_to_diffusers};
