//! Bad input gets a typed error with a clear message, never a panic.

mod common;

use ndarray::{Array2, ArrayD, IxDyn};
use specnn::autograd::Tape;
use specnn::io::{read_safetensors, write_safetensors};
use specnn::nn::{load_model, save_model, Arch, Model};
use specnn::ops::{self, conv2d::Conv2dSpec, conv2d::Padding, maxpool2d::Pool2dSpec};
use specnn::Error;
use std::collections::HashMap;

fn zeros(shape: &[usize]) -> ArrayD<f32> {
    ArrayD::zeros(IxDyn(shape))
}

#[test]
fn conv2d_rejects_bad_shapes_and_sizes() {
    let spec = Conv2dSpec { stride: (1, 1), padding: (0, 0) };
    let none = None::<&ArrayD<f32>>;
    // channel mismatch
    let e = ops::conv2d::forward(&zeros(&[1, 3, 8, 8]), &zeros(&[4, 2, 3, 3]), none, spec).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("3 channels"), "{e}");
    // not 4-D
    assert!(ops::conv2d::forward(&zeros(&[3, 8, 8]), &zeros(&[4, 3, 3, 3]), none, spec).is_err());
    // bias of the wrong length
    let e = ops::conv2d::forward(&zeros(&[1, 3, 8, 8]), &zeros(&[4, 3, 3, 3]), Some(&zeros(&[5])), spec).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    // kernel larger than the padded input: an error, not a wrapped subtraction
    let e = ops::conv2d::forward(&zeros(&[1, 1, 5, 5]), &zeros(&[1, 1, 9, 9]), none, spec).unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }) && e.to_string().contains("larger than the padded input"), "{e}");
    // ... which padding can fix
    let padded = Conv2dSpec { stride: (1, 1), padding: (2, 2) };
    assert_eq!(
        ops::conv2d::forward(&zeros(&[1, 1, 5, 5]), &zeros(&[1, 1, 9, 9]), none, padded).unwrap().shape(),
        &[1, 1, 1, 1]
    );
    // zero stride
    let e = ops::conv2d::forward(
        &zeros(&[1, 1, 5, 5]),
        &zeros(&[1, 1, 3, 3]),
        none,
        Conv2dSpec { stride: (0, 1), padding: (0, 0) },
    )
    .unwrap_err();
    assert!(e.to_string().contains("stride"), "{e}");
    // 'same' with an even kernel
    assert!(Conv2dSpec::new(Padding::Same, 8, 8).is_err());
}

#[test]
fn other_ops_reject_bad_shapes() {
    let none = None::<&ArrayD<f32>>;
    assert!(ops::linear::forward(&zeros(&[2, 5]), &zeros(&[3, 4]), none)
        .unwrap_err()
        .to_string()
        .contains("5 features"));
    assert!(ops::add(&zeros(&[2, 3]), &zeros(&[3, 2])).is_err());
    assert!(ops::reshape(&zeros(&[2, 3]), &[4, 2]).is_err());
    assert!(ops::loss::mae(&zeros(&[2, 3]), &zeros(&[2, 4])).is_err());
    assert!(ops::maxpool2d::forward(&zeros(&[1, 1, 1, 5]), Pool2dSpec::square(2))
        .unwrap_err()
        .to_string()
        .contains("larger than the input"));
    let mut tape = Tape::<f32>::new();
    let x = tape.input(zeros(&[2, 3]), true);
    assert!(tape.backward(x).is_err(), "backward of a non-scalar needs a grad_output");
    assert!(tape.backward_with(x, zeros(&[3, 2])).is_err());
}

#[test]
fn models_reject_bad_architectures_and_inputs() {
    let tiny = Arch::VmpCnn {
        in_side: 16,
        channels: vec![4, 4, 4],
        kernel: 9,
        padding: Padding::Valid,
        activation: Default::default(),
        dense: vec![8],
        outputs: 1,
    };
    let e = Model::<f32>::new(&tiny, 0).unwrap_err();
    assert!(e.to_string().contains("larger than its"), "{e}");
    let model = Model::<f32>::new(&Arch::ResAnn { inputs: 10, width: 4, blocks: 1, outputs: 2 }, 0).unwrap();
    let e = model.predict(&zeros(&[3, 11])).unwrap_err();
    assert!(e.to_string().contains("[N, 10]"), "{e}");
    assert!(Arch::from_json(r#"{"kind": "transformer"}"#).is_err());
}

#[test]
fn preprocessing_rejects_flat_and_non_finite_spectra() {
    let flat = Array2::<f32>::from_elem((2, 8), 3.0);
    assert!(specnn::data::prep::minmax(flat.view()).unwrap_err().to_string().contains("flat"));
    let mut nan = Array2::<f32>::from_shape_fn((1, 8), |(_, j)| j as f32);
    nan[[0, 3]] = f32::NAN;
    assert!(specnn::data::prep::minmax(nan.view()).unwrap_err().to_string().contains("non-finite"));
    assert!(specnn::data::prep::fold_s(Array2::<f32>::zeros((1, 4095)).view(), 64).is_err());
}

fn saved_model(dir: &std::path::Path) -> (std::path::PathBuf, Model<f32>) {
    let model = Model::<f32>::new(&Arch::ResAnn { inputs: 10, width: 4, blocks: 2, outputs: 2 }, 0).unwrap();
    let path = dir.join("m.safetensors");
    save_model(&path, &model, HashMap::new()).unwrap();
    (path, model)
}

#[test]
fn truncated_and_foreign_model_files_are_refused() {
    let dir = common::tempdir();
    let (path, _) = saved_model(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = load_model::<f32>(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors") && e.contains("truncated"), "{e}");

    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, "hello, not a model").unwrap();
    assert!(load_model::<f32>(&text).unwrap_err().to_string().contains("notes.safetensors"));

    let missing = dir.path().join("absent.safetensors");
    assert!(load_model::<f32>(&missing).unwrap_err().to_string().contains("absent.safetensors"));

    // tensors without the architecture metadata
    let plain = dir.path().join("plain.safetensors");
    write_safetensors(&plain, &[("w".to_string(), &zeros(&[2]))], HashMap::new()).unwrap();
    assert!(load_model::<f32>(&plain).unwrap_err().to_string().contains("specnn-arch"));
}

#[test]
fn mismatched_model_files_name_the_tensor() {
    let dir = common::tempdir();
    let (path, _) = saved_model(dir.path());
    let (tensors, meta) = read_safetensors::<f32>(&path).unwrap();

    let rewrite = |name: &str, edit: &dyn Fn(&mut std::collections::BTreeMap<String, ArrayD<f32>>)| {
        let mut t = tensors.clone();
        edit(&mut t);
        let p = dir.path().join(name);
        let list: Vec<(String, &ArrayD<f32>)> = t.iter().map(|(k, v)| (k.clone(), v)).collect();
        write_safetensors(&p, &list, meta.clone()).unwrap();
        load_model::<f32>(&p).unwrap_err().to_string()
    };
    let e = rewrite("shape.safetensors", &|t| {
        t.insert("blocks.1.fc2.weight".into(), zeros(&[4, 5]));
    });
    assert!(e.contains("blocks.1.fc2.weight") && e.contains("[4, 5]"), "{e}");
    let e = rewrite("missing.safetensors", &|t| {
        t.remove("out.bias");
    });
    assert!(e.contains("out.bias") && e.contains("missing"), "{e}");
    let e = rewrite("extra.safetensors", &|t| {
        t.insert("blocks.2.fc1.weight".into(), zeros(&[4, 4]));
    });
    assert!(e.contains("blocks.2.fc1.weight") && e.contains("not a parameter"), "{e}");

    // the file of another architecture: a CNN's arch JSON over the ANN's tensors
    let mut wrong = meta.clone();
    wrong.insert("specnn-arch".into(), Arch::vmp_cnn(2).to_json());
    let p = dir.path().join("arch.safetensors");
    let list: Vec<(String, &ArrayD<f32>)> = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    write_safetensors(&p, &list, wrong).unwrap();
    let e = load_model::<f32>(&p).unwrap_err().to_string();
    assert!(e.contains("conv1.weight") && e.contains("missing"), "{e}");
}
