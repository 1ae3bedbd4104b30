//! Tensors on the GPU: a pooled buffer of f32 (or u32, for argmax indices) and a row-major shape.
//! Reshaping shares the buffer; dropping the last handle returns it to the pool.

use super::context::{BufKind, Gpu, PoolBuf};
use crate::error::{Error, Result};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::sync::Arc;

/// A tensor in GPU memory.
#[derive(Clone)]
pub struct GpuTensor {
    buf: Arc<PoolBuf>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor{:?}", self.shape)
    }
}

impl GpuTensor {
    /// Uploads an array.
    pub fn upload(gpu: &Gpu, a: &ArrayViewD<'_, f32>) -> Result<Self> {
        let data: Vec<f32> = a.iter().copied().collect();
        let buf = gpu.upload(bytemuck::cast_slice(&data), "upload")?;
        Ok(Self { buf: Arc::new(buf), shape: a.shape().to_vec() })
    }

    /// An uninitialised tensor (every kernel writing one writes all of it).
    pub(crate) fn empty(gpu: &Gpu, shape: &[usize], op: &'static str) -> Result<Self> {
        let n: usize = shape.iter().product();
        let buf = gpu.alloc(BufKind::Storage, 4 * n as u64, op)?;
        Ok(Self { buf: Arc::new(buf), shape: shape.to_vec() })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }

    /// The same data under another shape of the same size.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::shape("reshape", "the new shape must have as many elements", &[&self.shape, shape]));
        }
        Ok(Self { buf: self.buf.clone(), shape: shape.to_vec() })
    }

    /// Reads the tensor back as an array of f32.
    pub fn to_array(&self, gpu: &Gpu) -> Result<ArrayD<f32>> {
        let bytes = gpu.read_bytes(self.buffer(), 4 * self.len() as u64, "readback")?;
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(ArrayD::from_shape_vec(IxDyn(&self.shape), v).expect("length matches shape"))
    }

    /// Reads the tensor back as u32 (argmax indices).
    pub fn to_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        let bytes = gpu.read_bytes(self.buffer(), 4 * self.len() as u64, "readback")?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
