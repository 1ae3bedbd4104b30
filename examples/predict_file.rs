//! Loads a model file and prints its output for a deterministic input (`x[i] = sin(i) / 2 + 0.5`), or
//! with `--save-new ARCH_JSON`, writes a freshly initialised model first. Used by
//! `tools/pytorch_roundtrip.py` to check that model files travel between specnn and PyTorch.
//! `cargo run --release --example predict_file -- MODEL [--save-new ARCH_JSON] [--batch N]`
use ndarray::{ArrayD, IxDyn};
use specnn::nn::{load_model, save_model, Arch, Model};
use std::path::PathBuf;

fn main() -> specnn::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = PathBuf::from(&args[1]);
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    if let Some(json) = flag("--save-new") {
        let model = Model::<f32>::new(&Arch::from_json(&json)?, 5)?;
        save_model(&path, &model, Default::default())?;
    }
    let batch: usize = flag("--batch").map(|b| b.parse().expect("batch")).unwrap_or(2);
    let (model, _) = load_model::<f32>(&path)?;
    let shape = model.arch().input_shape(batch);
    let n: usize = shape.iter().product();
    let x =
        ArrayD::from_shape_vec(IxDyn(&shape), (0..n).map(|i| (i as f32).sin() / 2.0 + 0.5).collect()).expect("shape");
    let y = model.predict(&x)?;
    println!("{}", serde_json::to_string(&y.iter().copied().collect::<Vec<f32>>()).expect("json"));
    Ok(())
}
