//! One error type for the whole crate. Every variant names the operation or file it came from, so a
//! message is enough to find the problem without a backtrace.

use std::path::PathBuf;

/// Everything that can go wrong in specnn.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was given tensors whose shapes do not fit together.
    #[error("{op}: {msg} (got {shapes})")]
    Shape { op: &'static str, msg: String, shapes: String },
    /// An op's attributes are invalid (a zero stride, a kernel larger than the padded input, ...).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A model's tensors do not match its architecture.
    #[error("model tensor `{name}`: {msg}")]
    ModelTensor { name: String, msg: String },
    /// A file could not be read or is not what it claims to be.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// An I/O failure, with the file it happened on.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A golden-vector file is malformed.
    #[error("golden file: {0}")]
    Golden(String),
    /// The GPU failed (a shader that does not compile, out of memory, a lost device); names the op.
    #[error("GPU, {op}: {msg}")]
    Gpu { op: String, msg: String },
    /// Bad spectral data (a flat spectrum, NaN flux, ...).
    #[error("data: {0}")]
    Data(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>, shapes: &[&[usize]]) -> Self {
        let shapes = shapes.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        Error::Shape { op, msg: msg.into(), shapes }
    }
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { op, msg: msg.into() }
    }
    pub(crate) fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File { path: path.into(), msg: msg.into() }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
