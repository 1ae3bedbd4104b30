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

    // evaluate's estimates.csv gives the members' spread apart: without variance heads it is the
    // whole raw spread, star by star.
    let report = dir.path().join("r");
    let (code, out, err) = common::evaluate(&model, &train, &train.join("labels.csv"), &report);
    assert_eq!(code, 0, "{out}\n{err}");
    let (head, rows) = csv(&report.join("estimates.csv"));
    let (sz, mz) = (col(&head, "feh_spread_z"), col(&head, "feh_members_z"));
    for r in &rows {
        let (a, b): (f64, f64) = (r[sz].parse().unwrap(), r[mz].parse().unwrap());
        assert!(b > 0.0 && (a - b).abs() <= 1e-12 * a, "{r:?}");
    }
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
    let (code, out, err) = common::evaluate(&model, &test, &test.join("labels.csv"), &report);
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

    // A wrong label: one star's Teff label tripled. The report lists it first among the stars beyond 3
    // sigma, and its counts are those of estimates.csv's errors against its sigmas.
    let (head, rows) = csv(&test.join("labels.csv"));
    let (fc, tc) = (col(&head, "file"), col(&head, "teff"));
    let wrong = rows[0][fc].clone();
    let mut text = head.join(",") + "\n";
    for (i, r) in rows.iter().enumerate() {
        let mut r = r.clone();
        if i == 0 {
            r[tc] = format!("{}", 3.0 * r[tc].parse::<f64>().unwrap());
        }
        text += &(r.join(",") + "\n");
    }
    let bad_labels = dir.path().join("bad-labels.csv");
    std::fs::write(&bad_labels, text).unwrap();
    let report = dir.path().join("r2");
    let (code, out, err) = common::evaluate(&model, &test, &bad_labels, &report);
    assert_eq!(code, 0, "{out}\n{err}");
    let (head, rows) = csv(&report.join("estimates.csv"));
    let beyond = |name: &str| {
        let (t, e, g) = (
            col(&head, &format!("{name}_true")),
            col(&head, &format!("{name}_est")),
            col(&head, &format!("{name}_err")),
        );
        let v = |r: &Vec<String>, c: usize| r[c].parse::<f64>().unwrap();
        rows.iter().filter(|r| (v(r, t) - v(r, e)).abs() > 3.0 * v(r, g)).count()
    };
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let section = md.split("### Stars beyond 3 sigma").nth(1).expect("a section on the misses beyond 3 sigma");
    for name in ["teff", "logg", "feh"] {
        assert!(section.contains(&format!("{name} {} of 30", beyond(name))), "{name}: {section}");
    }
    assert!(beyond("teff") >= 1);
    let first_row = section.lines().find(|l| l.starts_with("| ") && !l.starts_with("| file")).unwrap();
    assert!(first_row.starts_with(&format!("| {wrong} |")) && first_row.contains("teff"), "{section}");
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

/// `train --calibrate-folds K` on a SYNTHETIC survey: the model's calibration comes from a K-fold
/// cross-validation (every labelled star), the catalog says so in ERRCAL, and the scratch fold models
/// are gone; the options that cannot work are refused by name.
#[test]
fn calibrate_folds_fits_on_every_out_of_fold_star() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 90, 71);
    let labels = train.join("labels.csv");
    let model = dir.path().join("k.safetensors");
    let base = ["--spectra", s(&train), "--labels", s(&labels), "--resolution", "200", "--targets", "teff,feh"];
    let args = |extra: &[&'static str], out: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec!["train".into()];
        a.extend(base.iter().map(|x| x.to_string()));
        a.extend(extra.iter().map(|x| x.to_string()));
        a.extend(["--out".to_string(), s(out).to_string()]);
        a
    };
    let run = |a: Vec<String>| specnn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, out, err) = run(args(&["--arch", "knn", "--calibrate-folds", "3"], &model));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("crossval 3") && out.contains("teff 90"), "{out}");
    let t = specnn::predict::load_trained(&model).unwrap();
    let c = t.calibration.as_ref().unwrap();
    assert_eq!((c.source.as_str(), c.n.clone()), ("crossval 3", vec![90, 90]));
    // A plain run calibrates on its 27 validation stars.
    let plain = dir.path().join("plain.safetensors");
    assert_eq!(run(args(&["--arch", "knn"], &plain)).0, 0);
    let p = specnn::predict::load_trained(&plain).unwrap();
    let pc = p.calibration.as_ref().unwrap();
    assert_eq!((pc.source.as_str(), pc.n.clone()), ("validation", vec![27, 27]));
    assert_ne!(pc.scale, c.scale);
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("k.safetensors"))
        .collect();
    assert_eq!(left, vec!["k.safetensors".to_string()], "the scratch fold models are removed");
    let cat = dir.path().join("cat.fits");
    let (code, out, err) = specnn(&["predict", "--model", s(&model), "--spectra", s(&train), "--out", s(&cat)]);
    assert_eq!(code, 0, "{out}\n{err}");
    let read = specnn::catalog::Catalog::read(&cat).unwrap();
    assert_eq!(read.card_value("ERRCAL"), Some(&specnn::catalog::CardValue::Str("crossval 3".into())));

    for (extra, says) in [
        (&["--arch", "knn", "--calibrate-folds", "1"][..], "at least 2 folds"),
        (&["--arch", "ann", "--bag"][..], "--ensemble"),
        (&["--arch", "ann", "--bag", "--ensemble", "2", "--epochs", "1"][..], "--calibrate-folds"),
    ] {
        let (code, _, err) = run(args(extra, &dir.path().join("x.safetensors")));
        assert_ne!(code, 0, "{extra:?}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    let mut cv = args(&["--arch", "knn", "--calibrate-folds", "3", "--report"], &dir.path().join("cvm"));
    cv[0] = "crossval".into();
    cv.insert(cv.len() - 2, s(&dir.path().join("cv")).to_string());
    let (code, _, err) = run(cv);
    assert_ne!(code, 0);
    assert!(err.contains("crossval's report already gives"), "{err}");
}

/// `--bag`: the first member is the one an unbagged ensemble trains; the others learn from their
/// own splits, so they differ from the unbagged ensemble's. SYNTHETIC survey.
#[test]
fn bagged_members_after_the_first_train_on_their_own_split() {
    let dir = common::tempdir();
    let train = survey(dir.path(), "train", 60, 81);
    let labels = train.join("labels.csv");
    let fit = |name: &str, extra: &[&str]| -> std::collections::BTreeMap<String, ndarray::ArrayD<f32>> {
        let out = dir.path().join(name);
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
            "feh",
            "--ensemble",
            "2",
            "--epochs",
            "2",
            "--device",
            "cpu",
            "--out",
            s(&out),
        ];
        a.extend_from_slice(extra);
        let (code, o, err) = specnn(&a);
        assert_eq!(code, 0, "{o}\n{err}");
        specnn::io::read_safetensors::<f32>(&out).unwrap().0
    };
    let plain = fit("plain.safetensors", &[]);
    let bagged = fit("bag.safetensors", &["--bag", "--calibrate-folds", "2"]);
    let w = |t: &std::collections::BTreeMap<String, ndarray::ArrayD<f32>>, m: usize| {
        t[&format!("members.{m}.out.weight")].clone()
    };
    assert_eq!(w(&plain, 0), w(&bagged, 0), "member 0 trains on the shared split either way");
    assert_ne!(w(&plain, 1), w(&bagged, 1), "member 1 trains on its own split");
}

/// The out-of-fold calibration in numbers: stars whose errors are drawn from N(0, (2 spread)^2) get a
/// scale of 2 (no floor), so 68% and 95% of each fold's stars fall within 1 and 2 of the sigmas
/// fitted on the other folds; and a calibration fitted in another label scaling states the same
/// sigmas in label units.
#[test]
fn out_of_fold_calibration_recovers_the_error_scale_across_folds() {
    use rand::{Rng, SeedableRng};
    use specnn::model_file::Scaling;
    let n = 6000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let fold_scaling = Scaling { mean: vec![0.0], sd: vec![0.5], log10: vec![false] };
    let (mut y, mut est, mut spread) =
        (ndarray::Array2::zeros((n, 1)), ndarray::Array2::zeros((n, 1)), ndarray::Array2::zeros((n, 1)));
    for i in 0..n {
        let sz: f64 = 0.05 + 0.5 * rng.random::<f64>();
        // Box-Muller: a standard normal.
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        est[[i, 0]] = rng.random::<f64>();
        y[[i, 0]] = est[[i, 0]] + 2.0 * sz * 0.5 * g;
        spread[[i, 0]] = sz;
    }
    let o = specnn::workflow::OutOfFold {
        est: est.clone(),
        sig: ndarray::Array2::from_elem((n, 1), f64::NAN),
        spread_z: spread.clone(),
        members_z: ndarray::Array2::from_elem((n, 1), f64::NAN),
        fold_of: (0..n).map(|i| i % 3).collect(),
        scalings: vec![fold_scaling.clone(); 3],
        first_history: None,
        described: String::new(),
    };
    let sig = o.cross_fitted_sigmas(&y);
    let pairs: Vec<(f64, f64)> = (0..n).map(|i| (y[[i, 0]] - est[[i, 0]], sig[[i, 0]])).collect();
    let (c1, c2) = (specnn::trust::coverage(&pairs, 1.0), specnn::trust::coverage(&pairs, 2.0));
    assert!((c1 - 0.683).abs() < 0.03 && (c2 - 0.954).abs() < 0.02, "{c1} {c2}");
    let all: Vec<usize> = (0..n).collect();
    let cal = o.calibration(&y, &all, &fold_scaling);
    assert!((cal.scale[0] - 2.0).abs() < 0.15 && cal.source == "crossval 3", "{cal:?}");
    // The same pairs seen from a model whose label sd is 4 times larger: sigma_z shrinks 4 times, the
    // sigma in label units stays.
    let wide = Scaling { mean: vec![1.0], sd: vec![2.0], log10: vec![false] };
    let cal_wide = o.calibration(&y, &all, &wide);
    for i in [0, 17, 4242] {
        let a = fold_scaling.spread_to_label(0, 0.0, cal.sigma_z(0, spread[[i, 0]]));
        let spread_wide = spread[[i, 0]] * 0.5 / 2.0;
        let b = wide.spread_to_label(0, 0.0, cal_wide.sigma_z(0, spread_wide));
        assert!((a - b).abs() < 1e-9 * a.max(1.0), "star {i}: {a} against {b}");
    }
}
