//! Catalogs out: typed columns with units, NULL for unknown values, written as a FITS binary table or
//! CSV (chosen by the extension), always to a temporary name first and renamed, so an interrupted run
//! never leaves a half-written catalog where a good one was.
//!
//! In FITS, floating-point NULL is NaN (the FITS convention), integer and flag columns declare a TNULL
//! value, every column with a unit the FITS standard knows has a TUNIT card (logarithmic `dex` is not
//! one: those columns say `dex` in their comment and have no TUNIT, which astropy would reject), a
//! column comment (TCOMMn, shown by TOPCAT) and a display format (TDISPn); numeric and logical header
//! cards are written as numbers and logicals. In CSV, NULL is an empty cell.

use crate::error::{Error, Result};
use fitsio::tables::{ColumnDataType, ColumnDescription};
use std::path::Path;

/// The values of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    F64(Vec<Option<f64>>),
    I64(Vec<Option<i64>>),
    /// 0/1 flags.
    Flag(Vec<Option<bool>>),
    Str(Vec<String>),
}

impl ColumnData {
    fn len(&self) -> usize {
        match self {
            ColumnData::F64(v) => v.len(),
            ColumnData::I64(v) => v.len(),
            ColumnData::Flag(v) => v.len(),
            ColumnData::Str(v) => v.len(),
        }
    }
}

/// A named column with a unit ("" for none), a one-line description and a FITS display format
/// (e.g. `F7.1`; "" for the default).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub unit: String,
    pub comment: String,
    pub display: String,
    pub data: ColumnData,
}

/// A header card's value, written with its FITS type.
#[derive(Clone, Debug, PartialEq)]
pub enum CardValue {
    Str(String),
    F64(f64),
    Bool(bool),
}

impl From<&str> for CardValue {
    fn from(s: &str) -> Self {
        CardValue::Str(s.into())
    }
}
impl From<String> for CardValue {
    fn from(s: String) -> Self {
        CardValue::Str(s)
    }
}
impl From<f64> for CardValue {
    fn from(v: f64) -> Self {
        CardValue::F64(v)
    }
}
impl From<bool> for CardValue {
    fn from(v: bool) -> Self {
        CardValue::Bool(v)
    }
}

/// A table of columns of equal length, with header cards (key, value, comment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub columns: Vec<Column>,
    pub cards: Vec<(String, CardValue, String)>,
}

/// The header cards `read` brings back (those specnn writes), with the type each is read as.
const READ_CARDS: [&str; 7] = ["MODEL", "MODELSHA", "ERRCAL", "SNRBAND", "SELECT", "VMPFEH", "CEMPCFE"];

/// The FITS form of a unit: None for the ones the FITS standard does not define (`dex`).
fn fits_unit(unit: &str) -> Option<&str> {
    (!unit.is_empty() && !unit.starts_with("dex")).then_some(unit)
}

const INT_NULL: i64 = i64::MIN;
const FLAG_NULL: i16 = -1;

impl Catalog {
    /// Adds a column.
    pub fn push(&mut self, name: &str, unit: &str, data: ColumnData) {
        self.columns.push(Column {
            name: name.into(),
            unit: unit.into(),
            comment: String::new(),
            display: String::new(),
            data,
        });
    }

    /// Gives the last column added its description and display format (FITS TDISP, e.g. `F7.1`).
    pub fn describe(&mut self, comment: &str, display: &str) {
        if let Some(c) = self.columns.last_mut() {
            c.comment = comment.into();
            c.display = display.into();
        }
    }

    /// Adds a header card.
    pub fn card(&mut self, key: &str, value: impl Into<CardValue>, comment: &str) {
        self.cards.push((key.into(), value.into(), comment.into()));
    }

    /// The value of header card `key`, if present.
    pub fn card_value(&self, key: &str) -> Option<&CardValue> {
        self.cards.iter().find(|(k, _, _)| k == key).map(|(_, v, _)| v)
    }

    /// The number of rows (0 for no column).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    fn check(&self, path: &Path) -> Result<()> {
        let n = self.rows();
        if let Some(c) = self.columns.iter().find(|c| c.data.len() != n) {
            return Err(Error::file(path, format!("catalog column {} has {} rows, not {n}", c.name, c.data.len())));
        }
        Ok(())
    }

    /// Writes `.fits`/`.fit`/`.fits.gz`... as FITS, anything ending in `.csv` as CSV, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.check(path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".csv") {
            crate::io::write_atomic(path, self.to_csv().as_bytes())
        } else if name.ends_with(".fits") || name.ends_with(".fit") {
            self.write_fits(path)
        } else {
            Err(Error::file(path, "a catalog must end in .fits, .fit or .csv"))
        }
    }

    /// The CSV text (NULL = empty cell).
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(self.columns.iter().map(|c| c.name.as_str())).expect("in-memory CSV");
        for r in 0..self.rows() {
            let cells: Vec<String> = self
                .columns
                .iter()
                .map(|c| match &c.data {
                    ColumnData::F64(v) => v[r].map(|x| format!("{x}")).unwrap_or_default(),
                    ColumnData::I64(v) => v[r].map(|x| x.to_string()).unwrap_or_default(),
                    ColumnData::Flag(v) => v[r].map(|x| if x { "1" } else { "0" }.to_string()).unwrap_or_default(),
                    ColumnData::Str(v) => v[r].clone(),
                })
                .collect();
            w.write_record(&cells).expect("in-memory CSV");
        }
        String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8 cells")
    }

    fn write_fits(&self, path: &Path) -> Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp =
            dir.join(format!(".{}.tmp-{}", path.file_name().expect("checked").to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let result = self.write_fits_to(&tmp);
        match result {
            Ok(()) => std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn write_fits_to(&self, tmp: &Path) -> Result<()> {
        let err = |e: fitsio::errors::Error| Error::file(tmp, format!("writing FITS: {e}"));
        let mut f = fitsio::FitsFile::create(tmp).open().map_err(err)?;
        let descs = self
            .columns
            .iter()
            .map(|c| {
                let (typ, width) = match &c.data {
                    ColumnData::F64(_) => (ColumnDataType::Double, 1),
                    ColumnData::I64(_) => (ColumnDataType::LongLong, 1),
                    ColumnData::Flag(_) => (ColumnDataType::Short, 1),
                    ColumnData::Str(v) => (ColumnDataType::String, v.iter().map(|s| s.len()).max().unwrap_or(1).max(1)),
                };
                let mut d = ColumnDescription::new(c.name.clone());
                d.with_type(typ);
                if width > 1 {
                    d.that_repeats(width);
                }
                d.create().map_err(err)
            })
            .collect::<Result<Vec<_>>>()?;
        let hdu = f.create_table("CATALOG", &descs).map_err(err)?;
        for (i, c) in self.columns.iter().enumerate() {
            match &c.data {
                ColumnData::F64(v) => {
                    let vals: Vec<f64> = v.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
                    hdu.write_col(&mut f, &c.name, &vals).map_err(err)?;
                }
                ColumnData::I64(v) => {
                    let vals: Vec<i64> = v.iter().map(|x| x.unwrap_or(INT_NULL)).collect();
                    hdu.write_col(&mut f, &c.name, &vals).map_err(err)?;
                    hdu.write_key(&mut f, &format!("TNULL{}", i + 1), INT_NULL).map_err(err)?;
                }
                ColumnData::Flag(v) => {
                    let vals: Vec<i16> = v.iter().map(|x| x.map(|b| b as i16).unwrap_or(FLAG_NULL)).collect();
                    hdu.write_col(&mut f, &c.name, &vals).map_err(err)?;
                    hdu.write_key(&mut f, &format!("TNULL{}", i + 1), FLAG_NULL as i64).map_err(err)?;
                }
                ColumnData::Str(v) => {
                    hdu.write_col(&mut f, &c.name, v).map_err(err)?;
                }
            }
            if let Some(u) = fits_unit(&c.unit) {
                hdu.write_key(&mut f, &format!("TUNIT{}", i + 1), u).map_err(err)?;
            }
            let comment = match (c.comment.as_str(), fits_unit(&c.unit).is_none() && !c.unit.is_empty()) {
                ("", true) => c.unit.clone(),
                (text, true) if !text.contains(c.unit.as_str()) => format!("{text} [{}]", c.unit),
                (text, _) => text.to_string(),
            };
            if !comment.is_empty() {
                hdu.write_key(&mut f, &format!("TCOMM{}", i + 1), comment.as_str()).map_err(err)?;
            }
            if !c.display.is_empty() {
                hdu.write_key(&mut f, &format!("TDISP{}", i + 1), c.display.as_str()).map_err(err)?;
            }
        }
        for (k, v, comment) in &self.cards {
            match v {
                CardValue::Str(s) => hdu.write_key(&mut f, k, (s.as_str(), comment.as_str())).map_err(err)?,
                CardValue::F64(x) => hdu.write_key(&mut f, k, (*x, comment.as_str())).map_err(err)?,
                CardValue::Bool(b) => write_logical(&mut f, k, *b, comment)
                    .map_err(|e| Error::file(tmp, format!("writing FITS card {k}: {e}")))?,
            }
        }
        Ok(())
    }
}

/// Writes a logical (T/F) header card: fitsio's `write_key` has no boolean form, so this calls
/// cfitsio's `ffpkyl` on the open file.
fn write_logical(f: &mut fitsio::FitsFile, key: &str, value: bool, comment: &str) -> std::result::Result<(), String> {
    let k = std::ffi::CString::new(key).map_err(|e| e.to_string())?;
    let c = std::ffi::CString::new(comment).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: `f` is an open FITS file positioned on the table HDU (fitsio made it current when the
    // table was created); the strings are NUL-terminated and outlive the call.
    unsafe {
        fitsio::sys::ffpkyl(f.as_raw(), k.as_ptr(), value as i32, c.as_ptr(), &mut status);
    }
    if status == 0 {
        Ok(())
    } else {
        Err(format!("cfitsio status {status}"))
    }
}

impl Catalog {
    /// Reads a catalog written by `write` (FITS binary table `CATALOG`, or CSV with typed columns
    /// recovered: integers, flags, numbers or text).
    pub fn read(path: &Path) -> Result<Self> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".csv") {
            Self::read_csv(path)
        } else {
            Self::read_fits(path)
        }
    }

    fn read_csv(path: &Path) -> Result<Self> {
        let mut rdr = csv::Reader::from_path(path).map_err(|e| Error::file(path, format!("cannot read CSV: {e}")))?;
        let headers: Vec<String> =
            rdr.headers().map_err(|e| Error::file(path, e.to_string()))?.iter().map(String::from).collect();
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
        for rec in rdr.records() {
            let rec = rec.map_err(|e| Error::file(path, e.to_string()))?;
            for (i, c) in rec.iter().enumerate() {
                cells[i].push(c.to_string());
            }
        }
        let mut cat = Catalog::default();
        for (h, col) in headers.iter().zip(cells) {
            let data = match h.as_str() {
                "obsid" => ColumnData::I64(col.iter().map(|c| c.parse().ok()).collect()),
                "vmp" | "cemp" | "synthetic" => {
                    ColumnData::Flag(col.iter().map(|c| if c.is_empty() { None } else { Some(c == "1") }).collect())
                }
                "file" | "reason" => ColumnData::Str(col),
                _ if col.iter().all(|c| c.is_empty() || c.parse::<f64>().is_ok()) => {
                    ColumnData::F64(col.iter().map(|c| c.parse().ok()).collect())
                }
                _ => ColumnData::Str(col),
            };
            cat.push(h, "", data);
        }
        Ok(cat)
    }

    fn read_fits(path: &Path) -> Result<Self> {
        let err = |e: fitsio::errors::Error| Error::file(path, format!("reading the catalog: {e}"));
        let mut f = fitsio::FitsFile::open(path).map_err(err)?;
        let hdu = f.hdu("CATALOG").map_err(err)?;
        let fitsio::hdu::HduInfo::TableInfo { column_descriptions, .. } = &hdu.info else {
            return Err(Error::file(path, "CATALOG is not a table"));
        };
        let mut cat = Catalog::default();
        for (i, c) in column_descriptions.iter().enumerate() {
            let unit = hdu.read_key::<String>(&mut f, &format!("TUNIT{}", i + 1)).unwrap_or_default();
            let data = match c.data_type.typ {
                ColumnDataType::Double | ColumnDataType::Float => ColumnData::F64(
                    hdu.read_col::<f64>(&mut f, &c.name)
                        .map_err(err)?
                        .into_iter()
                        .map(|v| Some(v).filter(|v| v.is_finite()))
                        .collect(),
                ),
                ColumnDataType::LongLong | ColumnDataType::Long | ColumnDataType::Int => ColumnData::I64(
                    hdu.read_col::<i64>(&mut f, &c.name)
                        .map_err(err)?
                        .into_iter()
                        .map(|v| Some(v).filter(|v| *v != INT_NULL))
                        .collect(),
                ),
                ColumnDataType::Short => ColumnData::Flag(
                    hdu.read_col::<i16>(&mut f, &c.name)
                        .map_err(err)?
                        .into_iter()
                        .map(|v| (v != FLAG_NULL).then_some(v == 1))
                        .collect(),
                ),
                _ => ColumnData::Str(
                    hdu.read_col::<String>(&mut f, &c.name)
                        .map_err(err)?
                        .into_iter()
                        .map(|s| s.trim_end().to_string())
                        .collect(),
                ),
            };
            let mut key = |k: &str| hdu.read_key::<String>(&mut f, &format!("{k}{}", i + 1)).unwrap_or_default();
            let (comment, display) = (key("TCOMM"), key("TDISP"));
            // A dex column has its unit in its comment only.
            let unit = if unit.is_empty() && comment.ends_with("[dex]") { "dex".to_string() } else { unit };
            cat.push(&c.name, &unit, data);
            cat.describe(&comment, &display);
        }
        for key in READ_CARDS {
            let numeric = matches!(key, "VMPFEH" | "CEMPCFE");
            if numeric {
                if let Ok(v) = hdu.read_key::<f64>(&mut f, key) {
                    cat.card(key, v, "");
                }
            } else if let Ok(v) = hdu.read_key::<String>(&mut f, key) {
                cat.card(key, v, "");
            }
        }
        for bit in 0..16 {
            let key = format!("FLAG{}", 1u32 << bit);
            if let Ok(v) = hdu.read_key::<String>(&mut f, &key) {
                cat.card(&key, v, "");
            }
        }
        if hdu.read_key::<String>(&mut f, "SYNTHETI").is_ok_and(|v| v.trim() == "T") {
            cat.card("SYNTHETI", true, "");
        }
        Ok(cat)
    }

    /// Appends the rows of `other`, which must have the same columns in the same order.
    pub fn append(&mut self, other: Catalog, source: &Path) -> Result<()> {
        let names = |c: &Catalog| c.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(self) != names(&other) {
            return Err(Error::file(
                source,
                format!("its columns {:?} differ from the first catalog's {:?}", names(&other), names(self)),
            ));
        }
        for (a, b) in self.columns.iter_mut().zip(other.columns) {
            match (&mut a.data, b.data) {
                (ColumnData::F64(x), ColumnData::F64(y)) => x.extend(y),
                (ColumnData::I64(x), ColumnData::I64(y)) => x.extend(y),
                (ColumnData::Flag(x), ColumnData::Flag(y)) => x.extend(y),
                (ColumnData::Str(x), ColumnData::Str(y)) => x.extend(y),
                _ => return Err(Error::file(source, format!("column {} has another type", a.name))),
            }
        }
        Ok(())
    }
}
