//! The science workflow end to end, through the command line, on small SYNTHETIC surveys.

mod common;

use common::specnn;

use specnn::nn::load_model;
use std::path::{Path, PathBuf};

fn survey(dir: &Path, name: &str, n: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    let (code, _, err) =
        specnn(&["simulate", "--n", &n.to_string(), "--seed", &seed.to_string(), "--out", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn train_args<'a>(spectra: &'a str, labels: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--spectra",
        spectra,
        "--labels",
        labels,
        "--arch",
        "res-ann",
        "--resolution",
        "200",
        "--targets",
        "feh,cfe,mgfe",
        "--out",
        out,
        "--epochs",
        epochs,
        "--batch",
        "32",
        "--seed",
        "4",
    ]
}

#[test]
fn train_predict_evaluate() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 160, 11);
    let test = survey(dir.path(), "test", 40, 12);
    let model = dir.path().join("m.safetensors");
    let labels = train.join("labels.csv");
    let (code, out, err) = specnn(&train_args(s(&train), s(&labels), s(&model), "6"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("160 labelled spectra (0 refused); SYNTHETIC data") && out.contains("epoch   6:"), "{out}");
    assert!(model.exists() && dir.path().join("m.safetensors.ckpt").exists());

    // Predict into FITS and CSV; flags come with [Fe/H] and [C/Fe].
    let cat = dir.path().join("cat.csv");
    let (code, out, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&test), "--out", s(&cat)]);
    assert_eq!(code, 0, "{out}\n{err}");
    let text = std::fs::read_to_string(&cat).unwrap();
    assert!(
        text.starts_with(
            "file,obsid,ra,dec,snr,feh,feh_err,cfe,cfe_err,mgfe,mgfe_err,flags,p_vmp,p_cemp,vmp,cemp,reason\n"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 41);
    let fits = dir.path().join("cat.fits");
    assert_eq!(specnn(&["predict", "--model", s(&model), "--spectra", s(&test), "--out", s(&fits)]).0, 0);
    let mut f = fitsio::FitsFile::open(&fits).unwrap();
    let hdu = f.hdu("CATALOG").unwrap();
    assert_eq!(hdu.read_key::<String>(&mut f, "SYNTHETI").unwrap(), "T");
    let feh: Vec<f64> = hdu.read_col(&mut f, "feh").unwrap();
    assert_eq!(feh.len(), 40);
    assert!(feh.iter().all(|v| v.is_finite()));
    // The catalog names its model by file and SHA-256, says what each column is, and gives numbers as
    // numbers: the thresholds, the display formats.
    let sha = hdu.read_key::<String>(&mut f, "MODELSHA").unwrap();
    assert_eq!(sha, specnn::predict::sha256_hex(&std::fs::read(&model).unwrap()));
    assert_eq!(hdu.read_key::<f64>(&mut f, "VMPFEH").unwrap(), -2.0);
    let feh_col = 6; // file, obsid, ra, dec, snr, feh
    assert_eq!(hdu.read_key::<String>(&mut f, &format!("TCOMM{feh_col}")).unwrap(), "[Fe/H] estimate [dex]");
    assert_eq!(hdu.read_key::<String>(&mut f, &format!("TDISP{feh_col}")).unwrap(), "F7.3");
    assert!(hdu.read_key::<String>(&mut f, &format!("TUNIT{feh_col}")).is_err(), "dex is not a FITS unit");
    assert_eq!(hdu.read_key::<String>(&mut f, "TUNIT3").unwrap(), "deg");

    // Folders of folders (LAMOST's date/plan layout) need --recursive; a .txt list names files.
    let nested = dir.path().join("nested");
    std::fs::create_dir_all(nested.join("20240101/plan-a")).unwrap();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&test)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".fits"))
        .collect();
    names.sort();
    for p in &names[..3] {
        std::fs::copy(p, nested.join("20240101/plan-a").join(p.file_name().unwrap())).unwrap();
    }
    let ncat = dir.path().join("nested.csv");
    let (code, _, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&nested), "--out", s(&ncat)]);
    assert_eq!(code, 1);
    assert!(err.contains("nested") && err.contains("--recursive"), "{err}");
    let (code, _, err) =
        specnn(&["predict", "--model", s(&model), "--spectra", s(&nested), "--recursive", "--out", s(&ncat)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&ncat).unwrap().lines().count(), 4);
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("# two of the test stars\n{}\n\n{}\n", names[0].display(), names[5].display()))
        .unwrap();
    let (code, _, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&list), "--out", s(&ncat)]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&ncat).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    std::fs::write(&list, "no-such-star.fits\n").unwrap();
    let (code, _, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&list), "--out", s(&ncat)]);
    assert_eq!(code, 1);
    assert!(err.contains("list.txt") && err.contains("line 1") && err.contains("no-such-star.fits"), "{err}");

    // The same command writes the same catalog.
    let again = dir.path().join("again.csv");
    specnn(&["predict", "--model", s(&model), "--spectra", s(&test), "--out", s(&again)]);
    assert_eq!(std::fs::read(&cat).unwrap(), std::fs::read(&again).unwrap());

    // Evaluate: the seed's metrics, a report and figures.
    let report = dir.path().join("report");
    let (code, out, err) = common::evaluate(&model, &test, &test.join("labels.csv"), &report);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("SYNTHETIC") && out.contains("40 stars evaluated") && out.contains("VMP: recall"), "{out}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for want in [
        "SYNTHETIC DATA",
        "| feh | dex | 40 |",
        "## VMP identification",
        "operating point",
        "## CEMP identification among true VMP stars",
    ] {
        assert!(md.contains(want), "report lacks {want}:\n{md}");
    }
    for png in [
        "one_to_one_feh.png",
        "residuals_cfe.png",
        "residuals_cfe_vs_feh.png",
        "confusion_vmp.png",
        "confusion_cemp.png",
        "vmp_recall_fpr.png",
        "training_curve.png",
        "spectra.png",
    ] {
        let bytes = std::fs::read(report.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
        assert!(md.contains(&format!("]({png})")), "report does not link {png}");
    }
    assert_linked_figures_exist(&report);
    // The VMP choice over the catalog's probability, drawn as well as tabulated.
    assert!(
        md.contains("against a threshold on p_vmp")
            && md.contains("| 0.50 |")
            && report.join("vmp_probability_curve.png").exists(),
        "{md}"
    );
    // Skill against predicting the median, for every label; no NaN printed.
    assert!(md.contains("MAE of the median | skill"), "{md}");
    assert!(!md.contains("NaN"), "{md}");

    // A label table without one of the model's targets: the others are scored, the missing one said.
    let partial = dir.path().join("partial.csv");
    let full = std::fs::read_to_string(test.join("labels.csv")).unwrap();
    let header: Vec<&str> = full.lines().next().unwrap().split(',').collect();
    let drop = header.iter().position(|h| *h == "mgfe").unwrap();
    let cut: String = full
        .lines()
        .map(|l| {
            l.split(',').enumerate().filter(|(i, _)| *i != drop).map(|(_, c)| c).collect::<Vec<_>>().join(",") + "\n"
        })
        .collect();
    std::fs::write(&partial, cut).unwrap();
    let report2 = dir.path().join("report2");
    let (code, out, err) = common::evaluate(&model, &test, &partial, &report2);
    assert_eq!(code, 0, "{out}\n{err}");
    let md = std::fs::read_to_string(report2.join("report.md")).unwrap();
    assert!(
        md.contains("not scored (the label table has no column): mgfe")
            && md.contains("| feh | dex | 40 |")
            && md.contains("| mgfe | dex | 0 |"),
        "{md}"
    );
    assert!(!report2.join("one_to_one_mgfe.png").exists());
    assert_linked_figures_exist(&report2);
}

/// Every figure `report.md` links exists.
fn assert_linked_figures_exist(report: &Path) {
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let linked: Vec<&str> =
        md.split("](").skip(1).filter_map(|r| r.split(')').next()).filter(|l| l.ends_with(".png")).collect();
    assert!(!linked.is_empty());
    for l in linked {
        assert!(report.join(l).exists(), "report.md links {l}, which does not exist");
    }
}

#[test]
fn resumed_training_reaches_the_same_weights() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 120, 21);
    let labels = train.join("labels.csv");
    let whole = dir.path().join("whole.safetensors");
    let parts = dir.path().join("parts.safetensors");
    assert_eq!(specnn(&train_args(s(&train), s(&labels), s(&whole), "5")).0, 0);
    // An interrupted run: 2 epochs, then resumed to 5.
    assert_eq!(specnn(&train_args(s(&train), s(&labels), s(&parts), "2")).0, 0);
    let mut args = train_args(s(&train), s(&labels), s(&parts), "5");
    args.push("--resume");
    let (code, out, err) = specnn(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("epoch   3:") && !out.contains("epoch   2:"), "resumed after epoch 2: {out}");
    let (a, ma) = load_model::<f32>(&whole).unwrap();
    let (b, mb) = load_model::<f32>(&parts).unwrap();
    for ((n, x), (_, y)) in a.params().iter().zip(b.params().iter()) {
        assert_eq!(x, y, "{n} differs after resuming");
    }
    // The same losses and validation figures, epoch by epoch (timings aside).
    let strip = |h: &str| {
        let mut v: serde_json::Value = serde_json::from_str(h).unwrap();
        v["epochs"].as_array_mut().unwrap().iter_mut().for_each(|e| {
            e.as_object_mut().unwrap().remove("samples_per_s");
        });
        v
    };
    assert_eq!(strip(&ma["specnn-history"]), strip(&mb["specnn-history"]));

    // Resuming with other settings is refused; resuming without a checkpoint too.
    let mut other = train_args(s(&train), s(&labels), s(&parts), "6");
    let seed_at = other.iter().position(|a| *a == "--seed").unwrap() + 1;
    other[seed_at] = "9";
    other.push("--resume");
    let (code, _, err) = specnn(&other);
    assert_eq!(code, 1);
    assert!(err.contains("other settings"), "{err}");
    let fresh = dir.path().join("new.safetensors");
    let mut none = train_args(s(&train), s(&labels), s(&fresh), "2");
    none.push("--resume");
    assert!(specnn(&none).2.contains("no checkpoint"));
}

#[test]
fn bad_models_labels_and_spectra() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 40, 31);
    let labels = train.join("labels.csv");
    let model = dir.path().join("m.safetensors");
    assert_eq!(specnn(&train_args(s(&train), s(&labels), s(&model), "1")).0, 0);

    // A corrupt model file.
    let bytes = std::fs::read(&model).unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, err) =
        specnn(&["predict", "--model", s(&corrupt), "--spectra", s(&train), "--out", s(&dir.path().join("x.csv"))]);
    assert_eq!(code, 1);
    assert!(err.contains("corrupt.safetensors"), "{err}");
    assert!(!dir.path().join("x.csv").exists(), "nothing written");

    // A label file naming stars that have no spectrum.
    let missing = dir.path().join("missing.csv");
    let mut text = std::fs::read_to_string(&labels).unwrap();
    text += "ghost-1.fits,1,1,5000,4.5,-1,0,0,0,0,0,0,50,0,0\nghost-2.fits,2,1,5000,4.5,-1,0,0,0,0,0,0,50,0,0\n";
    std::fs::write(&missing, text).unwrap();
    let (code, _, err) = specnn(&train_args(s(&train), s(&missing), s(&dir.path().join("y.safetensors")), "1"));
    assert_eq!(code, 1);
    assert!(err.contains("2 labelled star(s) have no spectrum: ghost-1.fits, ghost-2.fits"), "{err}");

    // One broken file among good ones: training reports it and goes on; predict gives it a row with a reason.
    let broken = train.join("synth-survey-s31-000003.fits");
    std::fs::write(&broken, b"SIMPLE  =                    T / cut short").unwrap();
    let (code, out, err) = specnn(&train_args(s(&train), s(&labels), s(&dir.path().join("z.safetensors")), "1"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("39 labelled spectra (1 refused)") && out.contains("refused synth-survey-s31-000003.fits"),
        "{out}"
    );
    let cat = dir.path().join("cat.csv");
    let (code, out, _) = specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&cat)]);
    assert_eq!(code, 0);
    assert!(out.contains("40 rows") && out.contains("1 refused"), "{out}");
    let text = std::fs::read_to_string(&cat).unwrap();
    let row = text.lines().find(|l| l.starts_with("synth-survey-s31-000003.fits")).unwrap();
    assert!(row.contains("cannot open as FITS"), "{row}");

    // The CH G-band window as the help shows it: every pixel outside 4000-5500 A is 0 in the model's input.
    let gband = dir.path().join("gband.safetensors");
    let mut args = train_args(s(&train), s(&labels), s(&gband), "1");
    args.splice(
        args.iter().position(|a| *a == "--resolution").unwrap()..args.iter().position(|a| *a == "--targets").unwrap(),
        ["--window", "4000,5500"],
    );
    let (code, out, err) = specnn(&args);
    assert_eq!(code, 0, "{out}{err}");
    let t = specnn::predict::load_trained(&gband).unwrap();
    assert_eq!(t.prep.window, Some((4000.0, 5500.0)));
    let (code, _, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "ann",
        "--targets",
        "feh",
        "--out",
        s(&gband),
        "--window",
        "5500,4000",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("LO must be below HI"), "{err}");

    // A target the labels lack, and an unknown target.
    let (code, _, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "ann",
        "--targets",
        "oxygen",
        "--out",
        s(&model),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("`oxygen` is not a label"), "{err}");
}

#[test]
fn the_demo_runs_small() {
    let dir = common::tempdir();
    let out = dir.path().join("demo");
    let (code, stdout, err) = specnn(&[
        "demo",
        "--out",
        s(&out),
        "--n",
        "96",
        "--channels",
        "4,8,8",
        "--cnn-epochs",
        "1",
        "--ann-epochs",
        "2",
    ]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("SYNTHETIC"));
    for f in [
        "README.md",
        "res_ann.safetensors",
        "vmp_cnn.safetensors",
        "catalog_res_ann.fits",
        "catalog_vmp_cnn.fits",
        "vmp_candidates.fits",
        "report_vmp_cnn/report.md",
        "report_res_ann/report.md",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let summary = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(summary.contains("SYNTHETIC") && summary.contains("channel widths [4, 8, 8]"), "{summary}");
    assert!(summary.contains("| MAE of the median | skill |") && !summary.contains("NaN"), "{summary}");
}

#[test]
fn crossval_estimates_every_star_out_of_fold() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 48, 41);
    let models = dir.path().join("models");
    let report = dir.path().join("cv");
    let (code, out, err) = specnn(&[
        "crossval",
        "--spectra",
        s(&train),
        "--labels",
        s(&train.join("labels.csv")),
        "--arch",
        "starnet",
        "--resolution",
        "200",
        "--targets",
        "feh,teff",
        "--folds",
        "3",
        "--epochs",
        "2",
        "--out",
        s(&models),
        "--report",
        s(&report),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("fold 3/3") && out.contains("48 stars evaluated"), "{out}");
    for f in 1..=3 {
        assert!(models.join(format!("fold{f}.safetensors")).exists());
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("3-fold cross-validation") && md.contains("| feh | dex | 48 |") && md.contains("SYNTHETIC DATA"),
        "{md}"
    );
    // estimates.csv names each star's fold (1-based, as the fold files) and every fold holds stars.
    let est = std::fs::read_to_string(report.join("estimates.csv")).unwrap();
    let mut lines = est.lines();
    assert_eq!(
        lines.next(),
        Some(
            "file,fold,feh_true,feh_est,feh_err,feh_err_other_folds,feh_spread_z,\
            teff_true,teff_est,teff_err,teff_err_other_folds,teff_spread_z"
        )
    );
    let folds: Vec<usize> = lines.map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(folds.len(), 48);
    for f in 1..=3 {
        assert_eq!(folds.iter().filter(|&&x| x == f).count(), 16, "{est}");
    }
    // The misses beyond 3 sigma are counted against the sigmas calibrated on the other folds.
    let beyond = est
        .lines()
        .skip(1)
        .filter(|l| {
            // feh_true, feh_est, feh_err (the fold model's own), feh_err_other_folds.
            let c: Vec<f64> = l.split(',').skip(2).take(4).map(|v| v.parse().unwrap_or(f64::NAN)).collect();
            (c[0] - c[1]).abs() > 3.0 * c[3]
        })
        .count();
    let far = md.split("### Stars beyond 3 sigma").nth(1).expect("a section on the misses beyond 3 sigma");
    assert!(
        far.contains("(sigmas calibrated on the other folds): feh ") && far.contains(&format!("feh {beyond} of 48"))
    );
    let (code, _, err) = specnn(&[
        "crossval",
        "--spectra",
        s(&train),
        "--labels",
        s(&train.join("labels.csv")),
        "--arch",
        "ann",
        "--targets",
        "feh",
        "--folds",
        "20",
        "--out",
        s(&models),
        "--report",
        s(&report),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("4 stars per fold"), "{err}");
}

#[test]
fn shards_merged_equal_one_unsharded_run() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 40, 51);
    let model = dir.path().join("m.safetensors");
    let labels = train.join("labels.csv");
    assert_eq!(specnn(&train_args(s(&train), s(&labels), s(&model), "1")).0, 0);
    for ext in ["csv", "fits"] {
        let whole = dir.path().join(format!("whole.{ext}"));
        assert_eq!(specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&whole)]).0, 0);
        let mut shards = Vec::new();
        for k in 1..=3 {
            let p = dir.path().join(format!("shard{k}.{ext}"));
            let (code, out, err) = specnn(&[
                "predict",
                "--model",
                s(&model),
                "--spectra",
                s(&train),
                "--out",
                s(&p),
                "--shard",
                &format!("{k}/3"),
            ]);
            assert_eq!(code, 0, "{out}{err}");
            shards.push(p);
        }
        let merged = dir.path().join(format!("merged.{ext}"));
        let mut args = vec!["merge", "--spectra", s(&train), "--out", s(&merged)];
        args.extend(shards.iter().map(|p| s(p)));
        let (code, out, err) = specnn(&args);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("wrote 40 rows"), "{out}");
        let a = specnn::catalog::Catalog::read(&whole).unwrap();
        let b = specnn::catalog::Catalog::read(&merged).unwrap();
        assert_eq!(a.columns, b.columns, "{ext}: merged shards equal the unsharded catalog");
        if ext == "csv" {
            assert_eq!(std::fs::read(&whole).unwrap(), std::fs::read(&merged).unwrap());
        }

        // A missing shard and a doubled shard are refused, and nothing is written.
        let bad = dir.path().join(format!("bad.{ext}"));
        let (code, _, err) = specnn(&["merge", "--spectra", s(&train), "--out", s(&bad), s(&shards[0]), s(&shards[2])]);
        assert_eq!(code, 1);
        assert!(err.contains("spectra missing"), "{err}");
        let (code, _, err) = specnn(&[
            "merge",
            "--spectra",
            s(&train),
            "--out",
            s(&bad),
            s(&shards[0]),
            s(&shards[1]),
            s(&shards[2]),
            s(&shards[1]),
        ]);
        assert_eq!(code, 1);
        assert!(err.contains("in more than one row"), "{err}");
        assert!(!bad.exists());
    }
    let (code, _, err) = specnn(&[
        "predict",
        "--model",
        s(&model),
        "--spectra",
        s(&train),
        "--out",
        s(&dir.path().join("x.csv")),
        "--shard",
        "4/3",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("between 1 and N"), "{err}");
}

/// `--device gpu` through the command line: train on the GPU (resuming there from a checkpoint), predict
/// on GPU and CPU (the same catalog within the GPU-vs-CPU tolerance), and the device errors.
#[test]
fn train_and_predict_on_the_gpu() {
    let Some(_) = common::gpu() else { return };
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 96, 31);
    let labels = train.join("labels.csv");
    let model = dir.path().join("g.safetensors");
    let mut args = train_args(s(&train), s(&labels), s(&model), "2");
    args.extend(["--device", "gpu"]);
    let (code, out, err) = specnn(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("device: gpu:0"), "the device taken is printed: {err}");
    // Resume on the GPU from the CPU-readable checkpoint, to 3 epochs.
    let mut more = train_args(s(&train), s(&labels), s(&model), "3");
    more.extend(["--device", "gpu", "--resume"]);
    let (code, out, err) = specnn(&more);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("epoch   3:") && !out.contains("epoch   2:"), "{out}");

    let (gcat, ccat) = (dir.path().join("gpu.csv"), dir.path().join("cpu.csv"));
    for (cat, dev) in [(&gcat, "gpu"), (&ccat, "cpu")] {
        let (code, out, err) =
            specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(cat), "--device", dev]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let read = |p: &Path| -> Vec<Vec<String>> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| l.split(',').map(String::from).collect()).collect()
    };
    let (g, c) = (read(&gcat), read(&ccat));
    assert_eq!(g.len(), 97);
    assert_eq!(g[0], c[0]);
    let cols: Vec<usize> = ["feh", "cfe", "mgfe"].iter().map(|n| g[0].iter().position(|h| h == n).unwrap()).collect();
    for (gr, cr) in g[1..].iter().zip(&c[1..]) {
        for &j in &cols {
            let (a, b): (f64, f64) = (gr[j].parse().unwrap(), cr[j].parse().unwrap());
            assert!((a - b).abs() <= 1e-3 + 1e-4 * b.abs(), "{}: gpu {a} vs cpu {b}", gr[0]);
        }
    }

    // Bad device names and missing adapters are clear errors.
    let (code, _, err) =
        specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&gcat), "--device", "tpu"]);
    assert_eq!(code, 1);
    assert!(err.contains("`tpu` is not a device"), "{err}");
    let (code, _, err) =
        specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&gcat), "--device", "gpu:99"]);
    assert_eq!(code, 1);
    assert!(err.contains("no adapter gpu:99"), "{err}");
    let (code, out, _) = specnn(&["devices"]);
    assert_eq!(code, 0);
    assert!(out.contains("gpu:0") && out.contains("--device auto takes"), "{out}");
}

/// `--validation LIST`: the listed stars validate (recorded in the model's history) instead of the
/// seeded split; unknown names are refused by name.
#[test]
fn a_validation_list_replaces_the_seeded_split() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 60, 41);
    let labels = train.join("labels.csv");
    let text = std::fs::read_to_string(&labels).unwrap();
    let files: Vec<String> = text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    let list = dir.path().join("val.txt");
    std::fs::write(&list, format!("file\n# the first ten stars\n{}\n", files[..10].join("\n"))).unwrap();
    let model = dir.path().join("v.safetensors");
    let mut args = train_args(s(&train), s(&labels), s(&model), "1");
    args.extend(["--validation", s(&list), "--device", "cpu"]);
    let (code, out, err) = specnn(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, meta) = load_model::<f32>(&model).unwrap();
    let h: serde_json::Value = serde_json::from_str(&meta["specnn-history"]).unwrap();
    let val: Vec<u64> = h["validation"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(val.len(), 10, "{val:?}");

    std::fs::write(&list, "nosuchstar.fits\n").unwrap();
    let (code, _, err) = specnn(&args);
    assert_eq!(code, 1);
    assert!(err.contains("not among the labelled spectra: nosuchstar.fits"), "{err}");
}

/// `--grid START,STEP,N`: the spectra are resampled onto that grid, stored with the model so that
/// `predict` repeats it; a malformed grid is refused.
#[test]
fn a_custom_grid_is_used_and_stored() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 48, 51);
    let labels = train.join("labels.csv");
    let model = dir.path().join("g.safetensors");
    let (code, out, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "ann",
        "--targets",
        "feh",
        "--grid",
        "4000,2,2048",
        "--epochs",
        "1",
        "--out",
        s(&model),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (m, meta) = load_model::<f32>(&model).unwrap();
    assert_eq!(m.arch().input_shape(1), vec![1, 2048]);
    let prep: serde_json::Value = serde_json::from_str(&meta["specnn-prep"]).unwrap();
    assert_eq!(prep["grid"]["n"], 2048);
    assert_eq!(prep["grid"]["step"], 2.0);
    let cat = dir.path().join("c.csv");
    assert_eq!(
        specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&cat), "--device", "cpu"]).0,
        0
    );
    let (code, _, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "ann",
        "--targets",
        "feh",
        "--grid",
        "4000,0,2048",
        "--out",
        s(&model),
    ]);
    assert_eq!(code, 2, "clap refuses it");
    assert!(err.contains("START and STEP must be positive"), "{err}");
}

/// `train --stream`: the preprocessed set goes to a scratch file beside the model and batches are
/// read from it; the network comes out the same as training from memory, the scratch file is gone
/// afterwards, and baselines and crossval refuse the flag.
#[test]
fn streamed_training_equals_training_from_memory() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 60, 61);
    let labels = train.join("labels.csv");
    let (mem, disk) = (dir.path().join("mem.safetensors"), dir.path().join("disk.safetensors"));
    let mut a = train_args(s(&train), s(&labels), s(&mem), "2");
    a.extend(["--device", "cpu"]);
    assert_eq!(specnn(&a).0, 0);
    let mut b = train_args(s(&train), s(&labels), s(&disk), "2");
    b.extend(["--device", "cpu", "--stream"]);
    let (code, out, err) = specnn(&b);
    assert_eq!(code, 0, "{out}\n{err}");
    let (m1, _) = load_model::<f32>(&mem).unwrap();
    let (m2, _) = load_model::<f32>(&disk).unwrap();
    for ((n1, t1), (n2, t2)) in m1.params().into_iter().zip(m2.params()) {
        assert_eq!(n1, n2);
        assert_eq!(t1, t2, "{n1} differs between streamed and in-memory training");
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rows"))
        .collect();
    assert!(left.is_empty(), "scratch files left behind: {left:?}");

    let rf = dir.path().join("rf.safetensors");
    let (code, _, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "rf",
        "--resolution",
        "200",
        "--targets",
        "feh",
        "--out",
        s(&rf),
        "--stream",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--stream is for networks"), "{err}");
    let (code, _, err) = specnn(&[
        "crossval",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "res-ann",
        "--resolution",
        "200",
        "--targets",
        "feh",
        "--out",
        s(&dir.path().join("cv")),
        "--folds",
        "2",
        "--report",
        s(&dir.path().join("cvr")),
        "--stream",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--stream is for `train`"), "{err}");
}
