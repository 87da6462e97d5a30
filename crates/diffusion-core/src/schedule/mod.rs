//! Noise schedules: the beta sequence and everything derived from it, in f64 on the host,
//! computed once and shared by training and every sampler.

mod betas;
mod config;
mod noise_schedule;
mod transition;

pub use config::{BetaSchedule, ScheduleConfig, ScheduleError};
pub use noise_schedule::NoiseSchedule;
pub use transition::Transition;
