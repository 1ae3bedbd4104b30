//! Every real file under ../shared/data/lamost and ../shared/data/miles, read as a user would, and the
//! bad inputs a reader must refuse with a clear message.

mod common;

use specnn::data::{read_spectrum, Layout, Medium, ReadOptions};
use std::path::{Path, PathBuf};

fn read(p: &Path) -> specnn::Result<specnn::data::Spectrum> {
    read_spectrum(p, &ReadOptions::default())
}

fn lamost(data: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(data.join("lamost").join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn lamost_low_resolution_files_of_both_layouts() {
    let Some(data) = common::shared_data() else { return };
    let mut files = lamost(&data, "lamost_lrs_cmost");
    files.extend(lamost(&data, "lamost_lrs_primaryimage_laspec"));
    assert_eq!(files.len(), 10);
    for f in files {
        let s = read(&f).unwrap_or_else(|e| panic!("{e}"));
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let expect = if name.contains("coadd") { Layout::LamostCoadd } else { Layout::LamostImage };
        assert_eq!(s.layout, expect, "{name}");
        assert_eq!(s.medium, Medium::Vacuum);
        let n = s.wavelength.len();
        assert!(n == 3908 || n == 3909, "{name}: {n} pixels");
        if name.starts_with("DR13Q1") {
            assert_eq!(n, 3909, "{name}");
        }
        assert!((s.wavelength[0] - 3700.0).abs() < 1.0 && (s.wavelength[n - 1] - 9098.0).abs() < 2.0, "{name}");
        // Wavelengths come from the data row: log-linear with step 1e-4 in log10.
        let step = (s.wavelength[1] / s.wavelength[0]).log10();
        assert!((step - 1e-4).abs() < 1e-8, "{name}: step {step}");
        assert!(s.meta.obsid.is_some() && s.meta.ra.is_some() && s.meta.dec.is_some() && s.meta.z.is_some(), "{name}");
        assert!(s.meta.snr.contains_key("g") && s.meta.snr.contains_key("r"));
        assert!(s.meta.class.is_some());
        assert!(!s.meta.synthetic);
    }
}

#[test]
fn header_facts_are_kept() {
    let Some(data) = common::shared_data() else { return };
    let qso = data.join("lamost/lamost_lrs_cmost/DR13Q1_coadd__spec-60591-LN042429N340750BM01_sp01-005.fits.gz");
    let s = read(&qso).unwrap();
    assert_eq!(s.meta.obsid, Some(1247301005));
    assert_eq!(s.meta.class.as_deref(), Some("QSO"));
    assert!((s.meta.z.unwrap() - 0.308259).abs() < 1e-6);
    assert!((s.meta.snr["r"] - 5.03).abs() < 1e-9);
    assert!((s.meta.ra.unwrap() - 66.478502).abs() < 1e-9 && (s.meta.dec.unwrap() - 32.582322).abs() < 1e-9);
}

#[test]
fn the_same_star_in_dr5_image_and_dr9_coadd_agrees() {
    let Some(data) = common::shared_data() else { return };
    let a = read(&data.join("lamost/lamost_lrs_cmost/DR5_primaryimage__spec-55859-F5902_sp01-005.fits.gz")).unwrap();
    let b = read(&data.join("lamost/lamost_lrs_cmost/DR9_coadd__spec-55859-F5902_sp01-005.fits.gz")).unwrap();
    assert_eq!((a.layout, b.layout), (Layout::LamostImage, Layout::LamostCoadd));
    assert_eq!(a.wavelength, b.wavelength, "identical wavelengths");
    let worst = a.flux.iter().zip(&b.flux).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst <= 0.5, "fluxes differ by {worst}");
    assert_eq!(a.meta.obsid, b.meta.obsid);
}

#[test]
fn sdss_ferre_and_medium_resolution_files() {
    let Some(data) = common::shared_data() else { return };
    let s = read(&data.join("lamost/sdss_boss_doppler/spec-3586-55181-0500.fits")).unwrap();
    assert_eq!(s.layout, Layout::SdssCoadd);
    assert_eq!(s.wavelength.len(), 4625);
    assert!((s.wavelength[0] - 3561.2).abs() < 0.5 && (s.wavelength[4624] - 10327.6).abs() < 0.5);
    assert!(s.bad.iter().any(|b| *b), "and_mask pixels are flagged");

    let f = read(
        &data.join("lamost/synthetic_ferre_sun_laspec/FERRE_FEH+0.00_AFE+0.00_VMIC+0.00_TEFF+5750_LOGG+4.50.fits"),
    )
    .unwrap();
    assert_eq!(f.layout, Layout::Table);
    assert_eq!(f.wavelength.len(), 36476);
    assert!(f.meta.synthetic, "a FERRE model is synthetic");

    for m in lamost(&data, "lamost_mrs_laspec") {
        let e = read(&m).unwrap_err().to_string();
        assert!(e.contains(m.file_name().unwrap().to_str().unwrap()) && e.contains("medium-resolution"), "{e}");
    }
}

#[test]
fn every_miles_star_reads_in_air() {
    let Some(data) = common::shared_data() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(data.join("miles")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "fits") {
            let s = read(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((s.layout, s.medium), (Layout::LinearImage, Medium::Air));
            assert_eq!(s.wavelength.len(), 4300);
            assert!((s.wavelength[0] - 3540.5).abs() < 1e-9 && (s.wavelength[4299] - 7409.6).abs() < 1e-6);
            n += 1;
        }
    }
    assert_eq!(n, 788);
    // The medium can be overridden.
    let any = data.join("miles/MILES_res2.50_star_m0001V.fits");
    assert_eq!(
        read_spectrum(&any, &ReadOptions { medium: Some(Medium::Vacuum), ..Default::default() }).unwrap().medium,
        Medium::Vacuum
    );
}

fn csv(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn csv_spectra_and_bad_values() {
    let dir = common::tempdir();
    let good = csv(dir.path(), "ok.csv", "wavelength,flux,ivar\n4000,1.0,4\n4001,2.0,4\n4002,1.5,0\n");
    let s = read(&good).unwrap();
    assert_eq!((s.layout, s.wavelength.len()), (Layout::Csv, 3));
    assert_eq!(s.bad, vec![false, false, true], "ivar = 0 marks a bad pixel");

    let cases = [
        ("nan.csv", "wavelength,flux\n4000,1\n4001,NaN\n4002,1\n", "flux is NaN at pixel 1"),
        ("inf.csv", "wavelength,flux\n4000,1\n4001,inf\n4002,1\n", "flux is inf at pixel 1"),
        ("negivar.csv", "wavelength,flux,ivar\n4000,1,1\n4001,2,-3\n", "inverse variance at pixel 1 is -3"),
        ("nanivar.csv", "wavelength,flux,ivar\n4000,1,1\n4001,2,1\n4002,2,NaN\n", "inverse variance at pixel 2 is NaN"),
        ("negwave.csv", "wavelength,flux\n-1,1\n4001,2\n", "wavelength at pixel 0 is -1 (not a positive number)"),
        ("nanwave.csv", "wavelength,flux\n4000,1\n4001,2\nNaN,3\n", "wavelength at pixel 2 is NaN"),
        ("order.csv", "wavelength,flux\n4000,1\n4002,2\n4001,3\n", "wavelengths do not increase"),
        ("text.csv", "wavelength,flux\n4000,abc\n", "`abc` is not a number"),
        ("nowave.csv", "lam_bda,flux\n1,2\n", "no wavelength column"),
        ("allbad.csv", "wavelength,flux,ivar\n4000,1,0\n4001,2,0\n", "every pixel is masked"),
        (
            "constant.csv",
            "wavelength,flux,ivar\n4000,2,1\n4001,7,0\n4002,2,1\n",
            "the flux is 2 at every good pixel: a zero-range spectrum",
        ),
    ];
    for (name, body, want) in cases {
        let e = read(&csv(dir.path(), name, body)).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    // NaN flux where the pixel is already masked is just a bad pixel.
    let masked = csv(dir.path(), "masked.csv", "wavelength,flux,ivar\n4000,1,1\n4001,NaN,0\n4002,2,1\n");
    assert_eq!(read(&masked).unwrap().bad, vec![false, true, false]);
    // Infinite ivar is accepted and marks the pixel bad, as zero does.
    let inf = csv(dir.path(), "infivar.csv", "wavelength,flux,ivar\n4000,1,1\n4001,2,inf\n4002,3,1\n");
    assert_eq!(read(&inf).unwrap().bad, vec![false, true, false]);
}

#[test]
fn truncated_and_foreign_files() {
    let dir = common::tempdir();
    let not_fits = csv(dir.path(), "notes.fits", "just some text that is long enough to look like something");
    let e = read(&not_fits).unwrap_err().to_string();
    assert!(e.contains("notes.fits") && e.contains("not a FITS file"), "{e}");
    let e = read(&dir.path().join("absent.fits")).unwrap_err().to_string();
    assert!(e.contains("absent.fits") && e.contains("no such file"), "{e}");

    let Some(data) = common::shared_data() else { return };
    let src = data.join("lamost/lamost_lrs_primaryimage_laspec/spec-58397-EG014118N254444M01_sp03-031.fits");
    let bytes = std::fs::read(&src).unwrap();
    for cut in [bytes.len() / 2, 2880 + 100, 1000] {
        let p = dir.path().join(format!("truncated-{cut}.fits"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains(&format!("truncated-{cut}.fits")), "{e}");
    }
    // A FITS file with no spectrum in it says what it found.
    let e = read(&data.join("golden/public.safetensors")).unwrap_err().to_string();
    assert!(e.contains("not a FITS file"), "{e}");
}
