"""specnn from Python: stellar labels from spectra with specnn's Rust engine, numpy in and out.

    import specnn
    s = specnn.read("spec-55859-F5902_sp01-001.fits.gz")       # dict of numpy arrays + header facts
    model = specnn.Model.load("model.safetensors")               # a file written by `specnn train`
    est = model.predict(s["wavelength"], s["flux"], s["ivar"], mask=s["mask"])
    cat = model.predict_files(["folder/"])                       # the CLI catalog's columns

Everything runs in the Rust library with the GIL released; the rows are the rows of the CLI's
catalogs (the same code makes them). Errors are `specnn.SpecnnError` (a `ValueError`) or
`FileNotFoundError`, and their message names the file (or `spectrum[i]`) and the problem.
"""

import json
import re
import warnings

import numpy as np

from . import _specnn
from ._specnn import SpecnnError, devices, labels

__version__ = _specnn.__version__
__all__ = ["read", "Model", "train", "evaluate", "crossval", "audit", "demo", "devices", "labels", "SpecnnError", "FLAGS"]

#: The bits of the `flags` column (as in the FITS catalogs' FLAGn cards).
FLAGS = {
    1: "estimate outside the training labels' range",
    2: "spectrum far from the training set (PCA residual > 99th pct)",
    4: "header S/N below 10",
    8: "more than 20% of pixels flagged bad",
    16: "model trained on SYNTHETIC spectra, applied to a real one",
}


def read(path, medium=None):
    """Reads one spectrum file: LAMOST low resolution (every layout), SDSS/BOSS, MILES-like 1-D
    images, FITS tables or CSV.

    Returns a dict: ``path``, ``layout``, ``medium`` ("air" or "vacuum"), ``wavelength`` (Angstrom),
    ``flux``, ``ivar`` (1 where the file has none), ``mask`` (bool, True = bad pixel), ``obsid``,
    ``ra``, ``dec``, ``z``, ``snr`` (dict by band), ``class`` and ``synthetic``; absent header facts
    are None. ``medium`` overrides the medium the reader infers.
    """
    return _specnn.read(str(path), medium)


def _is_one(a):
    """Whether `a` is one spectrum's array (1-D) rather than a batch (2-D, or a list of 1-D)."""
    return not isinstance(a, (list, tuple)) and np.ndim(a) == 1


def _arrays(a, name, dtype):
    """One spectrum's array, a 2-D array (one row per spectrum) or a list of 1-D arrays (lengths may
    differ) as a list of contiguous 1-D arrays."""
    if _is_one(a):
        return [np.ascontiguousarray(a, dtype=dtype)]
    if isinstance(a, (list, tuple)):
        out = [np.ascontiguousarray(x, dtype=dtype) for x in a]
    else:
        a = np.asarray(a, dtype=dtype)
        if a.ndim != 2:
            raise SpecnnError(f"{name} must be 1-D (one spectrum), 2-D (one row per spectrum) or a list of 1-D arrays, not {a.ndim}-D")
        out = list(np.ascontiguousarray(a))
    for i, x in enumerate(out):
        if x.ndim != 1:
            raise SpecnnError(f"{name}[{i}] must be 1-D, not {x.ndim}-D")
    return out


def _per_star(v, name, n):
    if v is None:
        return None
    v = np.asarray(v, dtype=np.float64)
    v = np.broadcast_to(v, (n,)) if v.ndim == 0 else v
    if v.ndim != 1:
        raise SpecnnError(f"{name} must be one value per spectrum")
    return [float(x) for x in v]


def _names(names):
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    return [str(x) for x in names]


class Model:
    """A model file written by ``specnn train`` (or ``specnn.train``): a network, an ensemble or a
    baseline, with the preprocessing, label scaling, uncertainty calibration and training-set domain
    it was trained with. Load with ``Model.load(path)``."""

    def __init__(self, inner):
        self._m = inner

    @classmethod
    def load(cls, path):
        """Loads a model file; a file that is not one (or of an architecture its tensors do not fit)
        raises SpecnnError naming it."""
        return cls(_specnn._Model.load(str(path)))

    path = property(lambda self: self._m.path, doc="The model file.")
    targets = property(lambda self: list(self._m.targets), doc="The labels it estimates, in order.")
    units = property(lambda self: dict(self._m.units), doc="Each target's unit, as in the catalogs.")
    describe = property(lambda self: self._m.describe, doc="One line saying what the model is.")
    members = property(lambda self: self._m.members, doc="Networks in the ensemble (1 for one network or a baseline).")
    synthetic = property(lambda self: self._m.synthetic, doc="Whether it was trained on SYNTHETIC spectra.")
    calibrated = property(lambda self: self._m.calibrated, doc="Whether it gives calibrated uncertainties (`*_err`).")
    calibration_source = property(lambda self: self._m.calibration_source,
                                  doc="What `*_err` was calibrated on: \"validation\", \"crossval K\" "
                                      "(`calibrate_folds=K`), or None.")
    loss = property(lambda self: self._m.loss, doc="The training loss: \"mae\", or \"nll\" for a network with a variance head (`loss=\"nll\"`).")
    grid = property(lambda self: self._m.grid, doc="The wavelength grid (vacuum Angstrom) spectra are resampled onto.")

    @property
    def history(self):
        """The training history: ``{"epochs": [...], "best_epoch": ...}``."""
        return json.loads(self._m.history_json)

    def __repr__(self):
        return f"specnn.Model({self.path!r}: {self.describe}; targets {', '.join(self.targets)})"

    def predict(self, wave, flux, ivar=None, mask=None, *, medium="vacuum", z=None, snr=None, names=None,
                device="auto", errors="raise", vmp_feh=-2.0, cemp_cfe=1.0):
        """Estimates labels for one spectrum (1-D ``flux``) or a batch (a 2-D array, one row per
        spectrum, or a list of 1-D arrays of any lengths).

        ``wave`` is in Angstrom, one array for all spectra or one per spectrum; ``ivar`` (inverse
        variance) and ``mask`` (True = bad pixel) have ``flux``'s shape. ``medium`` says whether
        ``wave`` is in air or vacuum. ``z`` (redshift, shifted to the rest frame) and ``snr`` (for
        the low-S/N flag) are optional, one value per spectrum. ``device``: auto, cpu, gpu or gpu:N.

        Returns a dict of the CLI catalog's columns: ``file`` (``names`` or ``spectrum[i]``), ``snr``,
        one column per target, ``<target>_err`` (calibrated 1-sigma) where the model is calibrated,
        ``flags`` (bitmask, ``specnn.FLAGS``), ``p_vmp``/``p_cemp`` and ``vmp``/``cemp`` with [Fe/H]
        (and [C/Fe]), and ``reason`` (empty unless refused). Arrays for a batch, scalars for one
        spectrum. A spectrum without an estimate (NaN flux in a good pixel, too little coverage of
        the grid, ...) raises SpecnnError naming it with ``errors="raise"``; with ``errors="keep"``
        its row has NaN labels, ``flags`` -1 and the reason.
        """
        return self._predict(wave, flux, ivar, mask, medium, z, snr, names, device, errors, vmp_feh, cemp_cfe, _is_one(flux))

    def predict_spectra(self, spectra, *, device="auto", errors="raise", vmp_feh=-2.0, cemp_cfe=1.0):
        """Estimates spectra as ``specnn.read`` returns them: one dict, or a list of dicts (of any
        lengths and layouts). Their medium, redshift and S/N (r band, else g) are taken from the
        dicts, so the rows are those ``predict_files`` gives for the files. Returns what ``predict``
        returns (scalars for one dict)."""
        one = isinstance(spectra, dict)
        spectra = [spectra] if one else list(spectra)
        for i, s in enumerate(spectra):
            if not isinstance(s, dict) or "flux" not in s:
                raise SpecnnError(f"spectra[{i}] is not a spectrum as specnn.read returns it")
        get = lambda k: [s.get(k) for s in spectra]
        snr = [(s.get("snr") or {}).get("r", (s.get("snr") or {}).get("g", np.nan)) for s in spectra]
        z = [np.nan if v is None else v for v in get("z")]
        names = [s.get("path") or f"spectrum[{i}]" for i, s in enumerate(spectra)]  # `file` keeps the name
        return self._predict(get("wavelength"), get("flux"), get("ivar"), get("mask"), get("medium"), z, snr, names,
                             device, errors, vmp_feh, cemp_cfe, one)

    def _predict(self, wave, flux, ivar, mask, medium, z, snr, names, device, errors, vmp_feh, cemp_cfe, single):
        if errors not in ("raise", "keep"):
            raise SpecnnError(f'errors={errors!r}: use "raise" or "keep"')
        f = _arrays(flux, "flux", np.float64)
        n = len(f)
        w = _arrays(wave, "wave", np.float64)
        iv = None if ivar is None else _arrays(ivar, "ivar", np.float64)
        mk = None if mask is None else _arrays(mask, "mask", np.bool_)
        media = [str(medium)] if isinstance(medium, str) else [str(m) for m in medium]
        cols, refused = self._m.predict(w, f, iv, mk, _names(names), media, _per_star(z, "z", n),
                                        _per_star(snr, "snr", n), str(device), float(vmp_feh), float(cemp_cfe))
        if refused and errors == "raise":
            shown = "; ".join(why if why.startswith(name) else f"{name}: {why}" for _, name, why in refused[:3])
            more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
            raise SpecnnError(f"{len(refused)} of {n} spectra have no estimate: {shown}{more} "
                              '(errors="keep" returns their rows with the reason)')
        for k in ("obsid", "ra", "dec"):
            cols.pop(k, None)  # header facts: not in arrays
        if single:
            return {k: v[0] for k, v in cols.items()}
        return cols

    def predict_files(self, paths, *, medium=None, recursive=False, device="auto", vmp_feh=-2.0, cemp_cfe=1.0):
        """Estimates every spectrum file of ``paths`` (a file, a folder, a ``.txt`` list of files, or a
        list of them; ``recursive=True`` searches folders' subfolders too): the rows
        of ``specnn predict``'s catalog, as a dict of columns (``file``, ``obsid`` (-1 if unknown),
        ``ra``, ``dec``, ``snr``, the targets, ``*_err``, ``flags``, ``p_vmp``, ``vmp``, ...,
        ``reason``). A file that cannot be read or used gets a row with NaN labels, ``flags`` -1
        and the reason, as in the CLI. A path that does not exist raises."""
        if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
            paths = [paths]
        return self._m.predict_files([str(p) for p in paths], medium, bool(recursive), str(device), float(vmp_feh), float(cemp_cfe))


def _argv(options):
    argv = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            argv.append(flag)
        elif isinstance(v, (list, tuple, np.ndarray)):
            argv += [flag, ",".join(str(x) for x in v)]
        elif isinstance(v, dict):  # augment={"snr": "30:300", "rv": 30}
            argv += [flag, ",".join(f"{a}={b}" for a, b in v.items())]
        else:
            argv += [flag, str(v)]
    return argv


def _pythonic(e):
    """A clap message in keyword-argument words: `--min-coverage <MIN_COVERAGE>` -> `min_coverage`."""
    msg = re.sub(r" <[A-Z_]+>", "", str(e))
    msg = re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), msg)
    return SpecnnError(msg)


def train(out, *, wave=None, flux=None, labels=None, ivar=None, mask=None, names=None, spectra=None,
          on_epoch=None, **options):
    """Trains a model and writes it to ``out`` (a safetensors file PyTorch loads; see the README).

    From arrays: ``wave`` (Angstrom; one row for all or one per spectrum), ``flux`` (one row per
    spectrum), optional ``ivar`` and ``mask``, and ``labels`` a dict ``{"teff": array, "logg": ...}``
    (NaN = unknown); ``names`` name the spectra in messages and in a ``validation`` list. From files:
    ``spectra`` (a folder) and ``labels`` (a label table path), as ``specnn train``.

    Every other keyword is ``specnn train``'s option of that name with ``-`` as ``_``, with the same
    defaults: ``arch`` (required: vmp-cnn, res-ann, ann, starnet, cannon, rf, svr, knn), ``targets``
    (default: the keys of ``labels``), ``epochs``, ``lr``, ``recipe="small-real"``, ``grid=(start,
    step, n)``, ``min_coverage``, ``medium`` ("air" for MILES), ``ensemble``, ``augment``, ``device``,
    ... ``True`` switches a flag on. ``on_epoch(stats)`` is called after every epoch.

    Returns ``{"model": out, "history": {...}, "trained": stars used, "refused": [(name, reason)]}``;
    refused spectra also raise a warning.
    """
    if spectra is not None:
        if wave is not None or flux is not None:
            raise SpecnnError("train: give either spectra= (a folder) and labels= (a table), or wave= and flux= arrays")
        if labels is None or isinstance(labels, dict):
            raise SpecnnError("train: with spectra= (a folder), labels= is the label table's path")
        try:
            model, history, used, refused = _specnn.train_files(str(spectra), str(labels), str(out), _argv(options), on_epoch)
        except SpecnnError as e:
            raise _pythonic(e) from None
    else:
        if wave is None or flux is None or not isinstance(labels, dict):
            raise SpecnnError("train: give wave=, flux= and labels={target: array, ...} (or spectra= and labels= files)")
        targets = options.pop("targets", None) or list(labels)
        if isinstance(targets, str):
            targets = targets.split(",")
        missing = [t for t in targets if t not in labels]
        if missing:
            raise SpecnnError(f"train: no labels for target(s) {', '.join(missing)} (labels has {', '.join(labels)})")
        f = _arrays(flux, "flux", np.float64)
        y = np.ascontiguousarray(np.stack([np.atleast_1d(np.asarray(labels[t], dtype=np.float64)) for t in targets], axis=1))
        if y.shape[0] != len(f):
            raise SpecnnError(f"train: {y.shape[0]} label rows for {len(f)} spectra")
        argv = _argv(dict(options, targets=targets))
        try:
            model, history, used, refused = _specnn.train_arrays(
                _arrays(wave, "wave", np.float64), f, None if ivar is None else _arrays(ivar, "ivar", np.float64),
                None if mask is None else _arrays(mask, "mask", np.bool_), _names(names), y, str(out), argv, on_epoch)
        except SpecnnError as e:
            raise _pythonic(e) from None
    if refused:
        warnings.warn(f"train: {len(refused)} spectra left out, e.g. {refused[0][0]}: {refused[0][1]}", stacklevel=2)
    return {"model": model, "history": json.loads(history), "trained": used, "refused": refused}


def evaluate(model, spectra, labels, report, *, vmp_feh=-2.0, cemp_cfe=1.0, medium=None, recursive=False,
             device="auto"):
    """Evaluates the model file ``model`` on the labelled spectra in the folder ``spectra`` (labels:
    the table ``labels``), as ``specnn evaluate`` does: writes ``report/report.md`` and its figures,
    and returns the figures as a dict: ``evaluated``, ``refused``, ``synthetic`` (results on synthetic
    spectra are not results on real stars), ``labels`` (per label: ``n``, ``mae``, ``sd``,
    ``median`` of truth - estimate, the same for the ``vmp`` and ``normal`` stars, ``mae_of_median``,
    ``skill``, and where the model gives uncertainties ``with_sigma``, ``within_1_sigma``,
    ``within_2_sigma``, ``beyond_3_sigma`` (a count)), ``vmp``/``cemp`` (``tp``, ``fp``, ``fn``, ``tn``,
    ``recall``, ``fpr``, or None without [Fe/H]), and ``beyond_3_sigma``: every label estimate off by
    more than 3 sigmas, worst first, as dicts ``file``, ``label``, ``truth``, ``estimate``, ``sigma``,
    ``z`` (the estimates, or the labels, to check). ``vmp_feh`` and ``cemp_cfe`` are the flags' thresholds, as in ``predict``."""
    return _specnn.evaluate(str(model), str(spectra), str(labels), str(report), float(vmp_feh), float(cemp_cfe),
                            medium, bool(recursive), str(device))


def crossval(report, *, spectra, labels, out, folds=5, on_fold=None, **options):
    """K-fold cross-validation, as ``specnn crossval`` does: trains one model per fold into the folder
    ``out`` on the spectra in ``spectra`` (labels: the table ``labels``), estimates every star with the
    model that did not train on it, writes ``report/report.md`` and returns its figures (the dict of
    ``evaluate``). Every other keyword is ``specnn train``'s option, as for ``train``;
    ``on_fold(fold, held_out_mae)`` is called after each fold. Its ``beyond_3_sigma`` and the labels'
    ``*_other_folds`` figures use the sigmas calibrated on the other folds' stars."""
    try:
        return _specnn.crossval(str(spectra), str(labels), str(out), str(report), int(folds), _argv(options), on_fold)
    except SpecnnError as e:
        raise _pythonic(e) from None


def audit(path, device="cpu"):
    """Runs the PyTorch golden-vector cases of ``path`` (see ``../shared/spec/golden-vectors.md``)
    on ``device`` (cpu, gpu or gpu:N). Returns one dict per case: ``name``, ``op``, ``shapes``,
    ``max_abs``, ``max_rel``, ``tol_rel``, ``tol_abs``, ``tensors``, ``passed``, ``reason``."""
    return _specnn.audit(str(path), str(device))


def demo(out="demo", *, n=None, seed=None, channels=None, cnn_epochs=None, ann_epochs=None, device="auto"):
    """The main job on built-in SYNTHETIC data, as ``specnn demo`` runs it: simulates a training
    survey of ``n`` stars and a test survey of ``n // 4``, trains the residual ANN (R=200; [C/Fe],
    [Mg/Fe], [N/Fe]) and a VMP CNN of ``channels`` widths, evaluates both, searches VMP and CEMP
    candidates, and writes models, catalogs, reports and figures under ``out``. Every number is on
    synthetic spectra, never on real stars. An option left at None takes ``specnn demo``'s default
    (``specnn demo --help``). Returns the path of the summary (``out/README.md``)."""
    opt = lambda v, f: None if v is None else f(v)
    return _specnn.demo(str(out), opt(n, int), opt(seed, int), opt(channels, lambda c: [int(x) for x in c]),
                        opt(cnn_epochs, int), opt(ann_epochs, int), str(device))
