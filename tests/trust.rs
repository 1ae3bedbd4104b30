//! The small-real-set training options (ensembles, kNN baseline, fine-tuning, log targets) and the
//! trust columns (calibrated uncertainties, out-of-domain flags), through the command line.
//! SYNTHETIC surveys where the test says so; the MILES and LAMOST tests use the real files.

mod common;

use common::specnn;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn survey(dir: &Path, name: &str, n: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    let (code, _, err) = specnn(&["simulate", "--n", &n.to_string(), "--seed", &seed.to_string(), "--out", s(&p)]);
    assert_eq!(code, 0, "{err}");
    p
}

/// The header and rows of a CSV catalog, as (columns, rows of cells).
fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    (head, lines.map(|l| l.split(',').map(String::from).collect()).collect())
}

fn col(head: &[String], name: &str) -> usize {
    head.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {head:?}"))
}

#[test]
fn an_ensemble_is_one_file_whose_spread_gives_calibrated_errors() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 150, 31);
    let model = dir.path().join("e.safetensors");
    let (code, out, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&train.join("labels.csv")),
        "--arch",
        "res-ann",
        "--resolution",
        "200",
        "--targets",
        "teff,feh",
        "--log-targets",
        "teff",
        "--ensemble",
        "3",
        "--epochs",
        "3",
        "--out",
        s(&model),
        "--seed",
        "2",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // One file; the member files and checkpoints are gone.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("e.safetensors"))
        .collect();
    assert_eq!(left, vec!["e.safetensors".to_string()], "{left:?}");
    let (tensors, meta) = specnn::io::read_safetensors::<f32>(&model).unwrap();
    assert_eq!(meta.get("specnn-ensemble").map(String::as_str), Some("3"));
    for m in 0..3 {
        assert!(tensors.contains_key(&format!("members.{m}.input.weight")), "member {m}");
    }
    assert!(meta.contains_key("specnn-calibration") && tensors.contains_key("domain.components"));
    let t = specnn::predict::load_trained(&model).unwrap();
    assert_eq!(t.model.members(), 3);
    assert!(t.scaling.is_log(0) && !t.scaling.is_log(1));

    let cat = dir.path().join("cat.csv");
    let (code, out, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&cat)]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (head, rows) = csv(&cat);
    for c in ["teff", "teff_err", "feh", "feh_err", "flags", "p_vmp"] {
        col(&head, c);
    }
    let (te, fe, pv) = (col(&head, "teff_err"), col(&head, "feh_err"), col(&head, "p_vmp"));
    for r in &rows {
        let (a, b, p): (f64, f64, f64) = (r[te].parse().unwrap(), r[fe].parse().unwrap(), r[pv].parse().unwrap());
        assert!(a > 0.0 && b > 0.0 && (0.0..=1.0).contains(&p), "{r:?}");
    }
    // Different stars get different uncertainties: the members' spread differs from star to star.
    let first = &rows[0][fe];
    assert!(rows.iter().any(|r| &r[fe] != first));
}

/// `--loss nll` on a SYNTHETIC survey: the file records the loss and has a mean and a log-variance
/// per label; a single network (no ensemble spread) then gives each star its own uncertainty, where
/// the same network trained on the MAE gives every star one standardised sigma; the baselines refuse
/// the option; a file whose loss does not match its outputs is refused by name.
#[test]
fn a_variance_head_gives_a_single_network_per_star_errors() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 150, 61);
    let labels = train.join("labels.csv");
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "train",
            "--spectra",
            s(&train),
            "--labels",
            s(&labels),
            "--arch",
            "res-ann",
            "--resolution",
            "200",
            "--targets",
            "logg,feh",
            "--epochs",
            "4",
            "--out",
            s(out),
        ];
        a.extend_from_slice(extra);
        specnn(&a)
    };
    let (nll, mae) = (dir.path().join("nll.safetensors"), dir.path().join("mae.safetensors"));
    let (code, out, err) = run(&nll, &["--loss", "nll"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(run(&mae, &[]).0, 0);
    let (tensors, meta) = specnn::io::read_safetensors::<f32>(&nll).unwrap();
    assert_eq!(meta.get("specnn-loss").map(String::as_str), Some("nll"));
    assert_eq!(tensors["out.weight"].shape()[0], 4, "two labels: two means and two log-variances");
    let t = specnn::predict::load_trained(&nll).unwrap();
    assert_eq!(t.history.loss, specnn::train::Loss::Nll);
    let distinct = |model: &Path| -> usize {
        let cat = dir.path().join("cat.csv");
        let (code, out, err) = specnn(&["predict", "--model", s(model), "--spectra", s(&train), "--out", s(&cat)]);
        assert_eq!(code, 0, "{out}\n{err}");
        let (head, rows) = csv(&cat);
        let fe = col(&head, "feh_err");
        let mut v: Vec<String> = rows.iter().map(|r| r[fe].clone()).collect();
        assert!(v.iter().all(|e| e.parse::<f64>().is_ok_and(|x| x > 0.0)), "{v:?}");
        v.sort();
        v.dedup();
        v.len()
    };
    assert!(distinct(&nll) > 100, "a variance head gives star-by-star errors");
    assert_eq!(distinct(&mae), 1, "a single MAE network has one sigma per label");

    let (code, _, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--arch",
        "knn",
        "--resolution",
        "200",
        "--targets",
        "feh",
        "--loss",
        "nll",
        "--out",
        s(&dir.path().join("k.safetensors")),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--loss"), "{err}");

    // The same tensors labelled as an MAE network: 4 outputs for 2 targets is refused, naming the file.
    let (tensors, mut meta) = specnn::io::read_safetensors::<f32>(&nll).unwrap();
    meta.insert("specnn-loss".into(), "mae".into());
    let bad = dir.path().join("bad.safetensors");
    let list: Vec<(String, &ndarray::ArrayD<f32>)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    specnn::io::write_safetensors(&bad, &list, meta).unwrap();
    let (code, _, err) =
        specnn(&["predict", "--model", s(&bad), "--spectra", s(&train), "--out", s(&dir.path().join("x.csv"))]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.safetensors") && err.contains("2 targets for a model of 4 outputs"), "{err}");
}

#[test]
fn knn_baseline_trains_predicts_and_reports_coverage() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 120, 41);
    let test = survey(dir.path(), "test", 30, 42);
    let model = dir.path().join("k.safetensors");
    let (code, out, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&train.join("labels.csv")),
        "--arch",
        "knn",
        "--resolution",
        "200",
        "--targets",
        "teff,logg,feh",
        "--out",
        s(&model),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (tensors, meta) = specnn::io::read_safetensors::<f32>(&model).unwrap();
    assert_eq!(meta.get("specnn-baseline").map(String::as_str), Some("\"knn\""));
    assert_eq!(tensors["knn.components"].shape(), &[50, 143]);
    let report = dir.path().join("r");
    let (code, out, err) = specnn(&[
        "evaluate",
        "--model",
        s(&model),
        "--spectra",
        s(&test),
        "--labels",
        s(&test.join("labels.csv")),
        "--report",
        s(&report),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("within 1 sigma"), "{out}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Uncertainties") && md.contains("## By S/N") && md.contains("Below and above Teff"), "{md}");
    assert_eq!(&std::fs::read(report.join("coverage.png")).unwrap()[1..4], b"PNG");
    let est = std::fs::read_to_string(report.join("estimates.csv")).unwrap();
    assert!(est.starts_with("file,teff_true,teff_est,teff_err,teff_spread_z,logg_true"), "{est}");
    // The kNN's raw spread (its neighbours' spread, standardised) is there for every star.
    let spreads: Vec<f64> = est.lines().skip(1).map(|l| l.split(',').nth(4).unwrap().parse().unwrap()).collect();
    assert_eq!(spreads.len(), 30);
    assert!(spreads.iter().all(|v| v.is_finite() && *v >= 0.0) && spreads.iter().any(|v| *v > 0.0), "{est}");
}

#[test]
fn init_fine_tunes_the_same_architecture_and_refuses_another() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 100, 51);
    let labels = train.join("labels.csv");
    let base = dir.path().join("base.safetensors");
    let common_args = [
        "--spectra",
        s(&train),
        "--labels",
        s(&labels),
        "--resolution",
        "200",
        "--targets",
        "feh,cfe",
        "--epochs",
        "2",
    ];
    let run = |arch: &str, out: &Path, extra: &[&str]| {
        let mut a = vec!["train", "--arch", arch, "--out", s(out)];
        a.extend_from_slice(&common_args);
        a.extend_from_slice(extra);
        specnn(&a)
    };
    assert_eq!(run("res-ann", &base, &[]).0, 0);
    let tuned = dir.path().join("tuned.safetensors");
    let (code, out, err) = run("res-ann", &tuned, &["--init", s(&base), "--lr", "1e-4"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Fine-tuning starts from the base: its first epoch's validation score is near the base's best,
    // far below a fresh network's first epoch.
    let first_score = |p: &Path| specnn::predict::load_trained(p).unwrap().history.epochs[0].val_score;
    let base_best = specnn::predict::load_trained(&base).unwrap().history.best_score.unwrap();
    assert!(
        first_score(&tuned) < first_score(&base) && first_score(&tuned) < 1.2 * base_best,
        "{} {} {}",
        first_score(&tuned),
        first_score(&base),
        base_best
    );
    let (code, _, err) = run("ann", &dir.path().join("other.safetensors"), &["--init", s(&base)]);
    assert_ne!(code, 0);
    assert!(err.contains("base.safetensors") && err.contains("architecture"), "{err}");
}

#[test]
fn real_lamost_spectra_through_a_synthetic_model_are_flagged() {
    let Some(data) = common::shared_data() else { return };
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 100, 61);
    let model = dir.path().join("syn.safetensors");
    let (code, out, err) = specnn(&[
        "train",
        "--spectra",
        s(&train),
        "--labels",
        s(&train.join("labels.csv")),
        "--arch",
        "res-ann",
        "--resolution",
        "200",
        "--targets",
        "teff,logg,feh",
        "--epochs",
        "2",
        "--out",
        s(&model),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let cat = dir.path().join("real.csv");
    let (code, out, err) = specnn(&[
        "predict",
        "--model",
        s(&model),
        "--spectra",
        s(&data.join("lamost/lamost_lrs_cmost")),
        "--out",
        s(&cat),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("WARNING") && err.contains("SYNTHETIC"), "{err}");
    // A mistyped input path fails the run (a job array must not count it as done) and writes nothing.
    let none = dir.path().join("no-such-folder");
    let cat2 = dir.path().join("none.csv");
    let (code, _, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&none), "--out", s(&cat2)]);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-folder") && err.contains("no such file"), "{err}");
    assert!(!cat2.exists());
    let (head, rows) = csv(&cat);
    let (f, reason) = (col(&head, "flags"), col(&head, "reason"));
    let predicted: Vec<&Vec<String>> = rows.iter().filter(|r| r[reason].is_empty()).collect();
    assert!(!predicted.is_empty());
    for r in predicted {
        let flags: u32 = r[f].parse().unwrap();
        assert_ne!(flags & specnn::trust::FLAG_SYNTHETIC_MODEL, 0, "{r:?}");
    }
}

#[test]
fn a_model_trained_on_cool_miles_stars_flags_hot_ones() {
    let Some(data) = common::shared_data() else { return };
    let miles = data.join("miles");
    let dir = common::tempdir();
    // Labels of the cool stars only (Teff < 6000 K): the others are not in the training table.
    let text = std::fs::read_to_string(miles.join("labels.csv")).unwrap();
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    let teff_col = head.split(',').position(|c| c == "teff").unwrap();
    let (mut cool, mut hot, mut cool_files) = (vec![head.to_string()], Vec::new(), Vec::new());
    for l in lines {
        let file = l.split(',').next().unwrap().to_string();
        match l.split(',').nth(teff_col).and_then(|v| v.parse::<f64>().ok()) {
            Some(t) if t < 6000.0 => {
                cool.push(l.to_string());
                cool_files.push(file);
            }
            Some(t) if t > 10000.0 => hot.push(file),
            _ => {}
        }
    }
    let labels = dir.path().join("cool.csv");
    std::fs::write(&labels, cool.join("\n") + "\n").unwrap();
    let model = dir.path().join("cool.safetensors");
    let (code, out, err) = specnn(&[
        "train",
        "--spectra",
        s(&miles),
        "--labels",
        s(&labels),
        "--arch",
        "knn",
        "--grid",
        "3550,1,3850",
        "--targets",
        "teff,logg,feh",
        "--out",
        s(&model),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let cat = dir.path().join("all.csv");
    let (code, out, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&miles), "--out", s(&cat)]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (head, rows) = csv(&cat);
    let (f, file) = (col(&head, "flags"), col(&head, "file"));
    let far = |r: &Vec<String>| r[f].parse::<u32>().unwrap() & specnn::trust::FLAG_FAR != 0;
    let hot_rows: Vec<&Vec<String>> = rows.iter().filter(|r| hot.contains(&r[file])).collect();
    assert!(hot_rows.len() > 30);
    let hot_flagged = hot_rows.iter().filter(|r| far(r)).count();
    assert!(hot_flagged as f64 >= 0.8 * hot_rows.len() as f64, "{hot_flagged} of {} hot stars flagged", hot_rows.len());
    // The training stars themselves are flagged only in the 1% tail the threshold allows.
    let cool_rows: Vec<&Vec<String>> = rows.iter().filter(|r| cool_files.contains(&r[file])).collect();
    let cool_flagged = cool_rows.iter().filter(|r| far(r)).count();
    assert!(
        (cool_flagged as f64) < 0.05 * cool_rows.len() as f64,
        "{cool_flagged} of {} cool stars flagged",
        cool_rows.len()
    );
}
