"""The Python package as a user drives it: real LAMOST files read, models trained on the REAL MILES
stars from files and from arrays, predictions from arrays equal to the CLI catalog's rows, the
PyTorch audit, and bad input raising errors that name the file (or spectrum) and the problem."""

import csv
import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import specnn

from conftest import MILES_GRID, REPO


# --- reading -----------------------------------------------------------------------------------

def test_read_gives_arrays_and_header_facts_of_a_real_lamost_coadd(lamost_files):
    f = next(p for p in lamost_files if p.name == "DR9_coadd__spec-55859-F5902_sp01-001.fits.gz")
    s = specnn.read(f)
    assert s["layout"] == "LamostCoadd" and s["medium"] == "vacuum"
    n = len(s["flux"])
    assert n > 3000
    for k in ("wavelength", "ivar", "mask"):
        assert s[k].shape == (n,)
    assert s["mask"].dtype == np.bool_ and s["wavelength"].dtype == np.float64
    assert np.all(np.diff(s["wavelength"]) > 0)
    assert 3650 < s["wavelength"][0] < 3750 and s["wavelength"][-1] > 9000
    # A pixel without weight is bad (so are and-mask bits); every good pixel has a finite flux.
    assert np.all(s["mask"][s["ivar"] == 0]) and 0 < s["mask"].sum() < n // 10
    assert np.all(np.isfinite(s["flux"][~s["mask"]]))
    # The header: obsid, position, per-band S/N, class.
    assert s["obsid"] == 101001 and s["class"] == "STAR" and not s["synthetic"]
    assert s["snr"]["r"] == pytest.approx(27.16)
    assert -90 <= s["dec"] <= 90 and 0 <= s["ra"] < 360


def test_the_same_star_reads_alike_from_the_dr5_image_and_the_dr9_coadd(lamost_files):
    img = specnn.read(next(p for p in lamost_files if p.name.startswith("DR5_primaryimage") and "sp01-005" in p.name))
    tab = specnn.read(next(p for p in lamost_files if p.name.startswith("DR9_coadd") and "sp01-005" in p.name))
    assert img["layout"] == "LamostImage" and tab["layout"] == "LamostCoadd"
    assert img["obsid"] == tab["obsid"] == 101005
    assert np.allclose(img["wavelength"], tab["wavelength"], rtol=1e-6)


def test_read_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        specnn.read(tmp_path / "nope.fits")


def test_read_of_a_truncated_fits_names_the_file(lamost_files, tmp_path):
    src = next(p for p in lamost_files if p.name == "DR9_coadd__spec-55859-F5902_sp01-001.fits.gz")
    raw = gzip.decompress(src.read_bytes())
    cut = tmp_path / "truncated.fits"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(specnn.SpecnnError, match="truncated.fits"):
        specnn.read(cut)


def test_read_of_a_medium_resolution_file_says_what_it_is(data):
    f = sorted((data / "lamost" / "lamost_mrs_laspec").iterdir())[0]
    with pytest.raises(specnn.SpecnnError, match="medium-resolution"):
        specnn.read(f)


def test_read_rejects_an_unknown_medium(lamost_files):
    with pytest.raises(specnn.SpecnnError, match="medium"):
        specnn.read(lamost_files[0], medium="water")


# --- models and predictions --------------------------------------------------------------------

def test_train_from_files_gives_a_calibrated_model_of_the_real_miles_stars(knn_model):
    path, summary = knn_model
    assert summary["trained"] == 788 and summary["refused"] == []
    m = specnn.Model.load(path)
    assert m.targets == ["teff", "logg", "feh"]
    assert m.units == {"teff": "K", "logg": "dex (cgs)", "feh": "dex"}
    assert m.calibrated and not m.synthetic and m.members == 1
    assert "knn" in m.describe
    assert m.grid.shape == (3850,) and m.grid[0] == 3550 and m.grid[-1] == 7399
    # kNN on MILES (REAL): validation MAE in the range EXPERIMENTS.md reports for its crossval.
    mae = summary["history"]["epochs"][0]["val_mae"]
    assert 150 < mae[0] < 600 and 0.1 < mae[1] < 0.8 and 0.1 < mae[2] < 0.6
    assert m.history["best_epoch"] == summary["history"]["best_epoch"]
    assert m.history["epochs"][0]["val_mae"] == pytest.approx(mae, rel=1e-12)


def test_predict_from_arrays_gives_the_cli_catalog_rows(knn_model, lamost_files, tmp_path):
    m = specnn.Model.load(knn_model[0])
    from_files = m.predict_files(lamost_files, device="cpu")
    from_read = m.predict_spectra([specnn.read(f) for f in lamost_files], device="cpu", errors="keep")
    # The CLI on the same files, as a CSV catalog.
    cat = tmp_path / "cat.csv"
    exe = REPO / "target" / "release" / "specnn"
    assert exe.exists(), f"{exe} not built: run `cargo build --release` first"
    subprocess.run([str(exe), "predict", "--model", str(knn_model[0]), "--spectra", *map(str, lamost_files), "--out", str(cat), "--device", "cpu"],
                   check=True, capture_output=True)

    rows = list(csv.DictReader(open(cat)))
    assert [r["file"] for r in rows] == from_files["file"]
    cli_teff = np.array([float(r["teff"]) if r["teff"] else np.nan for r in rows])
    assert np.allclose(cli_teff, from_files["teff"], rtol=1e-9, equal_nan=True)
    assert from_read["file"] == from_files["file"] == [f.name for f in lamost_files]
    for k in ("teff", "teff_err", "logg", "logg_err", "feh", "feh_err", "p_vmp", "snr"):
        assert np.allclose(from_read[k], from_files[k], rtol=1e-12, equal_nan=True), k
    for k in ("flags", "vmp"):
        assert np.array_equal(from_read[k], from_files[k]), k
    assert from_read["reason"] == from_files["reason"]
    # The QSO of DR13 does not cover the MILES grid: refused in both, with the option that helps.
    refused = [i for i, r in enumerate(from_files["reason"]) if r]
    assert len(refused) == 1 and "min-coverage" in from_files["reason"][refused[0]]
    assert from_files["flags"][refused[0]] == -1 and np.isnan(from_files["teff"][refused[0]])
    assert from_files["obsid"][0] == 1247301001


def test_predict_files_takes_a_folder_and_names_a_missing_path(knn_model, data, tmp_path):
    m = specnn.Model.load(knn_model[0])
    folder = m.predict_files(data / "lamost" / "lamost_lrs_cmost", device="cpu")
    assert len(folder["file"]) == 8 and folder["file"] == sorted(folder["file"])
    # The LAMOST folder holds only folders: found with recursive=True, said without.
    with pytest.raises(specnn.SpecnnError, match="recursive"):
        m.predict_files(data / "lamost", device="cpu")
    every = m.predict_files(data / "lamost", recursive=True, device="cpu")
    assert len(every["file"]) == len([p for p in (data / "lamost").rglob("*.fits*")])
    assert set(folder["file"]) <= set(every["file"])
    with pytest.raises(specnn.SpecnnError, match="nowhere"):
        m.predict_files([data / "lamost" / "lamost_lrs_cmost", tmp_path / "nowhere"], device="cpu")


def test_predict_releases_the_gil_while_it_computes(knn_model, lamost_files):
    """With a switch interval of 1000 s, the main thread gets the GIL back before the worker's
    `predict` returns only if `predict` releases it."""
    import threading
    m = specnn.Model.load(knn_model[0])
    a = specnn.read(lamost_files[0])
    flux = np.repeat(a["flux"][None, :], 300, axis=0)
    started, state = threading.Event(), {"done": False}

    def work():
        started.set()
        m.predict(a["wavelength"], flux, device="cpu")
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        t = threading.Thread(target=work)
        t.start()
        started.wait()
        during = state["done"]
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert state["done"] and during is False


def test_predict_takes_one_spectrum_a_2d_batch_or_a_ragged_list(knn_model, lamost_files):
    m = specnn.Model.load(knn_model[0])
    a, b = specnn.read(lamost_files[0]), specnn.read(lamost_files[3])  # 3909 and 3908 pixels
    one = m.predict(a["wavelength"], a["flux"], a["ivar"], mask=a["mask"], device="cpu")
    assert isinstance(one["teff"], float) and one["file"] == "spectrum[0]" and one["reason"] == ""
    assert one["teff_err"] > 0 and 0 <= one["p_vmp"] <= 1
    two = m.predict(a["wavelength"], np.stack([a["flux"], a["flux"]]), np.stack([a["ivar"], a["ivar"]]), device="cpu", names=["x", "y"])
    assert two["file"] == ["x", "y"] and two["teff"].shape == (2,)
    # Without the mask the pixels with ivar 0 are still bad: the same estimate.
    assert two["teff"][0] == pytest.approx(one["teff"], rel=1e-12)
    ragged = m.predict([a["wavelength"], b["wavelength"]], [a["flux"], b["flux"]], [a["ivar"], b["ivar"]], device="cpu")
    assert ragged["teff"][0] == pytest.approx(one["teff"], rel=1e-12)
    alone_b = m.predict(b["wavelength"], b["flux"], b["ivar"], device="cpu")
    assert ragged["teff"][1] == pytest.approx(alone_b["teff"], rel=1e-12)


def test_low_snr_given_to_predict_sets_the_flag(knn_model, lamost_files):
    m = specnn.Model.load(knn_model[0])
    a = specnn.read(lamost_files[0])
    hi = m.predict(a["wavelength"], a["flux"], a["ivar"], snr=200.0, device="cpu")
    lo = m.predict(a["wavelength"], a["flux"], a["ivar"], snr=3.0, device="cpu")
    low_snr_bit = next(b for b, what in specnn.FLAGS.items() if "S/N" in what)
    assert not hi["flags"] & low_snr_bit and lo["flags"] & low_snr_bit
    assert lo["snr"] == 3.0


def test_nan_flux_raises_naming_the_spectrum_or_keeps_the_reason(knn_model, lamost_files):
    m = specnn.Model.load(knn_model[0])
    a = specnn.read(lamost_files[0])
    bad = a["flux"].copy()
    good_pixel = int(np.flatnonzero(~a["mask"])[100])
    bad[good_pixel] = np.nan
    flux = np.stack([a["flux"], bad])
    with pytest.raises(specnn.SpecnnError, match=r"spectrum\[1\].*NaN"):
        m.predict(a["wavelength"], flux, device="cpu")
    kept = m.predict(a["wavelength"], flux, device="cpu", errors="keep")
    assert kept["reason"][0] == "" and "NaN" in kept["reason"][1]
    assert np.isfinite(kept["teff"][0]) and np.isnan(kept["teff"][1]) and kept["flags"][1] == -1
    # Masked, the same pixel is no longer an error.
    mask = np.zeros(flux.shape, bool)
    mask[1, good_pixel] = True
    assert m.predict(a["wavelength"], flux, mask=mask, device="cpu")["reason"] == ["", ""]


def test_predict_refuses_bad_shapes_and_flat_or_uncovered_spectra(knn_model, lamost_files):
    m = specnn.Model.load(knn_model[0])
    a = specnn.read(lamost_files[0])
    with pytest.raises(specnn.SpecnnError, match="wavelength has 3908 values, flux 3909"):
        m.predict(a["wavelength"][:-1], a["flux"], device="cpu")
    with pytest.raises(specnn.SpecnnError, match="3-D"):
        m.predict(a["wavelength"], a["flux"][None, None, :], device="cpu")
    with pytest.raises(specnn.SpecnnError, match="2 wavelength arrays for 3 spectra"):
        m.predict([a["wavelength"]] * 2, [a["flux"]] * 3, device="cpu")
    with pytest.raises(specnn.SpecnnError, match=r"spectrum\[0\]"):
        m.predict(a["wavelength"], np.full_like(a["flux"], 3.0), device="cpu")
    red = a["wavelength"] > 7000
    with pytest.raises(specnn.SpecnnError, match="covers"):
        m.predict(a["wavelength"][red], a["flux"][red], device="cpu")
    with pytest.raises(specnn.SpecnnError, match="device"):
        m.predict(a["wavelength"], a["flux"], device="tpu")


def test_a_model_file_of_the_wrong_kind_is_refused_naming_it(data, tmp_path):
    with pytest.raises(specnn.SpecnnError, match="public.safetensors"):
        specnn.Model.load(data / "golden" / "public.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(specnn.SpecnnError, match="junk.safetensors"):
        specnn.Model.load(junk)
    with pytest.raises(FileNotFoundError):
        specnn.Model.load(tmp_path / "absent.safetensors")


# --- training from arrays ----------------------------------------------------------------------

def test_train_from_arrays_equals_train_from_files(knn_model, miles_arrays, tmp_path, lamost_files):
    spectra, labels = miles_arrays
    out = tmp_path / "arrays-knn.safetensors"
    s = specnn.train(out, wave=[x["wavelength"] for x in spectra], flux=[x["flux"] for x in spectra],
                     ivar=[x["ivar"] for x in spectra], mask=[x["mask"] for x in spectra],
                     names=[x["path"].rsplit("/", 1)[-1] for x in spectra], labels=labels,
                     arch="knn", grid=MILES_GRID, medium="air")
    assert s["trained"] == 788 and s["model"] == str(out)
    assert s["history"]["epochs"][0]["val_mae"] == pytest.approx(knn_model[1]["history"]["epochs"][0]["val_mae"], rel=1e-12)
    a, b = specnn.Model.load(out), specnn.Model.load(knn_model[0])
    pa, pb = a.predict_files(lamost_files, device="cpu"), b.predict_files(lamost_files, device="cpu")
    assert np.allclose(pa["teff"], pb["teff"], rtol=1e-12, equal_nan=True)


def test_train_a_network_from_arrays_with_options_and_a_callback(miles_arrays, tmp_path):
    spectra, labels = miles_arrays
    seen = []
    out = tmp_path / "ann.safetensors"
    s = specnn.train(out, wave=[x["wavelength"] for x in spectra], flux=[x["flux"] for x in spectra],
                     labels={"teff": labels["teff"], "feh": labels["feh"]}, arch="ann", hidden=[32, 32], epochs=3,
                     patience=10, grid=MILES_GRID, medium="air", log_targets=["teff"], standardise_inputs=True,
                     device="cpu", on_epoch=seen.append)
    assert [e["epoch"] for e in seen] == [1, 2, 3]
    assert set(seen[0]["val_mae"]) == {"teff", "feh"} and all(np.isfinite(e["train_loss"]) for e in seen)
    assert len(s["history"]["epochs"]) == 3
    m = specnn.Model.load(out)
    assert m.targets == ["teff", "feh"] and "ann" in m.describe and m.calibrated
    # The file is safetensors with PyTorch state-dict names, f32 (what safetensors.torch.load_file reads).
    raw = out.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__")
    assert json.loads(meta["specnn-arch"])["kind"] == "ann"
    names = [k for k in header if not k.startswith("domain.")]
    assert names and all(k.endswith((".weight", ".bias")) for k in names)
    assert all(header[k]["dtype"] == "F32" for k in names)


def test_a_variance_head_gives_each_star_its_own_error(miles_arrays, tmp_path):
    # loss="nll" is the CLI's --loss nll: a single network whose predicted variance makes each star's error.
    spectra, labels = miles_arrays
    out = tmp_path / "nll.safetensors"
    specnn.train(out, wave=[x["wavelength"] for x in spectra], flux=[x["flux"] for x in spectra],
                 labels={"feh": labels["feh"]}, arch="ann", hidden=[32], epochs=3, grid=MILES_GRID, medium="air",
                 standardise_inputs=True, loss="nll", device="cpu")
    m = specnn.Model.load(out)
    assert m.loss == "nll" and m.calibrated and m.targets == ["feh"]
    cat = m.predict([x["wavelength"] for x in spectra[:20]], [x["flux"] for x in spectra[:20]], medium="air")
    err = np.asarray(cat["feh_err"])
    assert np.all(np.isfinite(err) & (err > 0)) and len(np.unique(err)) > 10
    with pytest.raises(specnn.SpecnnError, match="baselines take no loss"):
        specnn.train(tmp_path / "k.safetensors", wave=[x["wavelength"] for x in spectra], flux=[x["flux"] for x in spectra],
                     labels={"feh": labels["feh"]}, arch="knn", grid=MILES_GRID, medium="air", loss="nll")


def test_train_options_are_the_clis_with_clear_errors(miles_arrays, data, tmp_path):
    spectra, labels = miles_arrays
    w, f = [x["wavelength"] for x in spectra[:20]], [x["flux"] for x in spectra[:20]]
    lab = {"teff": labels["teff"][:20]}
    out = tmp_path / "never.safetensors"
    with pytest.raises(specnn.SpecnnError, match="arch"):
        specnn.train(out, wave=w, flux=f, labels=lab)
    with pytest.raises(specnn.SpecnnError, match="(?s)'min_coverag'.*similar.*'min_coverage'"):
        specnn.train(out, wave=w, flux=f, labels=lab, arch="knn", min_coverag=0.8)
    with pytest.raises(specnn.SpecnnError, match="'abc' for 'epochs'"):
        specnn.train(out, wave=w, flux=f, labels=lab, arch="ann", epochs="abc")
    with pytest.raises(specnn.SpecnnError, match="no labels for target.*logg"):
        specnn.train(out, wave=w, flux=f, labels=lab, arch="knn", targets=["teff", "logg"])
    with pytest.raises(specnn.SpecnnError, match="19 label rows for 20 spectra"):
        specnn.train(out, wave=w, flux=f, labels={"teff": labels["teff"][:19]}, arch="knn")
    with pytest.raises(specnn.SpecnnError, match="`tmass` is not a label"):
        specnn.train(out, wave=w, flux=f, labels={"tmass": labels["teff"][:20]}, arch="knn")
    with pytest.raises(specnn.SpecnnError, match="no `cfe` column"):
        specnn.train(out, spectra=data / "miles", labels=data / "miles" / "labels.csv", arch="knn", targets="cfe")
    assert not out.exists()


def test_train_leaves_out_bad_spectra_with_a_warning(miles_arrays, tmp_path):
    spectra, labels = miles_arrays
    flux = [x["flux"].copy() for x in spectra[:120]]
    flux[7][:] = 1.0  # a flat spectrum
    with pytest.warns(UserWarning, match="spectrum\\[7\\]"):
        s = specnn.train(tmp_path / "m.safetensors", wave=[x["wavelength"] for x in spectra[:120]], flux=flux,
                         labels={"teff": labels["teff"][:120]}, arch="knn", grid=MILES_GRID, medium="air")
    assert s["trained"] == 119 and [r[0] for r in s["refused"]] == ["spectrum[7]"]


# --- audit -------------------------------------------------------------------------------------

def test_evaluate_returns_the_reports_figures_on_real_miles_stars(knn_model, data, tmp_path):
    path, _ = knn_model
    e = specnn.evaluate(path, data / "miles", data / "miles" / "labels.csv", tmp_path / "report")
    assert (tmp_path / "report" / "report.md").exists()
    assert e["evaluated"] == 788 and e["refused"] == 0 and not e["synthetic"]
    assert set(e["labels"]) == {"teff", "logg", "feh"}
    teff = e["labels"]["teff"]
    assert teff["n"] == 785 and teff["mae"] > 0 and teff["sd"] > 0 and 0 < teff["skill"] <= 1
    assert teff["vmp"]["n"] + teff["normal"]["n"] <= teff["n"]
    assert teff["with_sigma"] == 785 and 0 < teff["within_1_sigma"] <= teff["within_2_sigma"] <= 1
    v = e["vmp"]
    assert v["tp"] + v["fn"] == 26 and v["tp"] + v["fp"] + v["fn"] + v["tn"] == 757
    assert 0 <= v["recall"] <= 1 and e["cemp"] is None
    with pytest.raises(FileNotFoundError):
        specnn.evaluate(tmp_path / "none.safetensors", data / "miles", data / "miles" / "labels.csv", tmp_path / "r")


def test_crossval_estimates_every_real_miles_star_out_of_fold(data, tmp_path):
    folds = []
    e = specnn.crossval(tmp_path / "cv", spectra=data / "miles", labels=data / "miles" / "labels.csv",
                        out=tmp_path / "models", folds=3, arch="knn", targets="teff,logg,feh", grid=MILES_GRID,
                        on_fold=lambda f, mae: folds.append((f, mae)))
    assert [f for f, _ in folds] == [1, 2, 3] and all(mae > 0 for _, mae in folds)
    assert sorted(p.name for p in (tmp_path / "models").glob("fold*.safetensors")) == [
        "fold1.safetensors", "fold2.safetensors", "fold3.safetensors"]
    assert e["evaluated"] == 788 and (tmp_path / "cv" / "report.md").exists()
    # PCA + kNN out of fold on MILES (REAL): Teff MAE in the range EXPERIMENTS.md reports.
    assert 150 < e["labels"]["teff"]["mae"] < 600
    # Both calibrations are scored: the fold models' own and one fitted on the other folds.
    for label in ("teff", "logg", "feh"):
        d = e["labels"][label]
        assert 0.5 < d["within_1_sigma_other_folds"] < 0.9 and d["within_1_sigma_other_folds"] < d["within_2_sigma_other_folds"]
    # The estimates beyond 3 sigma (other folds' sigmas), worst first: the same ones estimates.csv gives.
    far = e["beyond_3_sigma"]
    assert far and all(m["z"] > 3 for m in far) and [m["z"] for m in far] == sorted((m["z"] for m in far), reverse=True)
    for m in far:
        assert m["z"] == pytest.approx(abs(m["truth"] - m["estimate"]) / m["sigma"])
    with open(tmp_path / "cv" / "estimates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for label in ("teff", "logg", "feh"):
        expected = {r["file"] for r in rows if r[f"{label}_true"] and
                    abs(float(r[f"{label}_true"]) - float(r[f"{label}_est"])) > 3 * float(r[f"{label}_err_other_folds"])}
        assert {m["file"] for m in far if m["label"] == label} == expected
        assert e["labels"][label]["beyond_3_sigma"] == len(expected)
    with pytest.raises(specnn.SpecnnError, match="epoks"):
        specnn.crossval(tmp_path / "cv2", spectra=data / "miles", labels=data / "miles" / "labels.csv",
                        out=tmp_path / "m2", arch="knn", targets="teff", epoks=3)


def test_calibrate_folds_calibrates_on_every_real_miles_star_out_of_fold(data, tmp_path):
    out = tmp_path / "knn.safetensors"
    r = specnn.train(out, spectra=data / "miles", labels=data / "miles" / "labels.csv", arch="knn",
                     targets="teff,logg,feh", grid=MILES_GRID, calibrate_folds=3)
    m = specnn.Model.load(r["model"])
    assert m.calibrated and m.calibration_source == "crossval 3"
    assert specnn.Model.load(out).calibration_source == "crossval 3"
    assert not any(p.name.endswith("calibration-folds") for p in tmp_path.iterdir())


def test_audit_passes_the_public_pytorch_golden_file(data):
    cases = specnn.audit(data / "golden" / "public.safetensors")
    assert len(cases) > 10
    failed = [c["name"] for c in cases if not c["passed"]]
    assert failed == []
    assert all(np.isfinite(c["max_abs"]) and c["tensors"] >= 1 and c["reason"] is None for c in cases)
    assert {"conv2d", "linear"} <= {c["op"] for c in cases}


def test_audit_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        specnn.audit(tmp_path / "none.safetensors")


def test_the_demo_runs_small_and_says_its_data_are_synthetic(tmp_path):
    readme = specnn.demo(tmp_path / "demo", n=64, channels=(4, 8, 8), cnn_epochs=1, ann_epochs=1, device="cpu")
    out = tmp_path / "demo"
    assert readme == str(out / "README.md")
    for f in ["res_ann.safetensors", "vmp_cnn.safetensors", "catalog_vmp_cnn.fits", "vmp_candidates.fits",
              "report_res_ann/report.md"]:
        assert (out / f).exists(), f
    summary = (out / "README.md").read_text()
    assert "SYNTHETIC" in summary and "channel widths [4, 8, 8]" in summary
    model = specnn.Model.load(out / "res_ann.safetensors")
    assert model.targets == ["cfe", "mgfe", "nfe"]


# --- the README example ------------------------------------------------------------------------

def test_the_readme_kiel_example_runs(data, tmp_path):
    pytest.importorskip("matplotlib")
    script = REPO / "python" / "examples" / "kiel.py"
    r = subprocess.run([sys.executable, str(script), str(data), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    png = tmp_path / "kiel.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "teff" in r.stdout
