//! One observed (or simulated) spectrum as read from a file, before any preprocessing.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The medium wavelengths are measured in. specnn works in vacuum (LAMOST's and SDSS's convention);
/// air wavelengths (MILES) are converted on the way in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    Air,
    Vacuum,
}

/// The file layout a spectrum came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// LAMOST low resolution, DR1-DR7: primary-HDU image of rows flux, ivar, wavelength, andmask, ormask.
    LamostImage,
    /// LAMOST low resolution, DR8 and later: `COADD` binary table, one row of vector columns.
    LamostCoadd,
    /// SDSS/BOSS: `COADD` table with one row per pixel (flux, loglam, ivar, and_mask).
    SdssCoadd,
    /// A 1-D image with a linear wavelength axis (CRVAL1, CDELT1, CRPIX1), as the MILES library.
    LinearImage,
    /// A binary table of (wavelength, flux[, ivar]) rows.
    Table,
    /// A CSV file with wavelength and flux columns (ivar optional).
    Csv,
    /// Arrays handed over in memory (the Python package's `predict` and `train`).
    Memory,
}

/// What the header says about the observation (all optional: synthetic and library spectra lack most).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub obsid: Option<i64>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    /// Redshift from the survey pipeline (Z card).
    pub z: Option<f64>,
    /// Signal-to-noise per band (SNRU, SNRG, SNRR, SNRI, SNRZ as `u`, `g`, ...).
    pub snr: BTreeMap<String, f64>,
    pub class: Option<String>,
    /// Set when the file says it is synthetic (specnn's `SYNTHETI` card, or a FERRE model).
    pub synthetic: bool,
}

impl Meta {
    /// The signal-to-noise ratio used for catalogs: the r band where present, else the g band.
    pub fn snr_catalog(&self) -> Option<f64> {
        self.snr.get("r").or_else(|| self.snr.get("g")).copied()
    }
}

/// A spectrum: wavelengths in Angstrom (increasing), flux, inverse variance, and a bad-pixel mask.
#[derive(Clone, Debug)]
pub struct Spectrum {
    pub path: PathBuf,
    pub layout: Layout,
    pub medium: Medium,
    pub wavelength: Vec<f64>,
    pub flux: Vec<f64>,
    /// Inverse variance per pixel; 0 marks a pixel with no information. Files without one get 1.
    pub ivar: Vec<f64>,
    /// True where the pixel is bad: ivar = 0, a set and-mask bit, or a non-finite flux in such a pixel.
    pub bad: Vec<bool>,
    pub meta: Meta,
}

impl Spectrum {
    /// A spectrum from arrays in memory, checked as the readers check a file's ([`validate`]):
    /// `name` stands for the file in messages and catalogs. Without `ivar` every pixel weighs 1; a
    /// pixel is bad where `bad` says so or its inverse variance is 0, and a non-finite flux elsewhere
    /// is an error.
    pub fn from_arrays(
        name: &str,
        wavelength: Vec<f64>,
        flux: Vec<f64>,
        ivar: Option<Vec<f64>>,
        bad: Option<Vec<bool>>,
        medium: Medium,
        meta: Meta,
    ) -> crate::Result<Spectrum> {
        let n = wavelength.len();
        let ivar = ivar.unwrap_or_else(|| vec![1.0; n]);
        let bad = bad.unwrap_or_else(|| vec![false; n]);
        let mut s =
            Spectrum { path: PathBuf::from(name), layout: Layout::Memory, medium, wavelength, flux, ivar, bad, meta };
        validate(&mut s)?;
        Ok(s)
    }

    /// The file name (without folders), used to join labels.
    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Checks a spectrum and marks its bad pixels: lengths agree, wavelengths increase strictly and are
/// positive, ivar is never negative; a non-finite flux is allowed only where the pixel is already bad.
pub fn validate(s: &mut Spectrum) -> Result<()> {
    let p = s.path.clone();
    let n = s.wavelength.len();
    if n < 2 {
        return Err(Error::file(&p, format!("the spectrum has {n} pixels")));
    }
    if s.flux.len() != n || s.ivar.len() != n || s.bad.len() != n {
        return Err(Error::file(
            &p,
            format!(
                "wavelength, flux, ivar and mask lengths differ ({n}, {}, {}, {})",
                s.flux.len(),
                s.ivar.len(),
                s.bad.len()
            ),
        ));
    }
    if let Some(i) = first_failure(s.wavelength.iter().copied(), |w| w.is_finite() & (*w > 0.0)) {
        return Err(Error::file(&p, format!("wavelength at pixel {i} is {} (not a positive number)", s.wavelength[i])));
    }
    if let Some(i) = first_failure(s.wavelength.windows(2), |w| w[1] > w[0]) {
        return Err(Error::file(
            &p,
            format!(
                "wavelengths do not increase: pixel {} is {} and pixel {} is {}",
                i,
                s.wavelength[i],
                i + 1,
                s.wavelength[i + 1]
            ),
        ));
    }
    if let Some(i) = first_failure(s.ivar.iter().copied(), |v| *v >= 0.0) {
        return Err(Error::file(&p, format!("inverse variance at pixel {i} is {} (must be >= 0)", s.ivar[i])));
    }
    // LAMOST pads the ends with exactly zero flux (with non-zero ivar at the red end).
    let lamost = matches!(s.layout, Layout::LamostImage | Layout::LamostCoadd);
    for ((b, &v), &f) in s.bad.iter_mut().zip(&s.ivar).zip(&s.flux) {
        *b |= (v == 0.0) | !v.is_finite() | (lamost & (f == 0.0));
    }
    if let Some(i) = first_failure(s.flux.iter().zip(&s.bad), |(f, b)| f.is_finite() | *b) {
        let unmasked_bad_flux = (i..n).filter(|&i| !s.flux[i].is_finite() && !s.bad[i]).count();
        return Err(Error::file(
            &p,
            format!(
                "flux is {} at pixel {i} ({:.1} A), and at {unmasked_bad_flux} pixels in all, where the pixel is \
                not masked",
                s.flux[i], s.wavelength[i]
            ),
        ));
    }
    if s.bad.iter().all(|&b| b) {
        return Err(Error::file(&p, "every pixel is masked (ivar = 0 or flagged): the spectrum holds no information"));
    }
    let (lo, hi) = s
        .flux
        .iter()
        .zip(&s.bad)
        .filter(|(_, b)| !**b)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (&f, _)| (lo.min(f), hi.max(f)));
    if lo == hi {
        return Err(Error::file(
            &p,
            format!("the flux is {lo} at every good pixel: a zero-range spectrum holds no information"),
        ));
    }
    Ok(())
}

/// The index of the first item that fails `ok`, or None. Every spectrum read goes through these
/// checks, so the common case is a pass without early exit, which the compiler vectorises; the
/// failing item is searched for only when there is one.
fn first_failure<I: Iterator + Clone>(mut items: I, ok: impl Fn(&I::Item) -> bool) -> Option<usize> {
    if items.clone().fold(true, |acc, x| acc & ok(&x)) {
        None
    } else {
        items.position(|x| !ok(&x))
    }
}
