//! Model files: safetensors with PyTorch names and the architecture in the metadata, round trips, and
//! atomic writes.

mod common;

use ndarray::{ArrayD, IxDyn};
use specnn::nn::{load_model, save_model, Arch, Model, ARCH_KEY};
use std::collections::HashMap;

#[test]
fn save_then_load_gives_the_same_network() {
    let dir = common::tempdir();
    for arch in [
        Arch::ResAnn { inputs: 143, width: 16, blocks: 2, outputs: 3 },
        Arch::VmpCnn {
            in_side: 32,
            channels: vec![2, 3, 4],
            kernel: 9,
            padding: specnn::ops::conv2d::Padding::Same,
            activation: Default::default(),
            dense: vec![8, 4],
            outputs: 4,
        },
        Arch::StarNet { inputs: 143, filters: vec![4, 16], kernel: 8, pool: 4, dense: vec![16, 8], outputs: 2 },
    ] {
        let model = Model::<f32>::new(&arch, 9).unwrap();
        let path = dir.path().join("model.safetensors");
        let mut meta = HashMap::new();
        meta.insert("specnn-labels".to_string(), "teff,logg".to_string());
        save_model(&path, &model, meta).unwrap();
        let (loaded, meta) = load_model::<f32>(&path).unwrap();
        assert_eq!(loaded.arch(), &arch);
        assert_eq!(meta.get("specnn-labels").map(String::as_str), Some("teff,logg"));
        assert_eq!(Arch::from_json(&meta[ARCH_KEY]).unwrap(), arch);
        let shape = arch.input_shape(2);
        let n: usize = shape.iter().product();
        let x = ArrayD::<f32>::from_shape_vec(IxDyn(&shape), (0..n).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap();
        assert_eq!(model.predict(&x).unwrap(), loaded.predict(&x).unwrap());
        // and an f32 file loads as f64 for gradient work
        let (wide, _) = load_model::<f64>(&path).unwrap();
        assert_eq!(wide.num_params(), model.num_params());
    }
    // nothing but the model is left in the folder: the temporary file was renamed
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn state_dict_names_match_pytorch() {
    let model = Model::<f32>::new(&Arch::vmp_cnn(4), 0).unwrap();
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "conv3.weight",
            "conv3.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "out.weight",
            "out.bias"
        ]
    );
    let shapes: Vec<Vec<usize>> = model.params().into_iter().map(|(_, p)| p.shape().to_vec()).collect();
    assert_eq!(shapes[4], vec![256, 128, 9, 9]);
    assert_eq!(shapes[6], vec![128, 256 * 8 * 8]);
    let res = Model::<f32>::new(&Arch::res_ann(3), 0).unwrap();
    let names: Vec<String> = res.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[..4], ["input.weight", "input.bias", "blocks.0.fc1.weight", "blocks.0.fc1.bias"]);
    assert_eq!(names.last().unwrap(), "out.bias");
}
