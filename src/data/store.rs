//! Where a training set's preprocessed spectra live while a network trains: in memory, or streamed
//! from a file so that a survey-sized set needs no more memory than a few batches.
//!
//! Training reads its rows batch by batch through [`RowSource`], so it does not care which. A
//! [`DiskRows`] file holds the rows back to back as little-endian f32 (`n x width`), written once while
//! the spectra are read and preprocessed (chunk by chunk, never all at once), read back with
//! positioned reads of just the rows of each batch, and deleted when dropped. The operating system's
//! page cache keeps recently read rows in memory when there is room; that memory is the kernel's to
//! reclaim and is not the process's resident set.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Rows of preprocessed spectra, any of which can be handed to a closure in a batch.
pub trait RowSource: Sync {
    /// The number of rows.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with the rows `rows`, in that order.
    fn with_rows<R>(&self, rows: &[usize], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R>;
}

impl RowSource for [Vec<f32>] {
    fn len(&self) -> usize {
        <[Vec<f32>]>::len(self)
    }
    fn with_rows<R>(&self, rows: &[usize], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
        let refs: Vec<&[f32]> = rows.iter().map(|&r| self[r].as_slice()).collect();
        f(&refs)
    }
}

impl RowSource for Vec<Vec<f32>> {
    fn len(&self) -> usize {
        <[Vec<f32>]>::len(self)
    }
    fn with_rows<R>(&self, rows: &[usize], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
        self.as_slice().with_rows(rows, f)
    }
}

/// Preprocessed rows in a file (see the module notes). The file is removed when this is dropped.
#[derive(Debug)]
pub struct DiskRows {
    file: File,
    path: PathBuf,
    n: usize,
    width: usize,
}

impl DiskRows {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Bytes the rows take on disk.
    pub fn bytes(&self) -> u64 {
        (self.n * self.width * 4) as u64
    }

    fn read_row(&self, r: usize, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let offset = (r * self.width * 4) as u64;
        self.file.read_exact_at(buf, offset).map_err(|e| Error::io(&self.path, e))
    }
}

impl RowSource for DiskRows {
    fn len(&self) -> usize {
        self.n
    }
    fn with_rows<R>(&self, rows: &[usize], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
        let mut bytes = vec![0u8; self.width * 4];
        let mut owned: Vec<Vec<f32>> = Vec::with_capacity(rows.len());
        for &r in rows {
            if r >= self.n {
                return Err(Error::invalid("rows", format!("row {r} of {} in {}", self.n, self.path.display())));
            }
            self.read_row(r, &mut bytes)?;
            owned.push(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
        }
        let refs: Vec<&[f32]> = owned.iter().map(|v| v.as_slice()).collect();
        f(&refs)
    }
}

impl Drop for DiskRows {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes rows to a [`DiskRows`] file, one at a time.
pub struct DiskRowsWriter {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    n: usize,
    width: Option<usize>,
}

impl DiskRowsWriter {
    /// Creates (or truncates) the file at `path`; it is removed again if this writer is dropped
    /// before [`finish`](Self::finish).
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self { out: Some(BufWriter::with_capacity(1 << 20, file)), path: path.to_path_buf(), n: 0, width: None })
    }

    /// Appends one row; every row must have the first row's width.
    pub fn push(&mut self, row: &[f32]) -> Result<()> {
        let width = *self.width.get_or_insert(row.len());
        if row.len() != width {
            return Err(Error::Data(format!(
                "spectra of different lengths after preprocessing: {} and {width} values",
                row.len()
            )));
        }
        let out = self.out.as_mut().expect("open until finish");
        for v in row {
            out.write_all(&v.to_le_bytes()).map_err(|e| Error::io(&self.path, e))?;
        }
        self.n += 1;
        Ok(())
    }

    /// Flushes the file and opens it for reading.
    pub fn finish(mut self) -> Result<DiskRows> {
        let out = self.out.take().expect("open until finish");
        let file = out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        drop(file);
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let path = std::mem::take(&mut self.path);
        Ok(DiskRows { file, path, n: self.n, width: self.width.unwrap_or(0) })
    }
}

impl Drop for DiskRowsWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A training set's rows: in memory, or in a file.
#[derive(Debug)]
pub enum Rows {
    Memory(Vec<Vec<f32>>),
    Disk(DiskRows),
}

impl Rows {
    /// The number of rows.
    pub fn len(&self) -> usize {
        RowSource::len(self)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows in memory, for the baselines (which fit on the whole matrix at once).
    pub fn in_memory(&self) -> Option<&[Vec<f32>]> {
        match self {
            Rows::Memory(v) => Some(v),
            Rows::Disk(_) => None,
        }
    }
}

impl RowSource for Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Memory(v) => v.len(),
            Rows::Disk(d) => d.n,
        }
    }
    fn with_rows<R>(&self, rows: &[usize], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
        match self {
            Rows::Memory(v) => v.with_rows(rows, f),
            Rows::Disk(d) => d.with_rows(rows, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows come back from the file bit for bit, in the order asked, and the file is gone afterwards.
    #[test]
    fn disk_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.bin");
        let rows: Vec<Vec<f32>> = (0..50).map(|i| (0..7).map(|j| (i * 7 + j) as f32 * 0.37 - 3.0).collect()).collect();
        let mut w = DiskRowsWriter::create(&path).unwrap();
        for r in &rows {
            w.push(r).unwrap();
        }
        assert!(w.push(&[1.0]).is_err(), "a row of another width is refused");
        let d = w.finish().unwrap();
        assert_eq!((d.len(), d.width(), d.bytes()), (50, 7, 50 * 7 * 4));
        let pick = [49, 0, 13, 13, 7];
        let got = d.with_rows(&pick, |b| Ok(b.iter().map(|r| r.to_vec()).collect::<Vec<_>>())).unwrap();
        let want: Vec<Vec<f32>> = pick.iter().map(|&i| rows[i].clone()).collect();
        assert_eq!(got, want);
        assert!(d.with_rows(&[50], |_| Ok(())).is_err(), "a row past the end is an error");
        drop(d);
        assert!(!path.exists(), "the file is removed with its rows");
    }
}
