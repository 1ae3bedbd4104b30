//! # specnn
//!
//! Stellar labels from spectra with neural networks, built from scratch: tensors, ops with backward
//! rules, a small autograd tape, the seed's layers and models, Adam, and safetensors model files that
//! load into PyTorch and back. Every op is audited against PyTorch's golden vectors (`specnn audit`).
//!
//! The data flows one way:
//! `data` (spectra, preprocessing) -> `nn::Model::forward` (layers) -> `autograd::Tape` (ops from
//! `ops`, kernels from `cpu`) -> loss -> `Tape::backward` -> `optim::Adam` -> `nn::save_model`.
//!
//! ```
//! use specnn::{autograd::Tape, nn::{Arch, Model}, optim::{Adam, AdamConfig}};
//! use ndarray::ArrayD;
//!
//! // A small residual ANN on 143-pixel (R=200) spectra, 3 labels.
//! let arch = Arch::ResAnn { inputs: 143, width: 32, blocks: 2, outputs: 3 };
//! let mut model = Model::<f32>::new(&arch, 7)?;
//! let x = ArrayD::<f32>::from_elem(vec![4, 143], 0.5);
//! let y = ArrayD::<f32>::zeros(vec![4, 3]);
//! let mut adam = Adam::new(AdamConfig::default());
//!
//! let (loss, grads) = {
//!     let mut tape = Tape::new();
//!     let xv = tape.input_view(x.view(), false);
//!     let yv = tape.input_view(y.view(), false);
//!     let pred = model.forward(&mut tape, xv)?;
//!     let loss = tape.mae_loss(pred, yv)?;
//!     tape.backward(loss)?;
//!     (tape.value(loss).sum(), tape.into_param_grads())
//! };
//! adam.step(model.params_mut(), grads)?;
//! assert!(loss.is_finite());
//! # Ok::<(), specnn::Error>(())
//! ```

pub mod augment;
pub mod autograd;
pub mod baselines;
pub mod bench;
pub mod catalog;
pub mod cpu;
pub mod data;
pub mod demo;
pub mod error;
pub mod eval;
pub mod geometry;
pub mod golden;
pub mod gpu;
pub mod io;
pub mod model_file;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod options;
pub mod plot;
pub mod predict;
pub mod simulate;
pub mod tensor;
pub mod train;
pub mod trust;
pub mod workflow;

pub use cpu::Float;
pub use error::{Error, Result};
pub use tensor::{Element, Tensor};
