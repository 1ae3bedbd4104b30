//! The command line as a user runs it.

mod common;

use common::specnn;
use ndarray::ArrayD;
use specnn::io::{read_safetensors, write_safetensors};

#[test]
fn audit_passes_the_public_file_and_fails_a_tampered_one() {
    let Some(data) = common::shared_data() else { return };
    let golden = data.join("golden/public.safetensors");
    let (code, out, err) = specnn(&["audit", "--golden", golden.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with("passed, 0 failed"), "{last}");
    assert!(out.contains("conv2d/same/k9") && out.contains("pass"));

    // One wrong number in one PyTorch output makes that case, and the run, fail.
    let dir = common::tempdir();
    let (mut tensors, meta) = read_safetensors::<f32>(&golden).unwrap();
    let y = tensors.get_mut("c0.y").expect("first case output");
    y.as_slice_mut().unwrap()[0] += 1.0;
    let list: Vec<(String, &ArrayD<f32>)> = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    let bad = dir.path().join("tampered.safetensors");
    write_safetensors(&bad, &list, meta).unwrap();
    let (code, out, _) = specnn(&["audit", "--golden", bad.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 1);
    assert!(out.contains("FAIL") && out.lines().last().unwrap().ends_with("1 failed"), "{out}");

    // --device all: the CPU and every adapter side by side; the tampered case fails on each.
    if common::gpu().is_some() {
        let (code, out, err) = specnn(&["audit", "--golden", golden.to_str().unwrap(), "--device", "all"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("[0] cpu") && out.contains("[1] gpu:0") && out.contains("cpu: 35 passed, 0 failed"),
            "{out}"
        );
        assert!(out.lines().filter(|l| l.starts_with("gpu:") && l.ends_with(", 0 failed")).count() >= 1, "{out}");
        let (code, out, _) = specnn(&["audit", "--golden", bad.to_str().unwrap(), "--device", "all", "--quiet"]);
        assert_eq!(code, 1);
        assert!(out.lines().filter(|l| l.ends_with(", 1 failed")).count() >= 2, "{out}");
    }

    // A truncated file is a clear error naming it.
    let bytes = std::fs::read(&golden).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..1000]).unwrap();
    let (code, _, err) = specnn(&["audit", "--golden", cut.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("cut.safetensors"), "{err}");
}

#[test]
fn audit_help_has_an_example() {
    let (code, out, _) = specnn(&["audit", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Example: specnn audit --golden"), "{out}");
}

#[test]
fn simulate_then_inspect() {
    let dir = common::tempdir();
    let out = dir.path().join("survey");
    let (code, stdout, err) = specnn(&["simulate", "--n", "6", "--seed", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("wrote 6 SYNTHETIC spectra"), "{stdout}");
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".fits"))
        .collect();
    assert_eq!(files.len(), 6);
    let mut args = vec!["inspect"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, _) = specnn(&args);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches("[SYNTHETIC]").count(), 6, "{stdout}");
    assert!(stdout.contains("LamostImage") && stdout.contains("LamostCoadd"));

    // inspect reports a broken file among good ones and exits 1.
    let broken = out.join("broken.fits");
    std::fs::write(&broken, b"SIMPLE  =                    T / truncated").unwrap();
    let (code, stdout, _) = specnn(&["inspect", &files[0], broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.contains("broken.fits: error:") && stdout.contains("[SYNTHETIC]"), "{stdout}");
}

/// `specnn bench --json` prints one record per step it was asked for, with the fields the PyTorch
/// comparison reads, and the fraction of the CPU's measured peak where the CPU has AVX2 and FMA
/// (what it measures is for benchmarks, not tests).
#[test]
fn bench_prints_one_json_record_per_step() {
    let (code, out, err) = specnn(&[
        "bench",
        "--json",
        "--only",
        "infer_res_ann",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--min-time",
        "0",
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let recs: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    let batches: Vec<u64> = recs.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 32, 128], "{out}");
    for r in &recs {
        assert_eq!(r["name"], "infer_res_ann");
        assert!(
            r["seconds"].as_f64().unwrap() > 0.0
                && r["samples_per_s"].as_f64().unwrap() > 0.0
                && r["gflops"].as_f64().unwrap() > 0.0,
            "{r}"
        );
        if specnn::cpu::sgemm::has_avx2_fma() {
            let f = r["of_peak"].as_f64().expect("a measured peak on an AVX2 CPU");
            assert!(f > 0.0 && f.is_finite(), "{r}");
        }
    }
    // A given peak is used as given.
    let (code, out, err) = specnn(&[
        "bench",
        "--only",
        "infer_res_ann",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--min-time",
        "0",
        "--device",
        "cpu",
        "--peak-gflops",
        "1e9",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("peak: 1000000000.0 GFLOP/s (given with --peak-gflops)") && out.matches(" 0%").count() == 3,
        "{out}"
    );
}
