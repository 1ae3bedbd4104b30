//! The synthetic survey: label distributions, the physics it claims to carry, determinism, and files
//! that the readers and the pipeline take like survey files.

mod common;

use specnn::data::synth::{draw_labels, lamost_wavelengths, marcs_grid, render, star_rng, StarLabels};
use specnn::data::write::LamostLayout;
use specnn::data::{prepare, read_spectrum, Labels, Layout, PrepConfig, ReadOptions};
use specnn::simulate::{simulate, SimulateConfig};

fn sun() -> StarLabels {
    StarLabels {
        teff: 5800.0,
        logg: 4.4,
        feh: 0.0,
        cfe: 0.0,
        nfe: 0.0,
        mgfe: 0.0,
        ofe: 0.0,
        afe: 0.0,
        rv: 0.0,
        snr: f64::INFINITY,
    }
}

/// Equivalent width (A) of the absorption in `[lo, hi]` relative to the flux at the window's edges.
fn ew(flux: &[f64], wave: &[f64], lo: f64, hi: f64) -> f64 {
    let idx: Vec<usize> = (0..wave.len()).filter(|&i| wave[i] >= lo && wave[i] <= hi).collect();
    let (a, b) = (idx[0], *idx.last().unwrap());
    idx.iter()
        .map(|&i| {
            let cont = flux[a] + (flux[b] - flux[a]) * (wave[i] - wave[a]) / (wave[b] - wave[a]);
            (1.0 - flux[i] / cont) * (wave[i + 1] - wave[i])
        })
        .sum()
}

#[test]
fn label_distributions_follow_the_seed() {
    let stars: Vec<StarLabels> = (0..4000).map(|i| draw_labels(&mut star_rng(7, i))).collect();
    let frac = |f: &dyn Fn(&StarLabels) -> bool| stars.iter().filter(|s| f(s)).count() as f64 / stars.len() as f64;
    let vmp = frac(&|s| s.is_vmp());
    assert!((0.37..0.43).contains(&vmp), "VMP fraction {vmp}");
    assert!(stars.iter().all(|s| (3800.0..=8500.0).contains(&s.teff)
        && (0.14..=4.9).contains(&s.logg)
        && (-4.55..=0.67).contains(&s.feh)));
    // CEMP stars are more common at lower [Fe/H].
    let cemp_in = |lo: f64, hi: f64| {
        let sel: Vec<&StarLabels> = stars.iter().filter(|s| s.feh >= lo && s.feh < hi).collect();
        sel.iter().filter(|s| s.cfe > 1.0).count() as f64 / sel.len() as f64
    };
    assert!(cemp_in(-4.6, -3.0) > cemp_in(-3.0, -2.0) && cemp_in(-3.0, -2.0) > cemp_in(-2.0, 1.0));
    // Alpha enhancement at low metallicity; giants are cooler at lower gravity (a giant branch).
    let mean = |f: &dyn Fn(&StarLabels) -> bool, g: &dyn Fn(&StarLabels) -> f64| {
        let v: Vec<f64> = stars.iter().filter(|s| f(s)).map(g).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(&|s| s.feh < -1.5, &|s| s.afe) > 0.3 && mean(&|s| s.feh > -0.2, &|s| s.afe) < 0.1);
    assert!(mean(&|s| s.logg < 2.0, &|s| s.teff) < mean(&|s| s.logg > 4.0, &|s| s.teff));
    // Deterministic for a seed and index.
    assert_eq!(draw_labels(&mut star_rng(7, 12)), stars[12]);
}

#[test]
fn spectra_carry_the_abundances_in_the_right_features() {
    let wave = lamost_wavelengths();
    let base = sun();
    let at = |s: &StarLabels| render(s, &wave, 1800.0, (0.0, 0.0));
    // CH G band deepens with carbon; Mg b with magnesium; Na D and Fe lines with [Fe/H] (curve of growth).
    let g = |s: &StarLabels| ew(&at(s), &wave, 4270.0, 4320.0);
    assert!(
        g(&StarLabels { cfe: 0.5, ..base.clone() }) > g(&base)
            && g(&base) > g(&StarLabels { cfe: -0.5, ..base.clone() })
    );
    let mgb = |s: &StarLabels| ew(&at(s), &wave, 5160.0, 5195.0);
    assert!(mgb(&StarLabels { mgfe: 0.4, ..base.clone() }) > mgb(&base));
    // Na D measured against the same star at [Fe/H] = -6, so the continuum and response cancel.
    let reference = at(&StarLabels { feh: -6.0, ..base.clone() });
    let nad = |feh: f64| {
        let ratio: Vec<f64> =
            at(&StarLabels { feh, ..base.clone() }).iter().zip(&reference).map(|(a, b)| a / b).collect();
        ew(&ratio, &wave, 5880.0, 5905.0)
    };
    let (w3, w2, w1, w0) = (nad(-3.0), nad(-2.0), nad(-1.0), nad(0.0));
    assert!(w3 < w2 && w2 < w1 && w1 < w0, "Na D grows with [Fe/H]: {w3} {w2} {w1} {w0}");
    // Curve of growth: linear when weak (x10 abundance ~ x10 width), much slower once saturated.
    assert!((w2 / w3) > 5.0 && (w0 / w1) < 3.0, "weak ratio {} saturated ratio {}", w2 / w3, w0 / w1);
    // Balmer lines peak near 9000 K and their wings widen with gravity.
    let hg = |teff: f64, logg: f64| ew(&at(&StarLabels { teff, logg, ..base.clone() }), &wave, 4300.0, 4380.0);
    assert!(hg(8500.0, 4.0) > hg(6500.0, 4.0) && hg(6500.0, 4.0) > hg(5000.0, 4.0));
    assert!(hg(8000.0, 4.5) > hg(8000.0, 2.0));
    // C2 Swan bands appear in a carbon-rich cool giant, not in a normal one.
    let giant = StarLabels { teff: 4300.0, logg: 1.2, feh: -3.0, ofe: 0.5, ..base.clone() };
    let swan = |s: &StarLabels| ew(&at(s), &wave, 5080.0, 5170.0);
    assert!(swan(&StarLabels { cfe: 2.0, ..giant.clone() }) > 10.0 * swan(&giant).max(0.1), "CEMP Swan band");
    // O I 7774 follows oxygen; TiO appears only in cool stars.
    let oi = |ofe: f64| ew(&at(&StarLabels { teff: 6500.0, ofe, ..base.clone() }), &wave, 7765.0, 7785.0);
    assert!(oi(0.6) > oi(0.0));
    let tio = |teff: f64| ew(&at(&StarLabels { teff, logg: 1.0, ..base.clone() }), &wave, 7050.0, 7200.0);
    assert!(tio(3700.0) > 5.0 * tio(4800.0).max(0.05));
}

#[test]
fn marcs_grid_steps() {
    let g = marcs_grid(1);
    assert!(g.len() > 9000 && g.len() < 10400, "{} grid points", g.len());
    for s in &g {
        let on = |v: f64, step: f64| ((v / step).round() * step - v).abs() < 1e-9;
        assert!(if s.teff <= 4000.0 { on(s.teff, 100.0) } else { on(s.teff, 250.0) });
        assert!(
            on(s.logg, 0.5)
                && on(s.feh, 0.25)
                && on(s.cfe, 0.25)
                && on(s.nfe, 0.25)
                && on(s.ofe, 0.25)
                && on(s.afe, 0.25)
        );
        assert!(!(s.teff >= 7000.0 && s.logg < 2.0));
    }
}

#[test]
fn simulate_writes_a_survey_the_pipeline_reads() {
    let dir = common::tempdir();
    let out = dir.path().join("survey");
    let cfg = SimulateConfig { n: 24, seed: 3, layouts: vec![LamostLayout::Image, LamostLayout::Coadd], grid: false };
    assert_eq!(simulate(&cfg, &out, |_| {}).unwrap(), 24);
    let labels = Labels::read(&out.join("labels.csv")).unwrap();
    assert!(labels.synthetic, "labels.csv says the stars are synthetic");
    assert_eq!(labels.columns, ["teff", "logg", "feh", "cfe", "nfe", "mgfe", "ofe", "afe"]);
    let mut files: Vec<(String, Option<i64>)> = Vec::new();
    for (k, row) in labels.rows.iter().enumerate() {
        let path = out.join(row.file.as_ref().unwrap());
        let s = read_spectrum(&path, &ReadOptions::default()).unwrap();
        assert!(s.meta.synthetic, "the header says SYNTHETI");
        assert_eq!(s.layout, if k % 2 == 0 { Layout::LamostImage } else { Layout::LamostCoadd });
        assert_eq!(s.meta.obsid, row.obsid);
        assert!(s.bad.iter().any(|b| *b), "bad pixels are simulated");
        assert_eq!(prepare(&s, &PrepConfig::default(), None).unwrap().len(), 4096);
        assert_eq!(prepare(&s, &PrepConfig::csst(), None).unwrap().len(), 143);
        files.push((s.file_name(), s.meta.obsid));
    }
    assert_eq!(labels.join(&files).unwrap(), (0..24).collect::<Vec<_>>());

    // The same seed writes the same survey.
    let again = dir.path().join("again");
    simulate(&cfg, &again, |_| {}).unwrap();
    assert_eq!(std::fs::read(out.join("labels.csv")).unwrap(), std::fs::read(again.join("labels.csv")).unwrap());
    let a = read_spectrum(&out.join(labels.rows[5].file.as_ref().unwrap()), &ReadOptions::default()).unwrap();
    let b = read_spectrum(&again.join(labels.rows[5].file.as_ref().unwrap()), &ReadOptions::default()).unwrap();
    assert_eq!(a.flux, b.flux);

    // A grid is noise-free.
    let grid = dir.path().join("grid");
    simulate(&SimulateConfig { n: 5, seed: 1, layouts: vec![LamostLayout::Image], grid: true }, &grid, |_| {}).unwrap();
    let g = Labels::read(&grid.join("labels.csv")).unwrap();
    let s = read_spectrum(&grid.join(g.rows[0].file.as_ref().unwrap()), &ReadOptions::default()).unwrap();
    assert!(s.bad.iter().all(|b| !b) && s.meta.z == Some(0.0));
}
