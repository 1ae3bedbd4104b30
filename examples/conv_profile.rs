//! Times each pass of each of the seed's 9x9 convolutions (batch 32) with both algorithms.
//! `cargo run --release --example conv_profile [fft]` (`fft`: time only the FFT path)
use ndarray::{ArrayD, IxDyn};
use specnn::cpu::conv::{self, ConvGeom};
use specnn::cpu::fftconv;
use std::time::Instant;

fn main() {
    for (c, o, side) in [(1usize, 64usize, 64usize), (64, 128, 32), (128, 256, 16)] {
        let g =
            ConvGeom { n: 32, c, h: side, w: side, o, kh: 9, kw: 9, sh: 1, sw: 1, ph: 4, pw: 4, oh: side, ow: side };
        let x = vec![0.5f32; g.n * c * side * side];
        let w = vec![0.01f32; o * c * 81];
        let dy = vec![0.1f32; g.n * o * side * side];
        let mut y = vec![0f32; g.n * o * side * side];
        let wm = ArrayD::from_shape_vec(IxDyn(&[o, c * 81]), w.clone()).unwrap().into_dimensionality().unwrap();
        let t = |f: &mut dyn FnMut()| {
            f();
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        };
        let only_fft = std::env::args().any(|a| a == "fft");
        let (a, b, cc) = if only_fft {
            (0.0, 0.0, 0.0)
        } else {
            (
                t(&mut || conv::forward(&x, wm.view(), None, &g, &mut y)),
                t(&mut || {
                    conv::backward_input(wm.view(), &dy, &g);
                }),
                t(&mut || {
                    conv::backward_weight(&x, &dy, &g);
                }),
            )
        };
        let d = t(&mut || fftconv::forward(&x, &w, None, &g, &mut y));
        let e = t(&mut || {
            fftconv::backward_input(&w, &dy, &g);
        });
        let f = t(&mut || {
            fftconv::backward_weight(&x, &dy, &g);
        });
        let direct = if only_fft { String::new() } else { format!("im2col fwd {a:.1} ms, dx {b:.1}, dw {cc:.1} | ") };
        println!("{c}->{o} at {side}x{side}, batch 32: {direct}fft fwd {d:.1} ms, dx {e:.1}, dw {f:.1}");
    }
}
