//! The science side of the pipeline: spectra in, preprocessing, labels, the synthetic survey.
//!
//! * `spectrum`: the `Spectrum` type (wavelength, flux, ivar, bad pixels, header facts);
//! * `read`: readers for every accepted layout, detected from the file's contents;
//! * `prep`: the seed's preprocessing steps, each a plain function;
//! * `pipeline`: those steps as one configurable pipeline (`PrepConfig`, stored in model files);
//! * `pca`: principal components fitted on a training set;
//! * `labels`: label tables joined to spectra by file name or obsid;
//! * `store`: a training set's preprocessed rows, in memory or streamed from a file.

pub mod dataset;
pub mod labels;
pub mod pca;
pub mod pipeline;
pub mod prep;
pub mod read;
pub mod spectrum;
pub mod store;
pub mod synth;
pub mod write;

pub use labels::{LabelRow, Labels, LABEL_NAMES};
pub use pca::Pca;
pub use pipeline::{prepare, PrepConfig};
pub use prep::Grid;
pub use read::{read_spectrum, ReadOptions};
pub use spectrum::{Layout, Medium, Meta, Spectrum};
