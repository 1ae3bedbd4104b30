//! Gradient checks: every op's backward rule against central differences in f64, over random shapes
//! (proptest). Inputs are kept away from ReLU/SELU's kink at 0, from |pred - target| = 0 in the MAE, and
//! from ties in max pooling, where the derivative is not defined.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use specnn::autograd::{Tape, Var};
use specnn::nn::{Arch, Model, ResidualBlock};
use specnn::ops::conv2d::Conv2dSpec;
use specnn::ops::maxpool2d::Pool2dSpec;

/// Step of the central differences.
const H: f64 = 1e-6;
/// Elements checked per input (all of them when fewer).
const MAX_CHECKED: usize = 40;

fn random(rng: &mut StdRng, shape: &[usize], away_from_zero: f64) -> ArrayD<f64> {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            let m: f64 = rng.random_range(away_from_zero..1.0);
            if rng.random_bool(0.5) {
                m
            } else {
                -m
            }
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Distinct values (no pooling ties): a shuffled ramp with steps of 0.01.
fn tie_free(rng: &mut StdRng, shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n).map(|i| (i as f64) * 0.01 - (n as f64) * 0.005).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// `L = sum(f(inputs) * gy)`: checks d L / d input against central differences for every input.
fn check(
    inputs: &[ArrayD<f64>],
    seed: u64,
    f: impl Fn(&mut Tape<'_, f64>, &[Var]) -> specnn::Result<Var>,
) -> Result<(), TestCaseError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|a| tape.input(a.clone(), true)).collect();
    let y = f(&mut tape, &vars).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let gy = random(&mut rng, tape.value(y).shape(), 0.1);
    tape.backward_with(y, gy.clone()).unwrap();
    let analytic: Vec<ArrayD<f64>> =
        vars.iter().map(|v| tape.grad(*v).cloned().unwrap_or_else(|| ArrayD::zeros(inputs[0].raw_dim()))).collect();

    let loss = |xs: &[ArrayD<f64>]| -> f64 {
        let mut t = Tape::inference();
        let vs: Vec<Var> = xs.iter().map(|a| t.input(a.clone(), false)).collect();
        let y = f(&mut t, &vs).unwrap();
        (&t.value(y) * &gy).sum()
    };
    for (k, x) in inputs.iter().enumerate() {
        prop_assert_eq!(analytic[k].shape(), x.shape(), "gradient {} has the wrong shape", k);
        let n = x.len();
        let picks: Vec<usize> = if n <= MAX_CHECKED {
            (0..n).collect()
        } else {
            (0..MAX_CHECKED).map(|_| rng.random_range(0..n)).collect()
        };
        for i in picks {
            let mut xs = inputs.to_vec();
            let orig = xs[k].as_slice().unwrap()[i];
            xs[k].as_slice_mut().unwrap()[i] = orig + H;
            let up = loss(&xs);
            xs[k].as_slice_mut().unwrap()[i] = orig - H;
            let down = loss(&xs);
            let numeric = (up - down) / (2.0 * H);
            let got = analytic[k].as_slice().unwrap()[i];
            prop_assert!(
                (got - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                "input {} element {}: analytic {} vs numeric {}",
                k,
                i,
                got,
                numeric
            );
        }
    }
    Ok(())
}

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(cfg(24))]

    #[test]
    fn conv2d(n in 1usize..3, c in 1usize..4, o in 1usize..4, h in 1usize..9, w in 1usize..9,
              kh in 1usize..6, kw in 1usize..6, sh in 1usize..3, sw in 1usize..3, ph in 0usize..3, pw in 0usize..3,
              seed in any::<u64>()) {
        prop_assume!(kh <= h + 2 * ph && kw <= w + 2 * pw);
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [
            random(&mut rng, &[n, c, h, w], 0.0),
            random(&mut rng, &[o, c, kh, kw], 0.0),
            random(&mut rng, &[o], 0.0),
        ];
        let spec = Conv2dSpec { stride: (sh, sw), padding: (ph, pw) };
        check(&inputs, seed, |t, v| t.conv2d(v[0], v[1], Some(v[2]), spec))?;
    }

    #[test]
    fn conv2d_9x9_same(c in 1usize..3, o in 1usize..3, h in 5usize..12, w in 5usize..12, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [
            random(&mut rng, &[2, c, h, w], 0.0),
            random(&mut rng, &[o, c, 9, 9], 0.0),
            random(&mut rng, &[o], 0.0),
        ];
        let spec = Conv2dSpec { stride: (1, 1), padding: (4, 4) };
        check(&inputs, seed, |t, v| t.conv2d(v[0], v[1], Some(v[2]), spec))?;
    }

    #[test]
    fn conv1d_as_1xk(c in 1usize..3, o in 1usize..5, l in 8usize..30, k in 1usize..9, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [
            random(&mut rng, &[3, c, 1, l], 0.0),
            random(&mut rng, &[o, c, 1, k], 0.0),
            random(&mut rng, &[o], 0.0),
        ];
        let spec = Conv2dSpec { stride: (1, 1), padding: (0, 0) };
        check(&inputs, seed, |t, v| t.conv2d(v[0], v[1], Some(v[2]), spec))?;
    }

    #[test]
    fn maxpool2d(
        n in 1usize..3,
        c in 1usize..4,
        h in 1usize..10,
        w in 1usize..10,
        kh in 1usize..4,
        kw in 1usize..4,
        sh in 1usize..4,
        sw in 1usize..4,
        seed in any::<u64>(),
    ) {
        prop_assume!(kh <= h && kw <= w);
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [tie_free(&mut rng, &[n, c, h, w])];
        let spec = Pool2dSpec { kernel: (kh, kw), stride: (sh, sw) };
        check(&inputs, seed, |t, v| t.maxpool2d(v[0], spec))?;
    }

    #[test]
    fn linear(n in 1usize..6, i in 1usize..20, o in 1usize..20, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [random(&mut rng, &[n, i], 0.0), random(&mut rng, &[o, i], 0.0), random(&mut rng, &[o], 0.0)];
        check(&inputs, seed, |t, v| t.linear(v[0], v[1], Some(v[2])))?;
    }

    #[test]
    fn relu_and_selu(shape in prop::collection::vec(1usize..5, 1..5), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [random(&mut rng, &shape, 0.05)];
        check(&inputs, seed, |t, v| t.relu(v[0]))?;
        check(&inputs, seed, |t, v| t.selu(v[0]))?;
    }

    #[test]
    fn add_reshape_flatten(n in 1usize..4, c in 1usize..4, h in 1usize..5, w in 1usize..5, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [random(&mut rng, &[n, c, h, w], 0.0), random(&mut rng, &[n, c, h, w], 0.0)];
        // a is used twice: gradients must accumulate.
        check(&inputs, seed, |t, v| { let s = t.add(v[0], v[1])?; let s = t.add(s, v[0])?; t.flatten(s) })?;
        check(&inputs[..1], seed, |t, v| t.reshape(v[0], &[c * h, n * w]))?;
    }

    #[test]
    fn losses(n in 1usize..6, k in 1usize..5, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let pred = random(&mut rng, &[n, k], 0.0);
        // target = pred + a difference at least 0.05 away from 0, so |pred - target| has no kink.
        let target = &pred + &random(&mut rng, &[n, k], 0.05);
        let inputs = [pred, target];
        check(&inputs, seed, |t, v| t.mae_loss(v[0], v[1]))?;
        check(&inputs, seed, |t, v| t.mse_loss(v[0], v[1]))?;
        // The masked MAE: a fixed mask with at least one known element.
        let mask = ArrayD::from_shape_fn(
            IxDyn(&[n, k]),
            |i| if (i[0] + i[1] + seed as usize).is_multiple_of(3) || (i[0], i[1]) == (0, 0) { 1.0 } else { 0.0 },
        );
        check(&inputs, seed, |t, v| { let m = t.input(mask.clone(), false); t.masked_mae_loss(v[0], v[1], m) })?;
    }

    /// The Gaussian NLL on the tape (means, then log-variances; masked labels): the gradient with
    /// respect to the prediction against central differences (beta 0), and for beta-NLL (0.5, whose
    /// weight `exp(beta s)` is held constant in the gradient, so differences do not apply) the value
    /// and gradient of `ops::loss` over the mask's sum. The target gets none.
    #[test]
    fn gaussian_nll(n in 1usize..6, k in 1usize..4, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let pred = random(&mut rng, &[n, 2 * k], 0.0);
        let target = random(&mut rng, &[n, k], 0.0);
        let mask = ArrayD::from_shape_fn(
            IxDyn(&[n, k]),
            |i| if (i[0] + i[1] + seed as usize).is_multiple_of(3) || (i[0], i[1]) == (0, 0) { 1.0 } else { 0.0 },
        );
        check(std::slice::from_ref(&pred), seed, |t, v| {
            let (tv, m) = (t.input(target.clone(), false), t.input(mask.clone(), false));
            t.gaussian_nll(v[0], tv, m, 0.0)
        })?;
        let mut t = Tape::<f64>::new();
        let (p, tv, m) = (t.input(pred.clone(), true), t.input(target.clone(), false), t.input(mask.clone(), false));
        let l = t.gaussian_nll(p, tv, m, 0.5).unwrap();
        t.backward(l).unwrap();
        let count = mask.sum();
        let want = specnn::ops::loss::masked_gaussian_nll_sum(&pred, &target, &mask, 0.5).unwrap() / count;
        prop_assert_eq!(t.value(l).sum(), want);
        let want = specnn::ops::loss::masked_gaussian_nll_grad(&pred, &target, &mask, 0.5, 1.0 / count).unwrap();
        prop_assert_eq!(t.grad(p).unwrap(), &want);
        let mut t = Tape::<f64>::new();
        let (p, tv, m) = (t.input(pred, false), t.input(target, true), t.input(mask, false));
        prop_assert!(t.gaussian_nll(p, tv, m, 0.0).is_err(), "a target that needs a gradient is refused");
    }

    #[test]
    fn residual_block(n in 1usize..4, d in 1usize..12, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = [
            random(&mut rng, &[n, d], 0.0),
            random(&mut rng, &[d, d], 0.0),
            random(&mut rng, &[d], 0.0),
            random(&mut rng, &[d, d], 0.0),
            random(&mut rng, &[d], 0.0),
        ];
        // The block as the layer builds it, with its weights as tape inputs so their gradients are checked.
        check(&inputs, seed, |t, v| {
            let h = t.linear(v[0], v[1], Some(v[2]))?;
            let h = t.selu(h)?;
            let h = t.linear(h, v[3], Some(v[4]))?;
            let s = t.add(v[0], h)?;
            t.selu(s)
        })?;
        // And the layer itself agrees with that composition.
        let mut r = StdRng::seed_from_u64(seed);
        let block = ResidualBlock::<f64>::new("b", d, &mut r);
        let mut t1 = Tape::inference();
        let x1 = t1.input(inputs[0].clone(), false);
        let y1 = block.forward(&mut t1, x1).unwrap();
        let mut t2 = Tape::inference();
        let v: Vec<Var> = [
            &inputs[0],
            &block.fc1.weight,
            &block.fc1.bias,
            &block.fc2.weight,
            &block.fc2.bias,
        ].iter().map(|a| t2.input((*a).clone(), false)).collect();
        let h = t2.linear(v[0], v[1], Some(v[2])).unwrap();
        let h = t2.selu(h).unwrap();
        let h = t2.linear(h, v[3], Some(v[4])).unwrap();
        let s = t2.add(v[0], h).unwrap();
        let y2 = t2.selu(s).unwrap();
        prop_assert_eq!(t1.value(y1), t2.value(y2));
    }
}

/// Gradients of every parameter of a whole network, against central differences.
fn check_model(arch: &Arch, batch: usize, seed: u64) {
    let model = Model::<f64>::new(arch, seed).unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let x = random(&mut rng, &arch.input_shape(batch), 0.0);
    let gy = random(&mut rng, &[batch, arch.outputs()], 0.1);
    let grads = {
        let mut tape = Tape::new();
        let xv = tape.input_view(x.view(), false);
        let y = model.forward(&mut tape, xv).unwrap();
        tape.backward_with(y, gy.clone()).unwrap();
        tape.into_param_grads()
    };
    let loss = |m: &Model<f64>| (&m.predict(&x).unwrap() * &gy).sum();
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, grads.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), "gradients come in parameter order");
    for (p, (name, g)) in grads.iter().enumerate() {
        let g = g.as_ref().unwrap_or_else(|| panic!("no gradient for {name}"));
        for i in (0..g.len()).step_by((g.len() / 12).max(1)) {
            let mut m = model.clone();
            let bump = |m: &mut Model<f64>, d: f64| m.params_mut()[p].1.as_slice_mut().unwrap()[i] += d;
            bump(&mut m, H);
            let up = loss(&m);
            bump(&mut m, -2.0 * H);
            let down = loss(&m);
            let numeric = (up - down) / (2.0 * H);
            let got = g.as_slice().unwrap()[i];
            assert!(
                (got - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                "{name}[{i}]: analytic {got} vs numeric {numeric}"
            );
        }
    }
}

#[test]
fn small_vmp_cnn_gradients() {
    use specnn::nn::Activation;
    use specnn::ops::conv2d::Padding;
    for (padding, activation) in [(Padding::Same, Activation::Relu), (Padding::Valid, Activation::Selu)] {
        let arch = Arch::VmpCnn {
            in_side: 24,
            channels: vec![2, 3, 2],
            kernel: 3,
            padding,
            activation,
            dense: vec![6, 5],
            outputs: 2,
        };
        check_model(&arch, 2, 11);
    }
}

#[test]
fn residual_ann_gradients() {
    check_model(&Arch::ResAnn { inputs: 13, width: 8, blocks: 2, outputs: 3 }, 3, 5);
}

#[test]
fn ann_and_starnet_gradients() {
    check_model(
        &Arch::Ann { inputs: 9, hidden: vec![7, 5], activation: specnn::nn::Activation::Selu, outputs: 2 },
        3,
        2,
    );
    check_model(
        &Arch::StarNet { inputs: 40, filters: vec![2, 3], kernel: 5, pool: 4, dense: vec![6, 4], outputs: 2 },
        2,
        3,
    );
}
