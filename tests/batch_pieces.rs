//! A CPU training step cuts a large batch into pieces that run side by side (`train::cpu_step`), and
//! `Model::predict` cuts a dense network's batch across threads. These tests check that the cut does
//! not change what is computed: the pieces' gradients add up to the whole batch's, the weights after a
//! step do not depend on the number of threads, and neither do predictions.

use ndarray::{ArrayD, IxDyn};
use rand::{rngs::StdRng, Rng, SeedableRng};
use specnn::autograd::Tape;
use specnn::nn::{Arch, Model};
use specnn::optim::{Adam, AdamConfig};
use specnn::train::{cpu_step, piece_gradients, STEP_PIECE_ROWS};

fn batch(arch: &Arch, n: usize, seed: u64) -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = arch.input_shape(n);
    let len: usize = shape.iter().product();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()).unwrap();
    let k = arch.outputs();
    let y = ArrayD::from_shape_vec(IxDyn(&[n, k]), (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect()).unwrap();
    // Unknown labels: a scattering of them, and none at all in the first 40 rows' first label.
    let mask = ArrayD::from_shape_fn(IxDyn(&[n, k]), |i| {
        if (i[0] < 40 && i[1] == 0) || (i[0] * 7 + i[1]) % 5 == 0 {
            0.0
        } else {
            1.0
        }
    });
    (x, y, mask)
}

fn small_res_ann() -> Arch {
    Arch::ResAnn { inputs: 20, width: 16, blocks: 2, outputs: 3 }
}

#[test]
fn piece_gradients_add_up_to_the_whole_batch_gradient() {
    let arch = small_res_ann();
    let n = 2 * STEP_PIECE_ROWS + 22; // three pieces
    let (x, y, mask) = batch(&arch, n, 5);
    let model = Model::<f64>::new(&arch, 1).unwrap();

    let (loss, pieces) = piece_gradients(&model, x.view(), y.view(), mask.view()).unwrap();
    assert_eq!(pieces.len(), 3, "a batch of {n} is cut into three pieces");

    let mut tape = Tape::new();
    let xv = tape.input_view(x.view(), false);
    let yv = tape.input_view(y.view(), false);
    let mv = tape.input_view(mask.view(), false);
    let pred = model.forward(&mut tape, xv).unwrap();
    let l = tape.masked_mae_loss(pred, yv, mv).unwrap();
    tape.backward(l).unwrap();
    let whole_loss = tape.value(l).sum();
    let whole = tape.into_param_grads();

    assert!((loss - whole_loss).abs() <= 1e-12 * whole_loss.abs(), "loss {loss} vs {whole_loss}");
    for (i, (name, g)) in whole.iter().enumerate() {
        let g = g.as_ref().expect("every parameter has a gradient");
        let mut sum = ArrayD::<f64>::zeros(g.raw_dim());
        for piece in &pieces {
            assert_eq!(piece[i].0, *name, "pieces list parameters in the model's order");
            sum += piece[i].1.as_ref().unwrap();
        }
        let scale = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (a, b) in sum.iter().zip(g.iter()) {
            assert!((a - b).abs() <= 1e-12 * scale.max(1e-300), "{name}: {a} vs {b}");
        }
    }
}

/// `cpu_step` (dense weight gradients formed block by block from the pieces' layer inputs and output
/// gradients and applied at once, the other gradients summed chunk by chunk inside Adam) against Adam
/// on whole gradients summed beforehand, in both element types, for one piece, two and three: the
/// same bits.
/// The seed's residual ANN too (512-wide weights: several row blocks each).
fn step_equals_adam_on_the_summed_gradient<T: specnn::Float>() {
    for (arch, n) in [
        (small_res_ann(), STEP_PIECE_ROWS / 2),
        (small_res_ann(), 2 * STEP_PIECE_ROWS),
        (small_res_ann(), 3 * STEP_PIECE_ROWS),
        (Arch::res_ann(3), 2 * STEP_PIECE_ROWS),
    ] {
        let (x, y, mask) = batch(&arch, n, 8);
        let (x, y, mask) = (x.mapv(T::of), y.mapv(T::of), mask.mapv(T::of));
        let mut stepped = Model::<T>::new(&arch, 2).unwrap();
        let mut by_hand = stepped.clone();
        let (mut adam_a, mut adam_b) = (Adam::new(AdamConfig::default()), Adam::new(AdamConfig::default()));
        for _ in 0..3 {
            cpu_step(&mut stepped, &mut adam_a, x.view(), y.view(), mask.view()).unwrap();
            let (_, pieces) = piece_gradients(&by_hand, x.view(), y.view(), mask.view()).unwrap();
            let mut summed = pieces[0].clone();
            for piece in &pieces[1..] {
                for ((_, acc), (_, g)) in summed.iter_mut().zip(piece) {
                    *acc.as_mut().unwrap() += g.as_ref().unwrap();
                }
            }
            adam_b.step(by_hand.params_mut(), summed).unwrap();
        }
        for ((name, a), (_, b)) in stepped.params().iter().zip(by_hand.params()) {
            assert!(
                a.iter().zip(b.iter()).all(|(p, q)| p.f64().to_bits() == q.f64().to_bits()),
                "{name}, batch {n}: the sum inside Adam adds in the pieces' order"
            );
        }
    }
}

#[test]
fn a_step_equals_adam_on_the_summed_gradient_f32() {
    step_equals_adam_on_the_summed_gradient::<f32>();
}

#[test]
fn a_step_equals_adam_on_the_summed_gradient_f64() {
    step_equals_adam_on_the_summed_gradient::<f64>();
}

/// Weights after a few steps of the seed's residual ANN (f32, batch 128: two pieces) on one thread
/// and on three.
#[test]
fn training_steps_give_the_same_weights_on_any_number_of_threads() {
    let arch = Arch::res_ann(3);
    let (x, y, mask) = batch(&arch, 128, 9);
    let (x, y, mask) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32), mask.mapv(|v| v as f32));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut model = Model::<f32>::new(&arch, 4).unwrap();
            let mut adam = Adam::new(AdamConfig::default());
            let losses: Vec<f64> =
                (0..3).map(|_| cpu_step(&mut model, &mut adam, x.view(), y.view(), mask.view()).unwrap()).collect();
            (losses, model)
        })
    };
    let (l1, m1) = run(1);
    let (l3, m3) = run(3);
    assert_eq!(l1, l3);
    assert!(l1.iter().all(|l| l.is_finite()));
    let fresh = Model::<f32>::new(&arch, 4).unwrap();
    assert!(fresh.params().iter().zip(m1.params()).all(|((_, a), (_, b))| *a != b), "every parameter moved");
    for ((name, a), (_, b)) in m1.params().iter().zip(m3.params()) {
        assert!(
            a.iter().zip(b.iter()).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name} differs between 1 and 3 threads"
        );
    }
}

/// A dense network's predictions for a batch, on one thread and on three (three pieces), and
/// for the batch predicted 20 rows at a time: the same bits.
#[test]
fn dense_predictions_do_not_depend_on_how_the_batch_is_cut() {
    let arch = Arch::res_ann(3);
    let model = Model::<f32>::new(&arch, 6).unwrap();
    let (x, _, _) = batch(&arch, 100, 10);
    let x = x.mapv(|v| v as f32);
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| model.predict(&x).unwrap())
    };
    let one = on(1);
    assert_eq!(one.shape(), &[100, 3]);
    assert_eq!(on(3), one);
    for start in (0..100).step_by(20) {
        let part = model.predict(&x.slice_axis(ndarray::Axis(0), (start..start + 20).into()).to_owned()).unwrap();
        assert_eq!(part, one.slice_axis(ndarray::Axis(0), (start..start + 20).into()), "rows {start}..{}", start + 20);
    }
}

/// A deferred dense gradient whose shapes do not fit its weight is refused with the weight's name,
/// before anything moves: every parameter and Adam's state stay as they were.
#[test]
fn a_mismatched_deferred_gradient_changes_nothing() {
    use specnn::autograd::DeferredDense;
    use specnn::train::piece_gradients_with;
    let arch = small_res_ann();
    let (x, y, mask) = batch(&arch, 2 * STEP_PIECE_ROWS, 11);
    let mut model = Model::<f64>::new(&arch, 3).unwrap();
    let mut adam = Adam::new(AdamConfig::default());
    cpu_step(&mut model, &mut adam, x.view(), y.view(), mask.view()).unwrap();
    let (before, state, step) =
        (model.clone(), adam.state().into_iter().map(|(n, a)| (n, a.clone())).collect::<Vec<_>>(), adam.step);
    let (_, grads, mut dense) =
        piece_gradients_with(&model, x.view(), y.view(), mask.view(), true, specnn::train::Objective::MaskedMae)
            .unwrap();
    let name = dense[0][0].name.clone();
    dense[1].push(DeferredDense::new(name.clone(), ArrayD::zeros(IxDyn(&[4, 7])), ArrayD::zeros(IxDyn(&[4, 16]))));
    let e = adam.step_deferred(model.params_mut(), grads, dense).unwrap_err().to_string();
    assert!(e.contains(&name) && e.contains("do not match"), "{e}");
    assert_eq!(adam.step, step);
    for ((n, a), (_, b)) in model.params().iter().zip(before.params()) {
        assert_eq!(*a, b, "{n} changed");
    }
    for ((n, a), (_, b)) in adam.state().iter().zip(&state) {
        assert_eq!(*a, b, "{n} changed");
    }
}
