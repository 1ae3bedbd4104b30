//! Writing spectra in LAMOST's low-resolution formats (for the synthetic survey), so that the whole
//! pipeline reads them exactly as it reads survey files. Files are written to a temporary name and
//! renamed.

use super::synth::Observed;
use crate::error::{Error, Result};
use fitsio::images::{ImageDescription, ImageType};
use fitsio::tables::{ColumnDataType, ColumnDescription};
use fitsio::FitsFile;
use std::path::Path;

/// Which LAMOST layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LamostLayout {
    /// DR1-DR7: primary image of 5 rows (flux, ivar, wavelength, andmask, ormask).
    Image,
    /// DR8 and later: header-only primary, `COADD` table with one row of vector columns.
    Coadd,
}

/// Where a synthetic star sits and what it is called.
#[derive(Clone, Debug)]
pub struct Identity {
    pub obsid: i64,
    pub ra: f64,
    pub dec: f64,
}

/// Writes one observed synthetic spectrum; the header says it is synthetic.
pub fn write_lamost(path: &Path, obs: &Observed, id: &Identity, layout: LamostLayout) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().ok_or_else(|| Error::file(path, "not a file name"))?.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let r = write_to(&tmp, obs, id, layout);
    match r {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_to(path: &Path, obs: &Observed, id: &Identity, layout: LamostLayout) -> Result<()> {
    let err = |e: fitsio::errors::Error| Error::file(path, format!("writing FITS: {e}"));
    let n = obs.wavelength.len();
    let wave: Vec<f32> = obs.wavelength.iter().map(|&l| l as f32).collect();
    let ormask = obs.andmask.clone();
    let mut f = match layout {
        LamostLayout::Image => FitsFile::create(path)
            .with_custom_primary(&ImageDescription { data_type: ImageType::Float, dimensions: &[5, n] })
            .open()
            .map_err(err)?,
        LamostLayout::Coadd => FitsFile::create(path).open().map_err(err)?,
    };
    let primary = f.primary_hdu().map_err(err)?;
    let snr = obs.labels.snr;
    let cards: [(&str, f64, &str); 9] = [
        ("RA", id.ra, "synthetic position"),
        ("DEC", id.dec, "synthetic position"),
        ("Z", obs.z, "radial velocity / c of the synthetic star"),
        ("SNRU", snr * 0.15, ""),
        ("SNRG", snr * 0.7, ""),
        ("SNRR", snr, ""),
        ("SNRI", snr * 1.1, ""),
        ("SNRZ", snr * 0.9, ""),
        ("COEFF0", 3.5682, "log10(wavelength) of pixel 0"),
    ];
    primary.write_key(&mut f, "SYNTHETI", ("T", "specnn synthetic survey: NOT a real spectrum")).map_err(err)?;
    primary.write_key(&mut f, "OBSID", id.obsid).map_err(err)?;
    for (k, v, c) in cards {
        let v = if v.is_finite() { v } else { 9999.0 };
        primary.write_key(&mut f, k, (v, c)).map_err(err)?;
    }
    primary.write_key(&mut f, "COEFF1", (1e-4, "log10 wavelength step")).map_err(err)?;
    primary.write_key(&mut f, "CLASS", "STAR").map_err(err)?;
    primary.write_key(&mut f, "VACUUM", ("T", "vacuum wavelengths")).map_err(err)?;
    match layout {
        LamostLayout::Image => {
            let mut data = Vec::with_capacity(5 * n);
            data.extend_from_slice(&obs.flux);
            data.extend_from_slice(&obs.ivar);
            data.extend_from_slice(&wave);
            data.extend_from_slice(&obs.andmask);
            data.extend_from_slice(&ormask);
            primary.write_image(&mut f, &data).map_err(err)?;
        }
        LamostLayout::Coadd => {
            let col = |name: &str| {
                let mut d = ColumnDescription::new(name);
                d.with_type(ColumnDataType::Float).that_repeats(n);
                d.create()
            };
            let descs = ["FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK"]
                .iter()
                .map(|c| col(c))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(err)?;
            let hdu = f.create_table("COADD", &descs).map_err(err)?;
            for (name, v) in [
                ("FLUX", &obs.flux),
                ("IVAR", &obs.ivar),
                ("WAVELENGTH", &wave),
                ("ANDMASK", &obs.andmask),
                ("ORMASK", &ormask),
            ] {
                hdu.write_col(&mut f, name, v).map_err(err)?;
            }
        }
    }
    Ok(())
}
