//! Layers, the seed's models, and model files.
//!
//! A model file is safetensors with PyTorch's state-dict names and layouts, and the architecture JSON in
//! the metadata under `specnn-arch`; other metadata keys (label scaling, preprocessing) ride along.

pub mod layers;
pub mod models;

pub use layers::{Activation, Conv2d, Dense, MaxPool2d, ResidualBlock};
pub use models::{Arch, Model};

use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::io::{read_safetensors, write_safetensors};
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
    let mut members = members_from(path, tensors, &metadata)?;
    if members.len() != 1 {
        return Err(Error::file(
            path,
            format!("holds an ensemble of {} networks, not one (`predict::load_trained` reads it)", members.len()),
        ));
    }
    Ok((members.remove(0), metadata))
}

/// The prefix of the out-of-domain check's tensors in a trained model file (`trust::Domain`): not
/// parameters of the network.
pub const DOMAIN_PREFIX: &str = "domain.";

/// The metadata key holding an ensemble's size (absent for a single network).
pub const ENSEMBLE_KEY: &str = "specnn-ensemble";

/// Saves an ensemble of networks of one architecture as one file: member `m`'s tensors under
/// `members.m.` (PyTorch's names for an `nn.ModuleList` called `members`), the member architecture
/// under `specnn-arch` and the count under `specnn-ensemble`.
pub fn save_ensemble<T: Float>(path: &Path, members: &[Model<T>], mut metadata: HashMap<String, String>) -> Result<()> {
    let first = members.first().ok_or_else(|| Error::invalid("ensemble", "no member to save"))?;
    if let Some(m) = members.iter().find(|m| m.arch() != first.arch()) {
        return Err(Error::invalid(
            "ensemble",
            format!("members of different architectures: {} and {}", first.arch().to_json(), m.arch().to_json()),
        ));
    }
    metadata.insert(ARCH_KEY.to_string(), first.arch().to_json());
    metadata.insert(ENSEMBLE_KEY.to_string(), members.len().to_string());
    metadata.entry("format".into()).or_insert_with(|| "pt".into());
    let params: Vec<Vec<(String, &crate::tensor::Tensor<T>)>> = members.iter().map(|m| m.params()).collect();
    let named: Vec<(String, &crate::tensor::Tensor<T>)> = params
        .iter()
        .enumerate()
        .flat_map(|(i, ps)| ps.iter().map(move |(n, t)| (format!("members.{i}.{n}"), *t)))
        .collect();
    write_safetensors(path, &named, metadata)
}

/// The networks of a model file (`path`, for messages) from its tensors and metadata: one, or an
/// ensemble's members (`specnn-ensemble`), each checked against the architecture; `domain.` tensors
/// (the out-of-domain check's) are not the networks' and are skipped.
pub fn members_from<T: Float>(
    path: &Path,
    mut tensors: std::collections::BTreeMap<String, crate::tensor::Tensor<T>>,
    metadata: &HashMap<String, String>,
) -> Result<Vec<Model<T>>> {
    tensors.retain(|k, _| !k.starts_with(DOMAIN_PREFIX));
    let json = metadata
        .get(ARCH_KEY)
        .ok_or_else(|| Error::file(path, format!("no `{ARCH_KEY}` metadata: not a specnn model file")))?;
    let arch = Arch::from_json(json).map_err(|e| Error::file(path, e.to_string()))?;
    let Some(k) = metadata.get(ENSEMBLE_KEY) else {
        let model = Model::from_tensors(&arch, tensors).map_err(|e| Error::file(path, e.to_string()))?;
        return Ok(vec![model]);
    };
    let k: usize = k
        .parse()
        .ok()
        .filter(|&k| k >= 1)
        .ok_or_else(|| Error::file(path, format!("metadata `{ENSEMBLE_KEY}` = `{k}` is not a member count")))?;
    let mut by_member: Vec<std::collections::BTreeMap<String, crate::tensor::Tensor<T>>> = vec![Default::default(); k];
    for (name, t) in tensors {
        let rest = name.strip_prefix("members.").and_then(|r| r.split_once('.'));
        match rest.and_then(|(i, n)| i.parse::<usize>().ok().filter(|&i| i < k).map(|i| (i, n))) {
            Some((i, n)) => {
                by_member[i].insert(n.to_string(), t);
            }
            None => {
                return Err(Error::file(
                    path,
                    format!("tensor `{name}` is not `members.M.NAME` with M below the {k} members"),
                ))
            }
        }
    }
    let members = by_member
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            Model::from_tensors(&arch, t.into_iter().collect())
                .map_err(|e| Error::file(path, format!("member {i}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(members)
}
