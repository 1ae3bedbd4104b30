//! Readers: every spectrum layout specnn accepts, detected from the file's contents (never from its
//! name or data release), each checked before it is returned.
//!
//! | layout | detected by | medium |
//! |---|---|---|
//! | LAMOST LRS image (DR1-DR7) | primary image of 5 rows with COEFF0 | vacuum (VACUUM card) |
//! | LAMOST LRS COADD (DR8+) | table `COADD` with vector FLUX, IVAR, WAVELENGTH columns | vacuum |
//! | SDSS/BOSS COADD | table with per-pixel `flux`, `loglam`, `ivar` | vacuum |
//! | 1-D linear image (MILES) | primary 1-D image with CRVAL1, CDELT1 | air unless VACUUM = T or AIRORVAC = 'vac' |
//! | (wavelength, flux[, ivar]) table | first table with wavelength and flux columns | vacuum (1) |
//! | CSV | `.csv` extension; `wavelength`/`wave`/`lambda`, `flux`, `ivar` (optional) | vacuum (2) |
//!
//! (1) unless AIRORVAC = 'air' or VACUUM = F. (2) unless `--medium air`.
//!
//! Wavelengths are read from the data (LAMOST's COEFF0 is rounded to 4 decimals and would misplace
//! pixels). LAMOST medium-resolution files (COADD_B / COADD_R tables) are refused with a message.

pub use super::spectrum::validate;
use super::spectrum::{Layout, Medium, Meta, Spectrum};
use crate::error::{Error, Result};
use fitsio::hdu::{FitsHdu, HduInfo};
use fitsio::FitsFile;
use std::path::Path;

/// Options of the readers; the CLI's `--medium` and `--recursive` (train, crossval, predict, evaluate).
#[derive(Clone, Copy, Debug, Default, PartialEq, clap::Args)]
pub struct ReadOptions {
    /// Take wavelengths as air or vacuum whatever the files say (for files whose headers do not say).
    #[arg(long, value_enum)]
    pub medium: Option<Medium>,
    /// Search the folders given as inputs with all their subfolders (LAMOST's date/plan folders).
    #[arg(long)]
    pub recursive: bool,
}

/// Reads one spectrum file, detecting its layout.
pub fn read_spectrum(path: &Path, opts: &ReadOptions) -> Result<Spectrum> {
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut spec = if is_csv { read_csv(path)? } else { read_fits(path)? };
    if let Some(m) = opts.medium {
        spec.medium = m;
    }
    validate(&mut spec)?;
    Ok(spec)
}

fn fits_err(path: &Path, what: &str, e: fitsio::errors::Error) -> Error {
    Error::file(path, format!("{what}: {e}"))
}

fn open(path: &Path) -> Result<FitsFile> {
    if !path.exists() {
        return Err(Error::file(path, "no such file"));
    }
    let mut head = [0u8; 30];
    let is_gz = path.extension().is_some_and(|e| e == "gz");
    if !is_gz {
        use std::io::Read;
        let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| Error::io(path, e))?;
        if n < 9 || &head[..9] != b"SIMPLE  =" {
            return Err(Error::file(path, "not a FITS file (it does not start with a SIMPLE card)"));
        }
    }
    FitsFile::open(path).map_err(|e| fits_err(path, "cannot open as FITS (truncated or not FITS?)", e))
}

fn key_f64(f: &mut FitsFile, hdu: &FitsHdu, name: &str) -> Option<f64> {
    hdu.read_key::<f64>(f, name).ok().filter(|v| v.is_finite())
}

fn key_str(f: &mut FitsFile, hdu: &FitsHdu, name: &str) -> Option<String> {
    hdu.read_key::<String>(f, name).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn header_meta(f: &mut FitsFile, hdu: &FitsHdu) -> Meta {
    let mut snr = std::collections::BTreeMap::new();
    for band in ["u", "g", "r", "i", "z"] {
        if let Some(v) = key_f64(f, hdu, &format!("SNR{}", band.to_uppercase())) {
            snr.insert(band.to_string(), v);
        }
    }
    Meta {
        obsid: hdu.read_key::<i64>(f, "OBSID").ok(),
        ra: key_f64(f, hdu, "RA"),
        dec: key_f64(f, hdu, "DEC"),
        z: key_f64(f, hdu, "Z"),
        snr,
        class: key_str(f, hdu, "CLASS"),
        synthetic: key_str(f, hdu, "SYNTHETI").is_some_and(|v| v == "T" || v == "1")
            || hdu.read_key::<bool>(f, "SYNTHETI").unwrap_or(false),
    }
}

/// The medium a header declares, if it does.
fn header_medium(f: &mut FitsFile, hdu: &FitsHdu) -> Option<Medium> {
    if let Some(v) = key_str(f, hdu, "AIRORVAC") {
        return Some(if v.to_lowercase().starts_with("air") { Medium::Air } else { Medium::Vacuum });
    }
    match key_str(f, hdu, "VACUUM").as_deref() {
        Some("T") | Some("1") => Some(Medium::Vacuum),
        Some("F") | Some("0") => Some(Medium::Air),
        _ => None,
    }
}

struct TableHdu {
    index: usize,
    name: String,
    rows: usize,
    /// (name, repeat)
    columns: Vec<(String, usize)>,
}

impl TableHdu {
    fn col(&self, names: &[&str]) -> Option<&(String, usize)> {
        names.iter().find_map(|n| self.columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(n)))
    }
}

fn tables(f: &mut FitsFile) -> Vec<TableHdu> {
    let n = f.num_hdus().unwrap_or(1);
    (1..n)
        .filter_map(|i| {
            let hdu = f.hdu(i).ok()?;
            let name = key_str(f, &hdu, "EXTNAME").unwrap_or_default();
            match &hdu.info {
                HduInfo::TableInfo { column_descriptions, num_rows } => Some(TableHdu {
                    index: i,
                    name,
                    rows: *num_rows,
                    columns: column_descriptions.iter().map(|c| (c.name.clone(), c.data_type.repeat)).collect(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// Reads the first column of `t` named by one of `names` (case-insensitive), or None when it has none.
fn read_column(path: &Path, f: &mut FitsFile, t: &TableHdu, names: &[&str]) -> Result<Option<Vec<f64>>> {
    let Some((col, _)) = t.col(names) else { return Ok(None) };
    let hdu = f.hdu(t.index).map_err(|e| fits_err(path, "cannot move to the table", e))?;
    hdu.read_col::<f64>(f, col)
        .map(Some)
        .map_err(|e| fits_err(path, &format!("cannot read column {col} of HDU {} ({})", t.index, t.name), e))
}

/// A required column (its presence was checked when the layout was detected).
fn required(path: &Path, f: &mut FitsFile, t: &TableHdu, names: &[&str]) -> Result<Vec<f64>> {
    read_column(path, f, t, names)?
        .ok_or_else(|| Error::file(path, format!("table {} has no {} column", t.name, names[0])))
}

/// A mask column as bad-pixel flags (all good when the table has none).
fn mask_column(path: &Path, f: &mut FitsFile, t: &TableHdu, names: &[&str], n: usize) -> Result<Vec<bool>> {
    Ok(read_column(path, f, t, names)?.map(|m| m.iter().map(|&v| v != 0.0).collect()).unwrap_or_else(|| vec![false; n]))
}

fn describe(f: &mut FitsFile) -> String {
    let mut parts = Vec::new();
    if let Ok(p) = f.primary_hdu() {
        if let HduInfo::ImageInfo { shape, .. } = &p.info {
            parts.push(format!("primary image of shape {shape:?}"));
        }
    }
    for t in tables(f) {
        let cols: Vec<String> =
            t.columns.iter().map(|(c, r)| if *r > 1 { format!("{c}[{r}]") } else { c.clone() }).collect();
        parts.push(format!("table {} '{}' ({} rows: {})", t.index, t.name, t.rows, cols.join(", ")));
    }
    parts.join("; ")
}

fn read_fits(path: &Path) -> Result<Spectrum> {
    let mut f = open(path)?;
    let primary = f.primary_hdu().map_err(|e| fits_err(path, "cannot read the primary header", e))?;
    let meta = header_meta(&mut f, &primary);
    let declared = header_medium(&mut f, &primary);
    let shape = match &primary.info {
        HduInfo::ImageInfo { shape, .. } => shape.clone(),
        _ => Vec::new(),
    };
    let tabs = tables(&mut f);

    // LAMOST medium resolution: refuse clearly.
    if tabs.iter().any(|t| t.name.eq_ignore_ascii_case("COADD_B") || t.name.eq_ignore_ascii_case("COADD_R")) {
        return Err(Error::file(
            path,
            "a LAMOST medium-resolution spectrum (COADD_B/COADD_R tables, R~7500); specnn \
            reads low-resolution spectra only",
        ));
    }

    // LAMOST LRS image: 5 rows (flux, ivar, wavelength, andmask, ormask) with COEFF0.
    if shape.len() == 2 && shape[0] >= 3 && key_f64(&mut f, &primary, "COEFF0").is_some() {
        let n = shape[1];
        let data: Vec<f64> =
            primary.read_image(&mut f).map_err(|e| fits_err(path, "cannot read the primary image (truncated?)", e))?;
        if data.len() != shape[0] * n {
            return Err(Error::file(path, format!("the image holds {} values, not {} x {n}", data.len(), shape[0])));
        }
        let row = |k: usize| data[k * n..(k + 1) * n].to_vec();
        let bad = if shape[0] >= 4 { row(3).iter().map(|&m| m != 0.0).collect() } else { vec![false; n] };
        return Ok(Spectrum {
            path: path.into(),
            layout: Layout::LamostImage,
            medium: declared.unwrap_or(Medium::Vacuum),
            wavelength: row(2),
            flux: row(0),
            ivar: row(1),
            bad,
            meta,
        });
    }

    // LAMOST LRS COADD: one row of vector columns (the primary's NAXIS1/NAXIS2 cards may be stale).
    if let Some(t) = tabs
        .iter()
        .find(|t| t.rows == 1 && t.col(&["FLUX"]).is_some_and(|c| c.1 > 1) && t.col(&["WAVELENGTH"]).is_some())
    {
        let flux = required(path, &mut f, t, &["FLUX"])?;
        let wave = required(path, &mut f, t, &["WAVELENGTH"])?;
        let ivar = read_column(path, &mut f, t, &["IVAR"])?.unwrap_or_else(|| vec![1.0; flux.len()]);
        let bad = mask_column(path, &mut f, t, &["ANDMASK"], flux.len())?;
        return Ok(Spectrum {
            path: path.into(),
            layout: Layout::LamostCoadd,
            medium: declared.unwrap_or(Medium::Vacuum),
            wavelength: wave,
            flux,
            ivar,
            bad,
            meta,
        });
    }

    // SDSS/BOSS COADD: a row per pixel with loglam.
    if let Some(t) = tabs.iter().find(|t| t.rows > 1 && t.col(&["flux"]).is_some() && t.col(&["loglam"]).is_some()) {
        let flux = required(path, &mut f, t, &["flux"])?;
        let wave: Vec<f64> = required(path, &mut f, t, &["loglam"])?.iter().map(|l| 10f64.powf(*l)).collect();
        let ivar = read_column(path, &mut f, t, &["ivar"])?.unwrap_or_else(|| vec![1.0; flux.len()]);
        let bad = mask_column(path, &mut f, t, &["and_mask", "andmask"], flux.len())?;
        return Ok(Spectrum {
            path: path.into(),
            layout: Layout::SdssCoadd,
            medium: declared.unwrap_or(Medium::Vacuum),
            wavelength: wave,
            flux,
            ivar,
            bad,
            meta,
        });
    }

    // 1-D image with a linear axis (MILES).
    if shape.len() == 1 {
        let (Some(crval), Some(cdelt)) = (
            key_f64(&mut f, &primary, "CRVAL1"),
            key_f64(&mut f, &primary, "CDELT1").or_else(|| key_f64(&mut f, &primary, "CD1_1")),
        ) else {
            return Err(Error::file(path, "a 1-D image without CRVAL1 and CDELT1: its wavelengths are unknown"));
        };
        let crpix = key_f64(&mut f, &primary, "CRPIX1").unwrap_or(1.0);
        let flux: Vec<f64> =
            primary.read_image(&mut f).map_err(|e| fits_err(path, "cannot read the image (truncated?)", e))?;
        let wave = (0..flux.len()).map(|i| crval + (i as f64 + 1.0 - crpix) * cdelt).collect();
        let n = flux.len();
        return Ok(Spectrum {
            path: path.into(),
            layout: Layout::LinearImage,
            medium: declared.unwrap_or(Medium::Air),
            wavelength: wave,
            flux,
            ivar: vec![1.0; n],
            bad: vec![false; n],
            meta,
        });
    }

    // A (wavelength, flux[, ivar]) table.
    if let Some(t) = tabs
        .iter()
        .find(|t| t.rows > 1 && t.col(&["wave", "wavelength", "lambda"]).is_some() && t.col(&["flux"]).is_some())
    {
        let hdu = f.hdu(t.index).map_err(|e| fits_err(path, "cannot move to the table", e))?;
        let declared = header_medium(&mut f, &hdu).or(declared);
        let wave = required(path, &mut f, t, &["wave", "wavelength", "lambda"])?;
        let flux = required(path, &mut f, t, &["flux"])?;
        let ivar = read_column(path, &mut f, t, &["ivar"])?.unwrap_or_else(|| vec![1.0; flux.len()]);
        let n = flux.len();
        let mut meta = meta;
        meta.synthetic |= path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("FERRE"));
        return Ok(Spectrum {
            path: path.into(),
            layout: Layout::Table,
            medium: declared.unwrap_or(Medium::Vacuum),
            wavelength: wave,
            flux,
            ivar,
            bad: vec![false; n],
            meta,
        });
    }

    Err(Error::file(path, format!("no spectrum layout specnn reads was found: {}", describe(&mut f))))
}

fn read_csv(path: &Path) -> Result<Spectrum> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| Error::file(path, "empty CSV"))?
        .split(',')
        .map(|h| h.trim().to_lowercase())
        .collect();
    let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let iw = find(&["wavelength", "wave", "lambda"])
        .ok_or_else(|| Error::file(path, format!("no wavelength column (wavelength, wave or lambda) in {header:?}")))?;
    let ifl = find(&["flux"]).ok_or_else(|| Error::file(path, format!("no flux column in {header:?}")))?;
    let iiv = find(&["ivar"]);
    let (mut wave, mut flux, mut ivar) = (Vec::new(), Vec::new(), Vec::new());
    for (k, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |i: usize| -> Result<f64> {
            let c = cells.get(i).ok_or_else(|| {
                Error::file(path, format!("data line {} has {} cells, not {}", k + 1, cells.len(), header.len()))
            })?;
            c.parse::<f64>().map_err(|_| Error::file(path, format!("data line {}: `{c}` is not a number", k + 1)))
        };
        wave.push(num(iw)?);
        flux.push(num(ifl)?);
        ivar.push(match iiv {
            Some(i) => num(i)?,
            None => 1.0,
        });
    }
    let n = wave.len();
    Ok(Spectrum {
        path: path.into(),
        layout: Layout::Csv,
        medium: Medium::Vacuum,
        wavelength: wave,
        flux,
        ivar,
        bad: vec![false; n],
        meta: Meta::default(),
    })
}
