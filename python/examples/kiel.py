"""A Kiel diagram of real LAMOST stars, estimated by a model trained on the REAL MILES library.

    python python/examples/kiel.py ../shared/data out/      # writes out/kiel.png, prints the table

The model is PCA + 3 nearest neighbours (`arch="knn"`, seconds to fit); `arch="ann", recipe=
"small-real"` trains the network that beats it (README, "Training recipes"; minutes).
"""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import specnn

data = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else ".")
out.mkdir(parents=True, exist_ok=True)

# 1. Train on the MILES stars (real spectra, air wavelengths; the reader knows).
specnn.train(out / "miles-knn.safetensors", spectra=data / "miles", labels=data / "miles" / "labels.csv",
             arch="knn", targets="teff,logg,feh", grid=(3550, 1, 3850))
model = specnn.Model.load(out / "miles-knn.safetensors")

# 2. Read real LAMOST spectra and estimate them (one batch; spectra of any lengths).
files = sorted((data / "lamost").glob("lamost_lrs_*/*.fits*"))  # low resolution: DR5 to DR13 layouts
spectra = [specnn.read(f) for f in files]
est = model.predict_spectra(spectra, errors="keep")  # refused rows keep their reason

print(f"{'file':58s} {'teff':>6s} {'+-':>5s} {'logg':>5s} {'+-':>4s} {'feh':>5s} flags reason")
for i, name in enumerate(est["file"]):
    print(f"{name:58s} {est['teff'][i]:6.0f} {est['teff_err'][i]:5.0f} {est['logg'][i]:5.2f} "
          f"{est['logg_err'][i]:4.2f} {est['feh'][i]:5.2f} {est['flags'][i]:5d} {est['reason'][i][:40]}")

# 3. The Kiel diagram: filled points are in the training domain, hollow ones carry a flag.
ok = np.array([r == "" for r in est["reason"]])
clean = ok & (est["flags"] == 0)
fig, ax = plt.subplots(figsize=(6, 5))
ax.errorbar(est["teff"][ok], est["logg"][ok], xerr=est["teff_err"][ok], yerr=est["logg_err"][ok],
            fmt="none", ecolor="0.6", lw=0.8, zorder=1)
sc = ax.scatter(est["teff"][clean], est["logg"][clean], c=est["feh"][clean], cmap="viridis", vmin=-2.5, vmax=0.5, zorder=2)
ax.scatter(est["teff"][ok & ~clean], est["logg"][ok & ~clean], facecolors="none", edgecolors="k", zorder=2,
           label="flagged (specnn.FLAGS)")
ax.invert_xaxis()
ax.invert_yaxis()
ax.set_xlabel("Teff (K)")
ax.set_ylabel("log g (dex, cgs)")
ax.set_title("Real LAMOST stars, MILES-trained kNN")
fig.colorbar(sc, label="[Fe/H] (dex)")
ax.legend(loc="lower left")
fig.savefig(out / "kiel.png", dpi=120, bbox_inches="tight")
print(f"wrote {out / 'kiel.png'}")
