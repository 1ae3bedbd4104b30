//! `specnn simulate`: writes a synthetic survey (LAMOST-format FITS files and `labels.csv`).
//! Every file and every row says it is synthetic.

use crate::catalog::{Catalog, ColumnData};
use crate::data::synth::{draw_labels, marcs_grid, observe, star_rng, Observed, Observing, StarLabels};
use crate::data::write::{write_lamost, Identity, LamostLayout};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::Path;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimulateConfig {
    /// Number of stars (for a grid: 0 = every grid point, else a seeded random subset).
    pub n: usize,
    pub seed: u64,
    /// Layouts to write; stars alternate between them.
    pub layouts: Vec<LamostLayout>,
    /// Noise-free MARCS-step grid instead of a survey.
    pub grid: bool,
}

/// The labels of the stars a configuration makes.
pub fn star_labels(cfg: &SimulateConfig) -> Vec<StarLabels> {
    if cfg.grid {
        let mut all = marcs_grid(cfg.seed);
        if cfg.n > 0 && cfg.n < all.len() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xA11);
            for i in (1..all.len()).rev() {
                all.swap(i, rng.random_range(0..=i));
            }
            all.truncate(cfg.n);
        }
        all
    } else {
        (0..cfg.n as u64).map(|i| draw_labels(&mut star_rng(cfg.seed, i))).collect()
    }
}

/// Writes the survey into `out` (created if needed); `progress` is called with the number done.
pub fn simulate(cfg: &SimulateConfig, out: &Path, progress: impl Fn(usize) + Sync) -> Result<usize> {
    if cfg.layouts.is_empty() {
        return Err(Error::invalid("simulate", "no layout to write"));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let labels = star_labels(cfg);
    let how = if cfg.grid { Observing::noise_free() } else { Observing::survey() };
    let kind = if cfg.grid { "grid" } else { "survey" };
    let name = |i: usize| format!("synth-{kind}-s{}-{i:06}.fits", cfg.seed);
    let obsid = |i: usize| 900_000_000_000 + (cfg.seed % 1000) as i64 * 1_000_000 + i as i64;
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Stars are made and written in parallel; each has its own generator, so the result does not
    // depend on scheduling. cfitsio is used one file per task.
    labels.par_iter().enumerate().try_for_each(|(i, l)| -> Result<()> {
        let mut rng = star_rng(cfg.seed ^ 0x0B5, i as u64);
        let obs: Observed = observe(l.clone(), &how, &mut rng);
        let id = Identity { obsid: obsid(i), ra: rng.random_range(0.0..360.0), dec: rng.random_range(-10.0..60.0) };
        write_lamost(&out.join(name(i)), &obs, &id, cfg.layouts[i % cfg.layouts.len()])?;
        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        Ok(())
    })?;

    let mut cat = Catalog::default();
    let f64col = |g: &dyn Fn(&StarLabels) -> f64| {
        ColumnData::F64(labels.iter().map(|l| Some(g(l)).filter(|v| v.is_finite())).collect())
    };
    cat.push("file", "", ColumnData::Str((0..labels.len()).map(name).collect()));
    cat.push("obsid", "", ColumnData::I64((0..labels.len()).map(|i| Some(obsid(i))).collect()));
    cat.push("synthetic", "", ColumnData::Flag(vec![Some(true); labels.len()]));
    cat.push("teff", "K", f64col(&|l| l.teff));
    cat.push("logg", "dex", f64col(&|l| l.logg));
    cat.push("feh", "dex", f64col(&|l| l.feh));
    cat.push("cfe", "dex", f64col(&|l| l.cfe));
    cat.push("nfe", "dex", f64col(&|l| l.nfe));
    cat.push("mgfe", "dex", f64col(&|l| l.mgfe));
    cat.push("ofe", "dex", f64col(&|l| l.ofe));
    cat.push("afe", "dex", f64col(&|l| l.afe));
    cat.push("rv", "km/s", f64col(&|l| if cfg.grid { 0.0 } else { l.rv }));
    cat.push("snr", "", f64col(&|l| l.snr));
    cat.push("vmp", "", ColumnData::Flag(labels.iter().map(|l| Some(l.is_vmp())).collect()));
    cat.push("cemp", "", ColumnData::Flag(labels.iter().map(|l| Some(l.is_cemp())).collect()));
    cat.write(&out.join("labels.csv"))?;
    Ok(labels.len())
}
