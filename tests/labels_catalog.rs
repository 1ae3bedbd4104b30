//! Label tables joined to spectra, and catalogs written as FITS and CSV.

mod common;

use specnn::catalog::{Catalog, ColumnData};
use specnn::data::Labels;

#[test]
fn miles_labels_join_their_spectra() {
    let Some(data) = common::shared_data() else { return };
    let labels = Labels::read(&data.join("miles/labels.csv")).unwrap();
    assert_eq!(labels.rows.len(), 788);
    assert_eq!(labels.columns, ["teff", "logg", "feh"]);
    assert!(!labels.synthetic);
    let unknown = labels.rows.iter().filter(|r| r.values["feh"].is_none()).count();
    assert!(unknown > 0, "blank [Fe/H] cells are unknown, not zero");
    let vmp = labels.rows.iter().filter(|r| r.values["feh"].is_some_and(|f| f < -2.0)).count();
    assert_eq!(vmp, 26, "the README's 26 stars below [Fe/H] = -2");
    let files: Vec<(String, Option<i64>)> = std::fs::read_dir(data.join("miles"))
        .unwrap()
        .map(|e| (e.unwrap().file_name().to_string_lossy().into_owned(), None))
        .collect();
    assert_eq!(labels.join(&files).unwrap().len(), 788);
}

#[test]
fn missing_spectra_and_duplicated_stars_are_listed() {
    let dir = common::tempdir();
    let p = dir.path().join("labels.csv");
    std::fs::write(&p, "file,teff,feh\na.fits,5000,-1\nb.fits,5100,\nc.fits,5200,-2.5\n").unwrap();
    let l = Labels::read(&p).unwrap();
    assert_eq!(l.rows[1].values["feh"], None);
    let have = |names: &[&str]| names.iter().map(|n| (n.to_string(), None)).collect::<Vec<_>>();
    assert_eq!(l.join(&have(&["c.fits", "x.fits", "a.fits", "b.fits"])).unwrap(), vec![2, 3, 0]);
    let e = l.join(&have(&["a.fits"])).unwrap_err().to_string();
    assert!(e.contains("labels.csv") && e.contains("2 labelled star(s) have no spectrum: b.fits, c.fits"), "{e}");

    std::fs::write(&p, "file,teff\na.fits,5000\nb.fits,5100\na.fits,5200\n").unwrap();
    let e = Labels::read(&p).unwrap().join(&have(&["a.fits", "b.fits"])).unwrap_err().to_string();
    assert!(e.contains("appear more than once: a.fits"), "{e}");

    // Joined by obsid when there is no file column.
    std::fs::write(&p, "obsid,logg\n101005,4.1\n101001,\n").unwrap();
    let l = Labels::read(&p).unwrap();
    let spectra = vec![("x.fits".to_string(), Some(101001)), ("y.fits".to_string(), Some(101005))];
    assert_eq!(l.join(&spectra).unwrap(), vec![1, 0]);

    std::fs::write(&p, "file,teff\na.fits,warm\n").unwrap();
    assert!(Labels::read(&p).unwrap_err().to_string().contains("`warm` is not a number"));
    std::fs::write(&p, "file,colour\na.fits,red\n").unwrap();
    assert!(Labels::read(&p).unwrap_err().to_string().contains("no label column"));
}

fn catalog() -> Catalog {
    let mut c = Catalog::default();
    c.push("file", "", ColumnData::Str(vec!["a.fits".into(), "bb.fits".into()]));
    c.push("obsid", "", ColumnData::I64(vec![Some(7), None]));
    c.push("teff", "K", ColumnData::F64(vec![Some(5000.5), None]));
    c.push("feh", "dex", ColumnData::F64(vec![Some(-2.5), Some(0.1)]));
    c.describe("metallicity estimate", "F7.3");
    c.push("vmp", "", ColumnData::Flag(vec![Some(true), None]));
    c.card("SYNTHETI", true, "a test");
    c.card("VMPFEH", -2.0, "a number");
    c
}

#[test]
fn catalogs_as_csv_and_fits_with_nulls_and_units() {
    let dir = common::tempdir();
    let csv = dir.path().join("cat.csv");
    catalog().write(&csv).unwrap();
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "file,obsid,teff,feh,vmp\na.fits,7,5000.5,-2.5,1\nbb.fits,,,0.1,\n"
    );

    let fits = dir.path().join("cat.fits");
    catalog().write(&fits).unwrap();
    let mut f = fitsio::FitsFile::open(&fits).unwrap();
    let hdu = f.hdu("CATALOG").unwrap();
    let teff: Vec<f64> = hdu.read_col(&mut f, "teff").unwrap();
    assert_eq!(teff[0], 5000.5);
    assert!(teff[1].is_nan(), "float NULL is NaN");
    let files: Vec<String> = hdu.read_col(&mut f, "file").unwrap();
    assert_eq!(files, ["a.fits", "bb.fits"]);
    assert_eq!(hdu.read_key::<String>(&mut f, "TUNIT3").unwrap(), "K");
    assert_eq!(hdu.read_key::<i64>(&mut f, "TNULL2").unwrap(), i64::MIN);
    assert_eq!(hdu.read_key::<String>(&mut f, "SYNTHETI").unwrap(), "T");
    assert_eq!(hdu.read_key::<f64>(&mut f, "VMPFEH").unwrap(), -2.0);
    // `dex` is not a FITS unit: no TUNIT, the unit in the column comment; the display format.
    assert!(hdu.read_key::<String>(&mut f, "TUNIT4").is_err());
    assert_eq!(hdu.read_key::<String>(&mut f, "TCOMM4").unwrap(), "metallicity estimate [dex]");
    assert_eq!(hdu.read_key::<String>(&mut f, "TDISP4").unwrap(), "F7.3");
    drop(f);
    // The raw header: SYNTHETI a logical, VMPFEH a number (not quoted strings).
    let text = String::from_utf8_lossy(&std::fs::read(&fits).unwrap()).into_owned();
    let card = |k: &str| {
        text.as_bytes().chunks(80).map(|c| String::from_utf8_lossy(c).into_owned()).find(|c| c.starts_with(k)).unwrap()
    };
    assert!(card("SYNTHETI").starts_with("SYNTHETI=                    T"), "{}", card("SYNTHETI"));
    assert!(!card("VMPFEH").contains('\''), "{}", card("VMPFEH"));
    // Read back: the units, comments and typed cards survive (merge relies on it).
    let back = Catalog::read(&fits).unwrap();
    assert_eq!(back.columns[3].unit, "dex");
    assert_eq!(back.card_value("SYNTHETI"), Some(&specnn::catalog::CardValue::Bool(true)));
    assert_eq!(back.card_value("VMPFEH"), Some(&specnn::catalog::CardValue::F64(-2.0)));
    // A FITS catalog with file and label columns is a label table too; NULL reads back as unknown.
    let l = Labels::read(&fits).unwrap();
    assert_eq!(l.rows[1].values["teff"], None);
    assert_eq!(l.rows[0].values["feh"], Some(-2.5));
    assert_eq!(l.rows[0].obsid, Some(7));
}

#[test]
fn a_failed_write_leaves_the_old_catalog() {
    let dir = common::tempdir();
    let p = dir.path().join("cat.fits");
    catalog().write(&p).unwrap();
    let before = std::fs::read(&p).unwrap();
    let mut bad = catalog();
    bad.push("extra", "", ColumnData::F64(vec![Some(1.0)]));
    assert!(bad.write(&p).unwrap_err().to_string().contains("extra"));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert!(catalog().write(&dir.path().join("cat.txt")).is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}
