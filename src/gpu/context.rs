//! The GPU context: adapter choice, device and queue, the pipelines (built once, when the context
//! starts), the buffer pool, command recording and the one readback helper.
//!
//! Work is recorded into one pending command encoder and submitted only when a result is read back or
//! new data is uploaded, so a training step is a handful of submissions. Every dispatch gets its own
//! small uniform buffer (from the pool, held until its submission). wgpu's errors are caught: shader and
//! pipeline creation run inside error scopes, and anything raised later (out of memory, a lost device)
//! is turned into [`Error::Gpu`] naming the ops recorded since the last submission.

use super::kernels::Kernel;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

/// One adapter as `specnn devices` lists it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// Whether this is a real GPU (discrete, integrated or virtual), not a CPU implementation.
    pub hardware: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::all();
    wgpu::Instance::new(desc)
}

fn adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
}

fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let l = a.limits();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        hardware: matches!(
            info.device_type,
            wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu
        ),
        max_buffer_size: l.max_buffer_size,
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
    }
}

/// Every adapter wgpu finds, in the order `gpu:N` counts them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters().iter().enumerate().map(|(i, a)| summary(i, a)).collect()
}

/// The kind of a pooled buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BufKind {
    Storage,
    Uniform,
    Staging,
}

impl BufKind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            BufKind::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            BufKind::Uniform => U::UNIFORM | U::COPY_DST,
            BufKind::Staging => U::MAP_READ | U::COPY_DST,
        }
    }
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<(BufKind, u64), Vec<wgpu::Buffer>>,
    created: u64,
    bytes: u64,
}

/// A buffer on loan from the pool; it goes back when dropped (or, for uniforms, after its submission).
pub(crate) struct PoolBuf {
    buffer: Option<wgpu::Buffer>,
    key: (BufKind, u64),
    pool: Arc<Mutex<PoolInner>>,
}

impl PoolBuf {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("a pooled buffer is present until dropped")
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if let Ok(mut p) = self.pool.lock() {
                p.free.entry(self.key).or_default().push(b);
            }
        }
    }
}

#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    uniforms: Vec<PoolBuf>,
    ops: Vec<&'static str>,
}

/// Buffer-pool figures (for tests and `specnn devices`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created since the context started (a loop that allocates nothing keeps this fixed).
    pub created: u64,
    /// Bytes of those buffers.
    pub bytes: u64,
}

/// An open GPU: adapter, device, queue, pipelines and pool.
pub struct Gpu {
    pub summary: AdapterSummary,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pipelines: Vec<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    pool: Arc<Mutex<PoolInner>>,
    pending: Mutex<Pending>,
    error: Arc<Mutex<Option<String>>>,
}

fn gpu_err(op: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::Gpu { op: op.into(), msg: msg.into() }
}

impl Gpu {
    /// Opens adapter `index` of [`list_adapters`].
    pub fn open(index: usize) -> Result<Self> {
        let mut all = adapters();
        if index >= all.len() {
            return Err(gpu_err(
                "open",
                format!("there is no adapter gpu:{index} ({} found; `specnn devices` lists them)", all.len()),
            ));
        }
        let adapter = all.swap_remove(index);
        Self::from_adapter(index, adapter)
    }

    /// Opens the first adapter, a real GPU when `hardware_only`, else any (lavapipe included).
    pub fn first(hardware_only: bool) -> Result<Option<Self>> {
        let all = adapters();
        let pick = all.iter().enumerate().find(|(i, a)| !hardware_only || summary(*i, a).hardware).map(|(i, _)| i);
        match pick {
            Some(i) => Self::from_adapter(i, all.into_iter().nth(i).expect("index in range")).map(Some),
            None => Ok(None),
        }
    }

    fn from_adapter(index: usize, adapter: wgpu::Adapter) -> Result<Self> {
        let summary = summary(index, &adapter);
        let al = adapter.limits();
        // Ask for what the adapter has where it matters (large activations and weight gradients).
        let limits = wgpu::Limits {
            max_buffer_size: al.max_buffer_size,
            max_storage_buffer_binding_size: al.max_storage_buffer_binding_size,
            ..Default::default()
        };
        let desc = wgpu::DeviceDescriptor { label: Some("specnn"), required_limits: limits, ..Default::default() };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| gpu_err("open", format!("{}: cannot open the device: {e}", summary.name)))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let msg = match &e {
                wgpu::Error::OutOfMemory { .. } => format!("the GPU ran out of memory ({e})"),
                _ => e.to_string(),
            };
            if let Ok(mut s) = sink.lock() {
                s.get_or_insert(msg);
            }
        }));
        let lost = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut s) = lost.lock() {
                s.get_or_insert(format!("the GPU device was lost ({reason:?}): {msg}"));
            }
        });
        let mut gpu = Gpu {
            summary,
            device,
            queue,
            pipelines: Vec::new(),
            pool: Arc::default(),
            pending: Mutex::default(),
            error,
        };
        gpu.build_pipelines()?;
        Ok(gpu)
    }

    /// Builds every pipeline once, each shader and pipeline inside an error scope.
    fn build_pipelines(&mut self) -> Result<()> {
        let mut modules: HashMap<&'static str, wgpu::ShaderModule> = HashMap::new();
        for k in Kernel::ALL {
            if !modules.contains_key(k.file()) {
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                let source = k.source();
                let m = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.file()),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(gpu_err(format!("shader {}", k.file()), e.to_string()));
                }
                modules.insert(k.file(), m);
            }
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry()),
                layout: None,
                module: &modules[k.file()],
                entry_point: Some(k.entry()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: k.constants(),
                    ..Default::default()
                },
                cache: None,
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(gpu_err(format!("pipeline {}::{}", k.file(), k.entry()), e.to_string()));
            }
            let layout = pipeline.get_bind_group_layout(0);
            self.pipelines.push((pipeline, layout));
        }
        Ok(())
    }

    /// Buffer-pool figures.
    pub fn pool_stats(&self) -> PoolStats {
        let p = self.pool.lock().expect("pool lock");
        PoolStats { created: p.created, bytes: p.bytes }
    }

    /// A buffer of at least `bytes` (rounded up to 16) from the pool; a new one only when none is free.
    pub(crate) fn alloc(&self, kind: BufKind, bytes: u64, op: &'static str) -> Result<PoolBuf> {
        let size = bytes.max(16).div_ceil(16) * 16;
        let key = (kind, size);
        let reused = self.pool.lock().expect("pool lock").free.get_mut(&key).and_then(|v| v.pop());
        let buffer = match reused {
            Some(b) => b,
            None => {
                if size > self.summary.max_buffer_size
                    || (kind == BufKind::Storage && size > self.summary.max_storage_buffer_binding_size)
                {
                    return Err(gpu_err(
                        op,
                        format!(
                            "a buffer of {size} bytes is larger than this adapter allows ({} \
                        bytes per binding); use a smaller batch",
                            self.summary.max_storage_buffer_binding_size
                        ),
                    ));
                }
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(op),
                    size,
                    usage: kind.usage(),
                    mapped_at_creation: false,
                });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(gpu_err(op, format!("the GPU ran out of memory allocating {size} bytes: {e}")));
                }
                let mut p = self.pool.lock().expect("pool lock");
                p.created += 1;
                p.bytes += size;
                b
            }
        };
        Ok(PoolBuf { buffer: Some(buffer), key, pool: self.pool.clone() })
    }

    /// Raises a recorded wgpu error as [`Error::Gpu`] naming `ops`.
    fn check(&self, ops: &[&'static str]) -> Result<()> {
        if let Some(msg) = self.error.lock().expect("error lock").take() {
            let mut names: Vec<&str> = ops.to_vec();
            names.dedup();
            let op = if names.is_empty() { "gpu".to_string() } else { names.join(", ") };
            return Err(gpu_err(op, msg));
        }
        Ok(())
    }

    /// Records one dispatch of `kernel` with `bindings` (binding number, buffer) and the uniform
    /// `params` (the binding after the last storage binding is given by `uniform_binding`).
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        kernel: Kernel,
        bindings: &[(u32, &wgpu::Buffer)],
        uniform_binding: u32,
        params: &[u8],
        groups: [u32; 3],
    ) -> Result<()> {
        let uniform = self.alloc(BufKind::Uniform, params.len() as u64, op)?;
        self.queue.write_buffer(uniform.buffer(), 0, params);
        let (pipeline, layout) = &self.pipelines[kernel.index()];
        let mut entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|(b, buf)| wgpu::BindGroupEntry { binding: *b, resource: buf.as_entire_binding() })
            .collect();
        entries.push(wgpu::BindGroupEntry { binding: uniform_binding, resource: uniform.buffer().as_entire_binding() });
        let bind =
            self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(op), layout, entries: &entries });
        let mut pending = self.pending.lock().expect("pending lock");
        let encoder = pending.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("specnn") })
        });
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(op), timestamp_writes: None });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        pending.uniforms.push(uniform);
        if pending.ops.last() != Some(&op) {
            pending.ops.push(op);
        }
        Ok(())
    }

    /// Submits what is recorded; returns the names of the ops it held.
    fn submit(&self, extra: Option<wgpu::CommandEncoder>) -> Vec<&'static str> {
        let mut pending = self.pending.lock().expect("pending lock");
        let mut buffers = Vec::new();
        if let Some(e) = pending.encoder.take() {
            buffers.push(e.finish());
        }
        if let Some(e) = extra {
            buffers.push(e.finish());
        }
        if !buffers.is_empty() {
            self.queue.submit(buffers);
        }
        // The uniforms may be reused now: a later write to them is ordered after this submission.
        pending.uniforms.clear();
        std::mem::take(&mut pending.ops)
    }

    /// Submits what is recorded and raises any error it caused.
    pub fn flush(&self) -> Result<()> {
        let ops = self.submit(None);
        self.check(&ops)
    }

    /// Waits until the GPU has finished everything submitted (benchmarks time with this).
    pub fn wait(&self) -> Result<()> {
        let ops = self.submit(None);
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| gpu_err("wait", e.to_string()))?;
        self.check(&ops)
    }

    /// Copies `data` into a pooled storage buffer. Pending work is submitted first: a queue write lands
    /// before the commands recorded with it, and the pooled buffer may still be read by them.
    pub(crate) fn upload(&self, data: &[u8], op: &'static str) -> Result<PoolBuf> {
        self.flush()?;
        let b = self.alloc(BufKind::Storage, data.len() as u64, op)?;
        if !data.is_empty() {
            self.queue.write_buffer(b.buffer(), 0, data);
        }
        Ok(b)
    }

    /// Reads `bytes` bytes of `src` back: copy to a staging buffer, map, wait, copy out, unmap.
    pub(crate) fn read_bytes(&self, src: &wgpu::Buffer, bytes: u64, op: &'static str) -> Result<Vec<u8>> {
        let size = bytes.max(16).div_ceil(16) * 16;
        let staging = self.alloc(BufKind::Staging, size, op)?;
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        let copy = bytes.div_ceil(4) * 4;
        if copy > 0 {
            enc.copy_buffer_to_buffer(src, 0, staging.buffer(), 0, copy);
        }
        let ops = self.submit(Some(enc));
        let (tx, rx) = mpsc::channel();
        staging.buffer().map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| gpu_err(op, format!("waiting for the GPU: {e}")))?;
        self.check(&ops)?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(gpu_err(op, format!("reading back: {e}"))),
            Err(_) => return Err(gpu_err(op, "reading back: the map callback never ran")),
        }
        let out = {
            let view = staging
                .buffer()
                .slice(0..size)
                .get_mapped_range()
                .map_err(|e| gpu_err(op, format!("reading back: {e}")))?;
            view[..bytes as usize].to_vec()
        };
        staging.buffer().unmap();
        Ok(out)
    }
}

/// A one- or two-dimensional grid of `groups` workgroups (at most 65535 per dimension).
pub(crate) fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    let x = groups.min(65535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}
