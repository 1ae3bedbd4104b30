//! Catalogs out: typed columns with units, NULL for unknown values, written as a FITS binary table or
//! CSV (chosen by the extension), always to a temporary name first and renamed, so an interrupted run
//! never leaves a half-written catalog where a good one was.
//!
//! In FITS, floating-point NULL is NaN (the FITS convention), integer and flag columns declare a TNULL
//! value, and every column with a unit has a TUNIT card. In CSV, NULL is an empty cell.

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

/// A named column with a unit ("" for none).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub unit: String,
    pub data: ColumnData,
}

/// A table of columns of equal length, with header cards (key, value, comment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub columns: Vec<Column>,
    pub cards: Vec<(String, String, String)>,
}

const INT_NULL: i64 = i64::MIN;
const FLAG_NULL: i16 = -1;

impl Catalog {
    /// Adds a column.
    pub fn push(&mut self, name: &str, unit: &str, data: ColumnData) {
        self.columns.push(Column { name: name.into(), unit: unit.into(), data });
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
        let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().expect("checked").to_string_lossy(), std::process::id()));
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
            if !c.unit.is_empty() {
                hdu.write_key(&mut f, &format!("TUNIT{}", i + 1), c.unit.as_str()).map_err(err)?;
            }
        }
        for (k, v, comment) in &self.cards {
            hdu.write_key(&mut f, k, (v.as_str(), comment.as_str())).map_err(err)?;
        }
        Ok(())
    }
}
