//! Labels: a CSV or FITS table joined to spectra by a `file` column (the spectrum's file name) or an
//! `obsid` column. Label columns are named as everywhere in specnn: `teff, logg, feh, cfe, nfe, mgfe,
//! ofe, afe` (case-insensitive); a blank, `nan` or NULL cell means unknown.

use crate::error::{Error, Result};
use fitsio::hdu::HduInfo;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Every label specnn knows, in its canonical order.
pub const LABEL_NAMES: [&str; 8] = ["teff", "logg", "feh", "cfe", "nfe", "mgfe", "ofe", "afe"];

/// Units of each label, for catalogs.
pub fn label_unit(name: &str) -> &'static str {
    if name == "teff" {
        "K"
    } else if name == "logg" {
        "dex (cgs)"
    } else {
        "dex"
    }
}

/// The astronomer's symbol of each label, for catalogs, reports and figures: `Teff`, `log g`,
/// `[Fe/H]`, `[C/Fe]`, ...
pub fn label_symbol(name: &str) -> String {
    match name {
        "teff" => "Teff".into(),
        "logg" => "log g".into(),
        "feh" => "[Fe/H]".into(),
        "afe" => "[alpha/Fe]".into(),
        other => match other.strip_suffix("fe") {
            Some(el) if !el.is_empty() => {
                let mut e = el.chars();
                let first = e.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
                format!("[{first}{}/Fe]", e.as_str())
            }
            _ => other.into(),
        },
    }
}

/// The FITS display format of a label's values: whole Kelvin, abundances and gravities to 0.001 dex.
pub fn label_display(name: &str) -> &'static str {
    if name == "teff" {
        "F8.0"
    } else {
        "F7.3"
    }
}

/// A label with its unit, for axis titles: `Teff [K]`, `[Fe/H] [dex]`.
pub fn label_axis(name: &str) -> String {
    format!("{} [{}]", label_symbol(name), label_unit(name))
}

/// One row of a label table.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRow {
    pub file: Option<String>,
    pub obsid: Option<i64>,
    /// Values by label name (only the label columns the table has); `None` = unknown.
    pub values: BTreeMap<String, Option<f64>>,
}

/// A label table.
#[derive(Clone, Debug)]
pub struct Labels {
    pub path: PathBuf,
    pub rows: Vec<LabelRow>,
    /// The label columns present, in canonical order.
    pub columns: Vec<String>,
    /// Set when the table says its stars are synthetic (a `synthetic` column of 1/true).
    pub synthetic: bool,
}

fn parse_cell(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("null") {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

impl Labels {
    /// Reads a label table: `.csv`, or the first binary table of a FITS file.
    pub fn read(path: &Path) -> Result<Self> {
        let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let labels = if is_csv { Self::read_csv(path)? } else { Self::read_fits(path)? };
        if labels.rows.iter().all(|r| r.file.is_none()) && labels.rows.iter().all(|r| r.obsid.is_none()) {
            return Err(Error::file(path, "a label table needs a `file` or an `obsid` column to join spectra"));
        }
        if labels.columns.is_empty() {
            return Err(Error::file(path, format!("no label column: specnn's labels are {}", LABEL_NAMES.join(", "))));
        }
        Ok(labels)
    }

    fn read_csv(path: &Path) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|e| Error::file(path, format!("cannot read CSV: {e}")))?;
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| Error::file(path, format!("bad CSV header: {e}")))?
            .iter()
            .map(|h| h.trim().to_lowercase())
            .collect();
        let col = |n: &str| headers.iter().position(|h| h == n);
        let (i_file, i_obsid, i_syn) = (col("file"), col("obsid"), col("synthetic"));
        let columns: Vec<String> = LABEL_NAMES.iter().filter(|n| col(n).is_some()).map(|n| n.to_string()).collect();
        let mut rows = Vec::new();
        let mut synthetic = false;
        for (k, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| Error::file(path, format!("CSV line {}: {e}", k + 2)))?;
            let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::trim).filter(|s| !s.is_empty());
            let obsid = match cell(i_obsid) {
                Some(s) => Some(
                    s.parse::<i64>()
                        .map_err(|_| Error::file(path, format!("CSV line {}: obsid `{s}` is not an integer", k + 2)))?,
                ),
                None => None,
            };
            if let Some(s) = cell(i_syn) {
                synthetic |= s == "1" || s.eq_ignore_ascii_case("true");
            }
            let mut values = BTreeMap::new();
            for n in &columns {
                let raw = cell(col(n)).unwrap_or("");
                let v = parse_cell(raw);
                if v.is_none()
                    && !raw.is_empty()
                    && !raw.eq_ignore_ascii_case("nan")
                    && !raw.eq_ignore_ascii_case("null")
                {
                    return Err(Error::file(path, format!("CSV line {}: {n} `{raw}` is not a number", k + 2)));
                }
                values.insert(n.clone(), v);
            }
            rows.push(LabelRow { file: cell(i_file).map(String::from), obsid, values });
        }
        Ok(Self { path: path.into(), rows, columns, synthetic })
    }

    fn read_fits(path: &Path) -> Result<Self> {
        let mut f =
            fitsio::FitsFile::open(path).map_err(|e| Error::file(path, format!("cannot open the label table: {e}")))?;
        let n = f.num_hdus().unwrap_or(1);
        for i in 1..n {
            let hdu = f.hdu(i).map_err(|e| Error::file(path, e.to_string()))?;
            let HduInfo::TableInfo { column_descriptions, num_rows } = &hdu.info else { continue };
            let names: Vec<String> = column_descriptions.iter().map(|c| c.name.clone()).collect();
            let find = |n: &str| names.iter().find(|c| c.eq_ignore_ascii_case(n)).cloned();
            let files: Option<Vec<String>> = match find("file") {
                Some(c) => Some(
                    hdu.read_col::<String>(&mut f, &c).map_err(|e| Error::file(path, format!("column {c}: {e}")))?,
                ),
                None => None,
            };
            let obsids: Option<Vec<i64>> = match find("obsid") {
                Some(c) => {
                    Some(hdu.read_col::<i64>(&mut f, &c).map_err(|e| Error::file(path, format!("column {c}: {e}")))?)
                }
                None => None,
            };
            let mut columns = Vec::new();
            let mut data: HashMap<String, Vec<f64>> = HashMap::new();
            for l in LABEL_NAMES {
                if let Some(c) = find(l) {
                    data.insert(
                        l.to_string(),
                        hdu.read_col::<f64>(&mut f, &c).map_err(|e| Error::file(path, format!("column {c}: {e}")))?,
                    );
                    columns.push(l.to_string());
                }
            }
            let synthetic = find("synthetic")
                .map(|c| hdu.read_col::<i32>(&mut f, &c).map(|v| v.iter().any(|x| *x != 0)).unwrap_or(false))
                .unwrap_or(false);
            let rows = (0..*num_rows)
                .map(|r| LabelRow {
                    file: files.as_ref().map(|v| v[r].trim().to_string()).filter(|s| !s.is_empty()),
                    obsid: obsids.as_ref().map(|v| v[r]),
                    values: columns.iter().map(|c| (c.clone(), Some(data[c][r]).filter(|v| v.is_finite()))).collect(),
                })
                .collect();
            return Ok(Self { path: path.into(), rows, columns, synthetic });
        }
        Err(Error::file(path, "no binary table with labels in this FITS file"))
    }

    /// Joins the table to spectra given as (file name, obsid): returns, for each label row, the index of
    /// its spectrum. Every label row must name a spectrum that exists, and no star may appear twice;
    /// otherwise the error lists the offenders. Joins by `file` when the table has that column.
    pub fn join(&self, spectra: &[(String, Option<i64>)]) -> Result<Vec<usize>> {
        let by_file = self.rows.iter().any(|r| r.file.is_some());
        let key = |r: &LabelRow| if by_file { r.file.clone() } else { r.obsid.map(|o| o.to_string()) };
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut dups = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            let Some(k) = key(r) else {
                return Err(Error::file(
                    &self.path,
                    format!("row {} has no {}", i + 1, if by_file { "file" } else { "obsid" }),
                ));
            };
            if seen.insert(k.clone(), i).is_some() {
                dups.push(k);
            }
        }
        if !dups.is_empty() {
            return Err(Error::file(
                &self.path,
                format!("{} star(s) appear more than once: {}", dups.len(), list(&dups)),
            ));
        }
        let index: HashMap<String, usize> = spectra
            .iter()
            .enumerate()
            .filter_map(|(i, (f, o))| if by_file { Some((f.clone(), i)) } else { o.map(|o| (o.to_string(), i)) })
            .collect();
        let mut missing = Vec::new();
        let joined: Vec<usize> = self
            .rows
            .iter()
            .filter_map(|r| {
                let k = key(r).expect("checked above");
                let hit = index.get(&k).copied();
                if hit.is_none() {
                    missing.push(k);
                }
                hit
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::file(
                &self.path,
                format!("{} labelled star(s) have no spectrum: {}", missing.len(), list(&missing)),
            ));
        }
        Ok(joined)
    }
}

fn list(v: &[String]) -> String {
    let head: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
    if v.len() > 10 {
        format!("{} and {} more", head.join(", "), v.len() - 10)
    } else {
        head.join(", ")
    }
}
