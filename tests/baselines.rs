//! The baselines: specnn's own prediction from the stored trees and support vectors equals smartcore's
//! prediction from its fitted models, model files round-trip, and `--arch cannon|rf|svr` works through
//! train, predict and evaluate (on a small SYNTHETIC survey).

mod common;

use common::specnn;
use ndarray::Array2;
use specnn::baselines::{forest, svr, Baseline, BaselineKind};
use std::path::Path;

/// Rows of a smooth random "spectrum" set with labels that depend on it (not a science test).
fn data(n: usize, p: usize) -> (Vec<Vec<f32>>, Vec<f64>) {
    let mut s = 12345u64;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let x: Vec<Vec<f32>> = (0..n).map(|_| (0..p).map(|_| next() as f32).collect()).collect();
    let y: Vec<f64> = x.iter().map(|r| r[0] as f64 * 2.0 - r[3] as f64 + (r[5] as f64).powi(2)).collect();
    (x, y)
}

#[test]
fn forest_walk_equals_smartcore() {
    let (x, y) = data(300, 12);
    let rows: Vec<usize> = (0..200).collect();
    let test: Vec<usize> = (200..300).collect();
    let (trees, want) = forest::smartcore_fit_predict(&x, &y, &rows, &test, 3).unwrap();
    let f = forest::Forest { inputs: 12, trees: vec![trees] };
    let got = f.predict(&x, &test);
    for (i, w) in want.iter().enumerate() {
        assert!(
            (got[[i, 0]] - w).abs() <= 1e-12 * w.abs().max(1.0),
            "row {i}: specnn {} vs smartcore {w}",
            got[[i, 0]]
        );
    }
}

#[test]
fn svr_kernel_sum_equals_smartcore() {
    let (x, y) = data(200, 10);
    let rows: Vec<usize> = (0..150).collect();
    let test: Vec<usize> = (150..200).collect();
    let (m, want) = svr::fit_one(&x, &y, &rows, &test).unwrap();
    let s = svr::Svr { pca: None, models: vec![m] };
    let got = s.predict(&x, &test);
    for (i, w) in want.iter().enumerate() {
        assert!((got[[i, 0]] - w).abs() <= 1e-9 * w.abs().max(1.0), "row {i}: specnn {} vs smartcore {w}", got[[i, 0]]);
    }
}

#[test]
fn baselines_round_trip_through_their_tensors() {
    let (x, y) = data(120, 8);
    let z = Array2::from_shape_fn((120, 2), |(i, j)| if j == 0 { y[i] } else { x[i][1] as f64 });
    let rows: Vec<usize> = (0..100).collect();
    let test: Vec<usize> = (100..120).collect();
    for kind in [BaselineKind::Cannon, BaselineKind::Rf, BaselineKind::Svr] {
        let b = Baseline::fit(kind, &x, &z, &rows, 1).unwrap();
        let back = Baseline::from_tensors(kind, &b.to_tensors()).unwrap();
        let (p, q) = (b.predict(&x, &test).unwrap(), back.predict(&x, &test).unwrap());
        for (a, c) in p.iter().zip(q.iter()) {
            assert!((a - c).abs() <= 1e-4 * a.abs().max(1.0), "{kind:?}: {a} vs {c} after the round trip");
        }
        // A file missing a tensor is refused by name.
        let mut t = b.to_tensors();
        let first = t.keys().next().unwrap().clone();
        t.remove(&first);
        assert!(Baseline::from_tensors(kind, &t).is_err(), "{kind:?} without `{first}`");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn baselines_train_predict_and_evaluate_from_the_command_line() {
    let dir = common::tempdir();
    let train = dir.path().join("train");
    assert_eq!(specnn(&["simulate", "--n", "260", "--seed", "5", "--out", s(&train)]).0, 0);
    let labels = train.join("labels.csv");
    for arch in ["cannon", "rf", "svr", "knn"] {
        let model = dir.path().join(format!("{arch}.safetensors"));
        let (code, out, err) = specnn(&[
            "train",
            "--spectra",
            s(&train),
            "--labels",
            s(&labels),
            "--arch",
            arch,
            "--resolution",
            "200",
            "--targets",
            "teff,logg,feh",
            "--out",
            s(&model),
            "--device",
            "cpu",
        ]);
        assert_eq!(code, 0, "{arch}: {out}\n{err}");
        assert!(out.contains("validation MAE teff"), "{out}");
        let cat = dir.path().join(format!("{arch}.csv"));
        let (code, out, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&cat)]);
        assert_eq!(code, 0, "{arch}: {out}\n{err}");
        let text = std::fs::read_to_string(&cat).unwrap();
        assert!(
            text.starts_with("file,obsid,ra,dec,snr,teff,teff_err,logg,logg_err,feh,feh_err,flags,p_vmp,vmp,reason\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 261);
        let report = dir.path().join(format!("rep-{arch}"));
        let (code, out, err) = common::evaluate(&model, &train, &labels, &report);
        assert_eq!(code, 0, "{arch}: {out}\n{err}");
        assert!(std::fs::read_to_string(report.join("report.md")).unwrap().contains(&format!("\"kind\":\"{arch}\"")));
        // Baselines are fitted in one go: --resume is refused with a reason.
        let (code, _, err) = specnn(&[
            "train",
            "--spectra",
            s(&train),
            "--labels",
            s(&labels),
            "--arch",
            arch,
            "--resolution",
            "200",
            "--targets",
            "feh",
            "--out",
            s(&model),
            "--resume",
        ]);
        assert_eq!(code, 1);
        assert!(err.contains("--resume is for networks"), "{err}");
    }
}

#[test]
fn svr_with_fewer_stars_than_pixels_is_refused_clearly() {
    let (x, y) = data(30, 40);
    let err = svr::fit_one(&x, &y, &(0..30).collect::<Vec<_>>(), &[]).unwrap_err().to_string();
    assert!(err.contains("30 training stars for 40 pixels"), "{err}");
}

/// An SVR on spectra of more pixels than principal components works on the projection, and the
/// projection travels with the model file.
#[test]
fn svr_projects_long_spectra_and_round_trips() {
    let (x, y) = data(150, 100);
    let z = Array2::from_shape_fn((150, 1), |(i, _)| y[i]);
    let rows: Vec<usize> = (0..90).collect();
    let b = Baseline::fit(BaselineKind::Svr, &x, &z, &rows, 1).unwrap();
    let Baseline::Svr(s) = &b else { panic!("an SVR") };
    assert_eq!(s.pca.as_ref().map(|p| p.components.len()), Some(svr::PCA_COMPONENTS));
    assert_eq!(b.inputs(), 100);
    let back = Baseline::from_tensors(BaselineKind::Svr, &b.to_tensors()).unwrap();
    let test: Vec<usize> = (90..150).collect();
    let (p, q) = (b.predict(&x, &test).unwrap(), back.predict(&x, &test).unwrap());
    for (a, c) in p.iter().zip(q.iter()) {
        assert!((a - c).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {c}");
    }
    assert!(
        b.predict(&x[..1].iter().map(|r| r[..50].to_vec()).collect::<Vec<_>>(), &[0]).is_err(),
        "a 50-pixel spectrum is refused"
    );
}

/// crossval with a baseline: the report names the baseline, not a network architecture.
#[test]
fn crossval_of_a_baseline_names_it() {
    let dir = common::tempdir();
    let train = dir.path().join("train");
    assert_eq!(specnn(&["simulate", "--n", "80", "--seed", "6", "--out", s(&train)]).0, 0);
    let report = dir.path().join("cv");
    let (code, out, err) = specnn(&[
        "crossval",
        "--spectra",
        s(&train),
        "--labels",
        s(&train.join("labels.csv")),
        "--arch",
        "rf",
        "--resolution",
        "200",
        "--targets",
        "feh",
        "--folds",
        "2",
        "--out",
        s(&dir.path().join("models")),
        "--report",
        s(&report),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("2-fold cross-validation of `{\"kind\":\"rf\",\"inputs\":143}`"), "{md}");
    // The forest's spread gives sigmas: the fold models' own and a calibration on the other fold.
    assert!(md.contains("within 2 sigma, other folds |") && md.contains("Two calibrations"), "{md}");
}
