//! Preprocessing steps and the pipeline, on synthetic arrays with known answers and on real files.

mod common;

use ndarray::Array2;
use specnn::data::prep::{
    air_to_vacuum, degrade_resolution, degrade_resolution_at, exp_steps, fill_bad, pixels_read, resample, sigma_ln,
    vacuum_to_air, window_mask,
};
use specnn::data::{prepare, read_spectrum, Grid, Pca, PrepConfig, ReadOptions};

#[test]
fn air_and_vacuum() {
    // Morton 2000: 5000 A in air is 5001.39 A in vacuum; H-alpha 6562.80 air is 6564.61 vacuum.
    assert!((air_to_vacuum(5000.0) - 5001.394).abs() < 2e-3, "{}", air_to_vacuum(5000.0));
    assert!((air_to_vacuum(6562.80) - 6564.61).abs() < 1e-2);
    for l in [3600.0, 4861.3, 8500.0] {
        assert!((vacuum_to_air(air_to_vacuum(l)) - l).abs() < 1e-8);
    }
}

#[test]
fn grids() {
    let g = Grid::seed().wavelengths();
    assert_eq!((g.len(), g[0], g[4095]), (4096, 4000.0, 8095.0));
    let c = Grid::csst(200.0, 143).wavelengths();
    assert_eq!(c.len(), 143);
    assert!(((c[1] / c[0]).ln() - 0.005).abs() < 1e-12 && (c[142] - 8136.0).abs() < 0.1, "{}", c[142]);
}

#[test]
fn resampling_carries_ivar_and_masks() {
    let wave = [1.0, 2.0, 3.0, 4.0, 5.0];
    let flux = [10.0, 20.0, 30.0, 40.0, 50.0];
    let ivar = [1.0, 1.0, 4.0, 1.0, 1.0];
    let bad = [false, false, false, true, false];
    let r = resample(&wave, &flux, &ivar, &bad, &[0.5, 1.0, 1.5, 2.5, 3.0, 3.5, 5.0, 6.0]);
    assert_eq!(r.good, vec![false, true, true, true, true, false, true, false]);
    assert_eq!(r.flux[2], 15.0);
    assert_eq!(r.ivar[2], 2.0, "midway between two ivar-1 pixels: var = 0.25 + 0.25");
    assert_eq!(r.ivar[3], 1.0 / (0.25 + 0.25 / 4.0));
    assert_eq!(r.ivar[4], 4.0, "on a pixel, its own ivar");
    assert_eq!(r.coverage, 6.0 / 8.0);
    let mut f = r.flux.clone();
    fill_bad(&mut f, &r.good).unwrap();
    assert_eq!(f[0], 10.0);
    assert_eq!(f[5], (30.0 + 50.0) / 2.0, "filled linearly between good neighbours");
    assert_eq!(f[7], 50.0);
    assert!(fill_bad(&mut [1.0, 2.0], &[false, false]).is_err());
}

/// The resolving power of a line profile sampled uniformly in ln lambda, from its second moment.
fn measured_r(profile: &[f64], dln: f64) -> f64 {
    let total: f64 = profile.iter().sum();
    let mean = profile.iter().enumerate().map(|(i, p)| i as f64 * p).sum::<f64>() / total;
    let var = profile.iter().enumerate().map(|(i, p)| (i as f64 - mean).powi(2) * p).sum::<f64>() / total;
    1.0 / (var.sqrt() * dln * (8.0 * std::f64::consts::LN_2).sqrt())
}

#[test]
fn degradation_reaches_the_requested_resolution() {
    let dln = 2e-5;
    let n = 4001;
    // A delta function (infinite native resolution) becomes the target line-spread function.
    let mut delta = vec![0.0; n];
    delta[n / 2] = 1.0;
    for r in [200.0, 500.0, 1800.0] {
        let out = degrade_resolution(&delta, dln, 1e9, r).unwrap();
        let got = measured_r(&out, dln);
        assert!((got / r - 1.0).abs() < 0.02, "delta at R={r}: measured R={got}");
    }
    // A Gaussian line at R=2000 degraded to R=200 has the width of R=200.
    let s = sigma_ln(2000.0) / dln;
    let line: Vec<f64> = (0..n).map(|i| (-0.5 * ((i as f64 - (n / 2) as f64) / s).powi(2)).exp()).collect();
    assert!((measured_r(&line, dln) / 2000.0 - 1.0).abs() < 0.02);
    let out = degrade_resolution(&line, dln, 2000.0, 200.0).unwrap();
    let got = measured_r(&out, dln);
    assert!((got / 200.0 - 1.0).abs() < 0.02, "Gaussian line: measured R={got}");
    assert!(degrade_resolution(&line, dln, 200.0, 2000.0).is_err(), "cannot sharpen");
}

/// The pipeline smooths only the pixels its final resampling reads: `pixels_read` must name every
/// pixel `resample` draws on (changing any other leaves the result unchanged, bit for bit), and
/// `degrade_resolution_at` must give `degrade_resolution`'s values there, ends included.
#[test]
fn degradation_at_the_pixels_read_matches_the_full_one() {
    let dln = 2.3e-4;
    let m = 3900;
    let uniform: Vec<f64> = exp_steps(dln, m).iter().map(|e| 3700.0 * e).collect();
    assert!(
        uniform.iter().enumerate().all(|(i, &l)| l == 3700.0 * (i as f64 * dln).exp()),
        "cached table differs from exp"
    );
    let flux: Vec<f64> =
        (0..m).map(|i| 1.0 + 0.3 * (i as f64 * 0.05).sin() + 0.01 * ((i * 7919) % 13) as f64).collect();
    let (ivar, bad) = (vec![4.0; m], vec![false; m]);
    // A coarse grid that starts before and ends past the spectrum, and one pixel exactly on a sample.
    let mut grid = Grid::csst(200.0, 143).wavelengths();
    grid[3] = uniform[500];
    grid.insert(0, 3600.0);
    let read = pixels_read(&uniform, &grid);
    assert!(read.iter().filter(|r| **r).count() < m / 5, "a coarse grid reads few pixels");
    let full = degrade_resolution(&flux, dln, 1800.0, 200.0).unwrap();
    let part = degrade_resolution_at(&flux, dln, 1800.0, 200.0, Some(&read)).unwrap();
    for i in 0..m {
        assert!(if read[i] { part[i] == full[i] } else { part[i] == 0.0 }, "pixel {i}: {} vs {}", part[i], full[i]);
    }
    let (a, b) = (resample(&uniform, &full, &ivar, &bad, &grid), resample(&uniform, &part, &ivar, &bad, &grid));
    assert_eq!((a.flux, a.ivar, a.good), (b.flux, b.ivar, b.good));
    // And a pixel it says is read does change the result.
    let k = read.iter().position(|r| *r).unwrap();
    let mut changed = full.clone();
    changed[k] += 1.0;
    assert_ne!(
        resample(&uniform, &changed, &ivar, &bad, &grid).flux,
        resample(&uniform, &full, &ivar, &bad, &grid).flux
    );
}

#[test]
fn window_mask_keeps_only_the_window() {
    let wave = Grid::seed().wavelengths();
    let mut v = vec![1.0; wave.len()];
    window_mask(&mut v, &wave, 4000.0, 5500.0);
    assert_eq!(v.iter().filter(|x| **x == 1.0).count(), 1501);
    assert_eq!(v[1500], 1.0);
    assert_eq!(v[1501], 0.0);
}

#[test]
fn pca_finds_the_planted_directions() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let (n, d) = (200, 60);
    let mut rng = StdRng::seed_from_u64(4);
    let v1: Vec<f64> = (0..d).map(|i| (i as f64 / 5.0).sin()).collect();
    let v2: Vec<f64> = (0..d).map(|i| (i as f64 / 3.0).cos()).collect();
    let x = Array2::from_shape_fn((n, d), |(s, j)| {
        let a = ((s * 7919) % 101) as f64 / 10.0 - 5.0;
        let b = ((s * 104729) % 37) as f64 / 10.0 - 1.8;
        3.0 + a * v1[j] + b * v2[j] + rng.random_range(-1e-3..1e-3)
    });
    let pca = Pca::fit(x.view(), 2, 1).unwrap();
    assert!(pca.variance[0] >= pca.variance[1]);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    for c in &pca.components {
        assert!((norm(c) - 1.0).abs() < 1e-9);
        // Each component lies in span(v1, v2): its residual after projection is tiny.
        let n1 = norm(&v1);
        let u1: Vec<f64> = v1.iter().map(|x| x / n1).collect();
        let d12: f64 = u1.iter().zip(&v2).map(|(a, b)| a * b).sum();
        let w2: Vec<f64> = v2.iter().zip(&u1).map(|(b, a)| b - d12 * a).collect();
        let nw = norm(&w2);
        let u2: Vec<f64> = w2.iter().map(|x| x / nw).collect();
        let p1: f64 = c.iter().zip(&u1).map(|(a, b)| a * b).sum();
        let p2: f64 = c.iter().zip(&u2).map(|(a, b)| a * b).sum();
        assert!(p1 * p1 + p2 * p2 > 0.999, "component outside the planted plane: {}", p1 * p1 + p2 * p2);
    }
    let t = pca.transform(x.view()).unwrap();
    assert_eq!(t.dim(), (n, 2));
    assert!(pca.transform(Array2::zeros((3, d + 1)).view()).is_err());
}

#[test]
fn pipeline_on_real_spectra() {
    let Some(data) = common::shared_data() else { return };
    let opts = ReadOptions::default();
    let lamost = read_spectrum(
        &data.join("lamost/lamost_lrs_primaryimage_laspec/spec-58397-EG014118N254444M01_sp03-031.fits"),
        &opts,
    )
    .unwrap();
    let v = prepare(&lamost, &PrepConfig::default(), None).unwrap();
    assert_eq!(v.len(), 4096);
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert_eq!((lo, hi), (0.0, 1.0));
    let csst = prepare(&lamost, &PrepConfig::csst(), None).unwrap();
    assert_eq!(csst.len(), 143);
    assert!(csst.iter().all(|x| (0.0..=1.0).contains(x)));
    // The G-band window: everything beyond 5500 A is zero.
    let cfg = PrepConfig { window: Some((4000.0, 5500.0)), ..PrepConfig::default() };
    let w = prepare(&lamost, &cfg, None).unwrap();
    assert!(w[1501..].iter().all(|x| *x == 0.0) && w[..1501].iter().any(|x| *x > 0.0));
    // Continuum normalisation runs and still ends in [0, 1].
    let c = prepare(&lamost, &PrepConfig { continuum_width: Some(151), ..PrepConfig::default() }, None).unwrap();
    assert!(c.iter().all(|x| (0.0..=1.0).contains(x)));

    // MILES stops at 7410 A (air): refused by default with a clear message, usable when asked.
    let miles = read_spectrum(&data.join("miles/MILES_res2.50_star_m0001V.fits"), &opts).unwrap();
    let e = prepare(&miles, &PrepConfig::default(), None).unwrap_err().to_string();
    assert!(e.contains("MILES_res2.50_star_m0001V.fits") && e.contains("covers 83."), "{e}");
    let v = prepare(&miles, &PrepConfig { min_coverage: 0.8, ..PrepConfig::default() }, None).unwrap();
    assert_eq!(v.len(), 4096);
    assert_eq!(prepare(&miles, &PrepConfig { min_coverage: 0.8, ..PrepConfig::csst() }, None).unwrap().len(), 143);
}

#[test]
fn pipeline_rejects_flat_spectra_and_shifts_to_rest_frame() {
    let dir = common::tempdir();
    let write = |name: &str, f: &dyn Fn(usize) -> f64| {
        let path = dir.path().join(name);
        let mut body = String::from("wavelength,flux\n");
        for i in 0..5000 {
            body += &format!("{},{:e}\n", 3900 + i, f(i));
        }
        std::fs::write(&path, &body).unwrap();
        path
    };
    // Exactly constant: the reader refuses it.
    let flat = write("flat.csv", &|_| 2.5);
    let e = read_spectrum(&flat, &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("flat.csv") && e.contains("zero-range"), "{e}");
    // Constant to rounding level: read, then refused by the pipeline instead of normalised into noise.
    let ripple = write("ripple.csv", &|i| 2.5 * (1.0 + 1e-13 * (i % 3) as f64));
    let s = read_spectrum(&ripple, &ReadOptions::default()).unwrap();
    let e = prepare(&s, &PrepConfig::default(), None).unwrap_err().to_string();
    assert!(e.contains("ripple.csv") && e.contains("flat"), "{e}");

    // A line at 5000 A observed at +300 km/s sits at 5005.0 A; the rest frame brings it back.
    let line = dir.path().join("line.csv");
    let mut body = String::from("wavelength,flux\n");
    for i in 0..50000 {
        let l = 3900.0 + i as f64 * 0.1;
        body += &format!(
            "{l},{}\n",
            1.0 - 0.8 * (-0.5 * ((l - 5000.0 * (1.0 + 300.0 / 299792.458)) / 1.0f64).powi(2)).exp()
        );
    }
    std::fs::write(&line, &body).unwrap();
    let s = read_spectrum(&line, &ReadOptions::default()).unwrap();
    let v = prepare(&s, &PrepConfig::default(), Some(300.0)).unwrap();
    let min = v.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(min, 1000, "the line's minimum lands on the 5000 A pixel");
}

/// The 2-D CNN on R=200 spectra: 143 pixels are zero-padded to 144 and S-folded into 12x12.
#[test]
fn short_spectra_are_padded_and_folded_for_the_cnn() {
    use specnn::nn::{Activation, Arch};
    let arch = Arch::VmpCnn {
        in_side: 12,
        channels: vec![2],
        kernel: 3,
        padding: specnn::ops::conv2d::Padding::Same,
        activation: Activation::Relu,
        dense: vec![4],
        outputs: 1,
    };
    let row: Vec<f32> = (0..143).map(|i| i as f32 + 1.0).collect();
    let x = specnn::data::dataset::to_input(&arch, &[&row]).unwrap();
    assert_eq!(x.shape(), &[1, 1, 12, 12]);
    // Row 0 runs left to right, row 1 right to left (S-fold); the padding is the last row's end.
    assert_eq!(x[[0, 0, 0, 0]], 1.0);
    assert_eq!(x[[0, 0, 1, 11]], 13.0);
    assert_eq!(x[[0, 0, 11, 0]], 0.0, "the 144th pixel is padding (row 11 runs right to left)");
    assert_eq!(x[[0, 0, 11, 1]], 143.0);
    // Too short or too long for the fold is an error.
    assert!(specnn::data::dataset::to_input(&arch, &[&row[..100]]).is_err());
}
