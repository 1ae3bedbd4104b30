//! The science side of the pipeline: spectra in, preprocessing, datasets.
//!
//! So far this holds the two preprocessing steps the networks need (`prep::minmax` and `prep::fold_s`,
//! audited against PyTorch); readers, resampling and the synthetic survey belong here too.

pub mod prep;
