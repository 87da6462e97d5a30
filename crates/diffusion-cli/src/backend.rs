//! The only file that names concrete backends. Everything else is generic over
//! `B: AutodiffBackend` and receives its device from [`dispatch`].

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::backend::AutodiffBackend;

/// Where to run, as given by `--device cpu|wgpu|cuda[:N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Flex: pure Rust, SIMD and rayon; always compiled in.
    #[default]
    Cpu,
    /// WGPU (Vulkan, Metal, DX12); needs `--features wgpu`.
    Wgpu(Option<usize>),
    /// CUDA; needs `--features cuda`.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, index) = match s.split_once(':') {
            Some((name, index)) => {
                let index = index
                    .parse::<usize>()
                    .map_err(|_| format!("device index `{index}` is not a non-negative integer"))?;
                (name, Some(index))
            }
            None => (s, None),
        };
        match (name.to_ascii_lowercase().as_str(), index) {
            ("cpu" | "flex", None) => Ok(Self::Cpu),
            ("cpu" | "flex", Some(_)) => Err("the cpu device takes no index".into()),
            ("wgpu", index) => Ok(Self::Wgpu(index)),
            ("cuda", index) => Ok(Self::Cuda(index.unwrap_or(0))),
            _ => Err(format!(
                "unknown device `{s}`: expected cpu, wgpu, wgpu:N, cuda or cuda:N"
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A piece of work that runs on whichever backend the user picked.
pub trait BackendTask {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Fails early, before any work, when `choice` names a backend this binary was built without.
pub fn ensure_available(choice: DeviceChoice) -> Result<()> {
    match choice {
        DeviceChoice::Cpu => Ok(()),
        DeviceChoice::Wgpu(_) if cfg!(feature = "wgpu") => Ok(()),
        DeviceChoice::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
        DeviceChoice::Wgpu(_) => bail!(
            "this binary was built without WGPU support: rebuild with `cargo run --release -p diffusion-cli --features wgpu -- ...`"
        ),
        DeviceChoice::Cuda(_) => bail!(
            "this binary was built without CUDA support: rebuild with `cargo run --release -p diffusion-cli --features cuda -- ...`"
        ),
    }
}

/// Runs `task` on the backend named by `choice`, or explains which cargo feature is missing.
pub fn dispatch<T: BackendTask>(choice: DeviceChoice, task: T) -> Result<T::Output> {
    match choice {
        DeviceChoice::Cpu => task
            .run::<burn::backend::Autodiff<burn::backend::Flex>>(burn::backend::flex::FlexDevice),
        DeviceChoice::Wgpu(index) => run_wgpu(index, task),
        DeviceChoice::Cuda(index) => run_cuda(index, task),
    }
}

#[cfg(feature = "wgpu")]
fn run_wgpu<T: BackendTask>(index: Option<usize>, task: T) -> Result<T::Output> {
    use burn::backend::wgpu::WgpuDevice;
    let device = match index {
        None => WgpuDevice::DefaultDevice,
        Some(i) => WgpuDevice::DiscreteGpu(i),
    };
    task.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(device)
}

#[cfg(not(feature = "wgpu"))]
fn run_wgpu<T: BackendTask>(index: Option<usize>, _task: T) -> Result<T::Output> {
    ensure_available(DeviceChoice::Wgpu(index)).map(|()| unreachable!("checked above"))
}

#[cfg(feature = "cuda")]
fn run_cuda<T: BackendTask>(index: usize, task: T) -> Result<T::Output> {
    let device = burn::backend::cuda::CudaDevice { index };
    task.run::<burn::backend::Autodiff<burn::backend::Cuda>>(device)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<T: BackendTask>(index: usize, _task: T) -> Result<T::Output> {
    ensure_available(DeviceChoice::Cuda(index)).map(|()| unreachable!("checked above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_device() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("wgpu".parse(), Ok(DeviceChoice::Wgpu(None)));
        assert_eq!("wgpu:1".parse(), Ok(DeviceChoice::Wgpu(Some(1))));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
    }

    #[test]
    fn rejects_unknown_devices_with_the_accepted_forms() {
        let err = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("cpu, wgpu"), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("cpu:1".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["cpu", "wgpu", "wgpu:2", "cuda:1"] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap().to_string(), s);
        }
    }
}
