//! The GPU path: our own WGSL kernels (`shaders/`) on wgpu, so any GPU vendor works (Vulkan here;
//! Metal and DX12 where wgpu builds them), f32 throughout.
//!
//! - [`context`]: adapter choice, device, pipelines built once, the buffer pool, the readback helper;
//! - [`kernels`]: the enum mapping each kernel to its shader file and entry point;
//! - [`ops`]: one function per kernel launch, shapes checked as on the CPU;
//! - [`tape`]: the GPU backend of the one autograd tape, [`GpuTape`] (the same model code as the CPU);
//! - [`trainer`]: a whole training step on the device.
//!
//! [`Device`] is what `--device auto|cpu|gpu|gpu:N` parses into.

pub mod context;
pub mod kernels;
pub mod ops;
pub mod tape;
pub mod tensor;
pub mod trainer;

pub use context::{list_adapters, AdapterSummary, Gpu, PoolStats};
pub use tape::{GpuTape, ParamStore};
pub use tensor::GpuTensor;
pub use trainer::{GpuNet, GpuTrainer};

use crate::error::{Error, Result};
use std::sync::Arc;

/// Where the work runs.
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(Arc<Gpu>),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Device {
    /// Parses `auto`, `cpu`, `gpu` or `gpu:N` and opens the device:
    /// `auto` takes the first hardware GPU and otherwise the CPU (a CPU-emulated Vulkan device such as
    /// lavapipe is slower than the CPU path, so auto never picks it); `gpu` takes the first adapter of
    /// any kind and is an error when there is none; `gpu:N` takes adapter N of `specnn devices`.
    pub fn open(spec: &str) -> Result<Self> {
        let bad = || Error::invalid("device", format!("`{spec}` is not a device: use auto, cpu, gpu or gpu:N"));
        match spec {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(match Gpu::first(true)? {
                Some(g) => Device::Gpu(Arc::new(g)),
                None => Device::Cpu,
            }),
            "gpu" => match Gpu::first(false)? {
                Some(g) => Ok(Device::Gpu(Arc::new(g))),
                None => Err(Error::Gpu {
                    op: "device".into(),
                    msg: "no GPU adapter found (is a Vulkan driver installed? `specnn devices` lists what wgpu sees)"
                        .into(),
                }),
            },
            s => {
                let n: usize = s.strip_prefix("gpu:").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
                Ok(Device::Gpu(Arc::new(Gpu::open(n)?)))
            }
        }
    }

    /// One line naming the device, for the logs.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Gpu(g) => {
                format!("gpu:{} {} ({}, {})", g.summary.index, g.summary.name, g.summary.backend, g.summary.device_type)
            }
        }
    }

    /// The GPU, when this is one.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match self {
            Device::Gpu(g) => Some(g),
            Device::Cpu => None,
        }
    }
}
