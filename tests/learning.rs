//! Networks learn: with Adam and the MAE loss, the training loss falls on a fixed random regression
//! problem (targets from a fixed random "teacher" projection of the inputs).

use ndarray::{ArrayD, IxDyn};
use rand::{rngs::StdRng, Rng, SeedableRng};
use specnn::autograd::Tape;
use specnn::nn::{Activation, Arch, Model};
use specnn::ops::conv2d::Padding;
use specnn::optim::{Adam, AdamConfig};

fn problem(arch: &Arch, n: usize, seed: u64) -> (ArrayD<f32>, ArrayD<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = arch.input_shape(n);
    let per: usize = shape[1..].iter().product();
    let x: Vec<f32> = (0..n * per).map(|_| rng.random_range(0.0..1.0)).collect();
    let k = arch.outputs();
    let proj: Vec<f32> = (0..per * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut y = vec![0f32; n * k];
    for s in 0..n {
        for j in 0..k {
            let dot: f32 = (0..per).map(|i| (x[s * per + i] - 0.5) * proj[i * k + j]).sum();
            y[s * k + j] = (3.0 * dot / (per as f32).sqrt()).tanh();
        }
    }
    // Standardise each target over the samples, so that predicting the mean leaves a loss near 0.8.
    for j in 0..k {
        let col: Vec<f32> = (0..n).map(|s| y[s * k + j]).collect();
        let mean = col.iter().sum::<f32>() / n as f32;
        let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32).sqrt();
        (0..n).for_each(|s| y[s * k + j] = (y[s * k + j] - mean) / sd);
    }
    (ArrayD::from_shape_vec(IxDyn(&shape), x).unwrap(), ArrayD::from_shape_vec(IxDyn(&[n, k]), y).unwrap())
}

fn train(arch: Arch, steps: usize, lr: f64) -> (f32, f32) {
    let (x, y) = problem(&arch, 32, 3);
    let mut model = Model::<f32>::new(&arch, 1).unwrap();
    let mut adam = Adam::new(AdamConfig { lr, ..AdamConfig::default() });
    let mut losses = Vec::new();
    for _ in 0..steps {
        let (loss, grads) = {
            let mut tape = Tape::new();
            let xv = tape.input_view(x.view(), false);
            let yv = tape.input_view(y.view(), false);
            let pred = model.forward(&mut tape, xv).unwrap();
            let loss = tape.mae_loss(pred, yv).unwrap();
            tape.backward(loss).unwrap();
            (tape.value(loss).sum(), tape.into_param_grads())
        };
        losses.push(loss);
        adam.step(model.params_mut(), grads).unwrap();
    }
    if std::env::var_os("SPECNN_SHOW_LOSSES").is_some() {
        eprintln!("{losses:?}");
    }
    let first = losses[0];
    let last = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
    (first, last)
}

#[test]
fn small_vmp_cnn_learns() {
    let arch = Arch::VmpCnn {
        in_side: 32,
        channels: vec![4, 8, 8],
        kernel: 9,
        padding: Padding::Same,
        activation: Activation::Relu,
        dense: vec![16, 8],
        outputs: 2,
    };
    let (first, last) = train(arch, 80, 3e-3);
    assert!(last < 0.5 * first, "VMP CNN loss went from {first} to {last}");
}

#[test]
fn residual_ann_learns() {
    let (first, last) = train(Arch::ResAnn { inputs: 143, width: 64, blocks: 2, outputs: 3 }, 60, 1e-3);
    assert!(last < 0.5 * first, "residual ANN loss went from {first} to {last}");
}

#[test]
fn baselines_learn() {
    let (first, last) =
        train(Arch::Ann { inputs: 143, hidden: vec![64, 64], activation: Activation::Selu, outputs: 3 }, 60, 1e-3);
    assert!(last < 0.5 * first, "ANN loss went from {first} to {last}");
    let (first, last) = train(
        Arch::StarNet { inputs: 143, filters: vec![4, 16], kernel: 8, pool: 4, dense: vec![64, 32], outputs: 3 },
        150,
        1e-3,
    );
    assert!(last < 0.5 * first, "StarNet loss went from {first} to {last}");
}

#[test]
fn training_is_reproducible_bit_for_bit() {
    let arch = Arch::ResAnn { inputs: 20, width: 16, blocks: 1, outputs: 2 };
    let a = Model::<f32>::new(&arch, 42).unwrap();
    let b = Model::<f32>::new(&arch, 42).unwrap();
    let c = Model::<f32>::new(&arch, 43).unwrap();
    let pa: Vec<_> = a.params().into_iter().map(|(_, p)| p.clone()).collect();
    let pb: Vec<_> = b.params().into_iter().map(|(_, p)| p.clone()).collect();
    let pc: Vec<_> = c.params().into_iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(pa, pb);
    assert_ne!(pa, pc);
    assert_eq!(train(arch.clone(), 5, 1e-3), train(arch, 5, 1e-3));
}

#[test]
fn default_init_follows_pytorch_bounds() {
    // nn.Linear / nn.Conv2d default: weight and bias uniform in +-1/sqrt(fan_in).
    let model = Model::<f64>::new(&Arch::vmp_cnn(4), 0).unwrap();
    for (name, p) in model.params() {
        let fan_in: usize = if name.ends_with("weight") {
            p.shape()[1..].iter().product()
        } else {
            let w = model.params().into_iter().find(|(n, _)| *n == name.replace("bias", "weight")).unwrap().1;
            w.shape()[1..].iter().product()
        };
        let bound = 1.0 / (fan_in as f64).sqrt();
        let max = p.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max <= bound, "{name}: max |w| {max} above bound {bound}");
        if p.len() > 1000 {
            assert!(max > 0.95 * bound, "{name}: max |w| {max} should reach near {bound}");
        }
    }
}
