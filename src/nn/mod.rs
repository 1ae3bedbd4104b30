//! Layers, the seed's models, and model files.
//!
//! A model file is safetensors with PyTorch's state-dict names and layouts, and the architecture JSON in
//! the metadata under `specnn-arch`; other metadata keys (label scaling, preprocessing) ride along.

pub mod layers;
pub mod models;

pub use layers::{Activation, Conv2d, Dense, MaxPool2d, ResidualBlock};
pub use models::{Arch, Model};

use crate::error::{Error, Result};
use crate::io::{read_safetensors, write_safetensors};
use crate::tensor::Float;
use std::collections::HashMap;
use std::path::Path;

/// The metadata key holding the architecture JSON.
pub const ARCH_KEY: &str = "specnn-arch";

/// Saves a model (and extra metadata) to a safetensors file, atomically.
pub fn save_model<T: Float>(path: &Path, model: &Model<T>, mut metadata: HashMap<String, String>) -> Result<()> {
    metadata.insert(ARCH_KEY.to_string(), model.arch().to_json());
    metadata.entry("format".into()).or_insert_with(|| "pt".into());
    write_safetensors(path, &model.params(), metadata)
}

/// Loads a model file: checks that its tensors match its architecture exactly, naming the first one
/// that does not. Returns the model and the file's metadata.
pub fn load_model<T: Float>(path: &Path) -> Result<(Model<T>, HashMap<String, String>)> {
    let (tensors, metadata) = read_safetensors::<T>(path)?;
    let json = metadata.get(ARCH_KEY).ok_or_else(|| Error::file(path, format!("no `{ARCH_KEY}` metadata: not a specnn model file")))?;
    let arch = Arch::from_json(json).map_err(|e| Error::file(path, e.to_string()))?;
    let model = Model::from_tensors(&arch, tensors).map_err(|e| Error::file(path, e.to_string()))?;
    Ok((model, metadata))
}
