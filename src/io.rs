//! Files: safetensors tensors in and out, and atomic writes.
//!
//! Every output is written to a temporary name beside its destination and renamed into place, so an
//! interrupted run never leaves a half-written file where a good one was.

use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::tensor::Element;
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::file(path, "not a file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The tensors of a safetensors file (converted to `T` from f32 or f64) and its metadata.
pub type TensorFile<T> = (BTreeMap<String, ArrayD<T>>, HashMap<String, String>);

/// Reads every tensor of a safetensors file.
pub fn read_safetensors<T: Float>(path: &Path) -> Result<TensorFile<T>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_safetensors(path, &bytes)
}

/// Parses safetensors bytes (`path` only names the source in errors).
pub fn parse_safetensors<T: Float>(path: &Path, bytes: &[u8]) -> Result<TensorFile<T>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::file(path, format!("not a valid safetensors file ({e}); is it truncated?")))?;
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::file(path, format!("bad safetensors header: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<T> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| T::of(f32::from_le(c) as f64)).collect(),
            Dtype::F64 => data.chunks_exact(8).map(|c| T::of(f64::from_le(c))).collect(),
            other => {
                return Err(Error::file(path, format!("tensor `{name}` has dtype {other:?}; specnn reads F32 and F64")))
            }
        };
        let array = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
            .map_err(|e| Error::file(path, format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, array);
    }
    Ok((tensors, metadata))
}

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serialises tensors (in `T`'s dtype) with string metadata to safetensors bytes.
pub fn to_safetensors<T: Float>(
    tensors: &[(String, &ArrayD<T>)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let raws: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(name, a)| {
            let mut bytes = Vec::with_capacity(a.len() * std::mem::size_of::<T>());
            a.iter().for_each(|v| v.push_le(&mut bytes));
            (name.clone(), Raw { dtype: T::DTYPE, shape: a.shape().to_vec(), bytes })
        })
        .collect();
    safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), Some(metadata))
        .map_err(|e| Error::invalid("safetensors", e.to_string()))
}

/// Writes tensors and metadata to a safetensors file, atomically.
pub fn write_safetensors<T: Float>(
    path: &Path,
    tensors: &[(String, &ArrayD<T>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomic(path, &to_safetensors(tensors, metadata)?)
}
