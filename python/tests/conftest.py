"""Fixtures for the Python package's tests: the shared REAL data (MILES, LAMOST, PyTorch golden vectors)
and models trained once per session on the real MILES stars."""

import csv
import os
import pathlib

import numpy as np
import pytest

import specnn

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data():
    """`$SPECNN_DATA`, else `../shared/data` beside the checkout. Missing: the tests skip, unless
    SPECNN_REQUIRE_DATA=1 (CI), where they fail."""
    d = pathlib.Path(os.environ.get("SPECNN_DATA", REPO.parent / "shared" / "data"))
    if not (d / "miles" / "labels.csv").exists():
        if os.environ.get("SPECNN_REQUIRE_DATA") == "1":
            pytest.fail(f"SPECNN_REQUIRE_DATA=1 but the shared data folder {d} is missing")
        pytest.skip(f"shared data folder {d} not found (set SPECNN_DATA)")
    return d


@pytest.fixture(scope="session")
def miles_table(data):
    """The MILES label table (REAL stars): rows in file order."""
    with open(data / "miles" / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


# START, STEP, N: the whole MILES range, 3550-7399 A in 1 A pixels (the grid EXPERIMENTS.md uses),
# which every MILES star covers.
MILES_GRID = (3550, 1, 3850)


@pytest.fixture(scope="session")
def knn_model(data, tmp_path_factory):
    """PCA + kNN trained from the MILES files (REAL stars) through `specnn.train(spectra=...)`."""
    out = tmp_path_factory.mktemp("models") / "miles-knn.safetensors"
    summary = specnn.train(out, spectra=data / "miles", labels=data / "miles" / "labels.csv", arch="knn",
                           targets="teff,logg,feh", grid=MILES_GRID)
    return out, summary


@pytest.fixture(scope="session")
def miles_arrays(data, miles_table):
    """Every MILES spectrum read through `specnn.read`, in the label table's order."""
    spectra = [specnn.read(data / "miles" / row["file"]) for row in miles_table]
    labels = {t: np.array([float(r[t]) if r[t] else np.nan for r in miles_table]) for t in ("teff", "logg", "feh")}
    return spectra, labels


@pytest.fixture(scope="session")
def lamost_files(data):
    """The REAL LAMOST low-resolution files (DR5 image, DR9 and DR13 coadds)."""
    return sorted((data / "lamost" / "lamost_lrs_cmost").iterdir())
