//! Augmentation on the fly, for small real training sets: each training batch sees every spectrum
//! changed at random the way real observations differ from one another. All of it is seeded (run
//! seed, epoch, batch), so a run and a resumed run see the same batches.
//!
//! It works on preprocessed rows (resampled, normalised), just before they become network inputs:
//! 1. a radial-velocity shift: the row is re-read at `lambda * (1 + v/c)` (linear interpolation;
//!    `v` uniform in `[-rv, rv]` km/s);
//! 2. a smooth flux-calibration tilt: the row times `1 + a * (2t - 1)` (`t` from 0 to 1 across the
//!    grid, `a` uniform in `[-tilt, tilt]`), then min-max normalised again as the pipeline does;
//! 3. masked pixel runs: `runs` runs of `run_len` pixels, each replaced by a straight line between
//!    its good neighbours, which is what the pipeline does with bad pixels;
//! 4. noise: Gaussian with a standard deviation of `max(f, 0.05) / snr` per pixel, `snr` drawn
//!    log-uniform in `[snr_min, snr_max]` per spectrum (the rows carry no inverse variance, so the
//!    noise follows a target S/N rather than each file's own errors).
//!
//! Pixels that the pipeline set to 0 outside a `--window` stay 0.

use crate::error::{Error, Result};
use rand::distr::{Distribution, StandardUniform};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// What augmentation does (all off by default).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Augment {
    /// Noise at a S/N drawn log-uniform in this range (per spectrum).
    pub snr: Option<(f64, f64)>,
    /// Largest radial-velocity shift, km/s.
    pub rv: f64,
    /// Largest relative flux-calibration tilt across the grid (0.1 = +-10% at the ends).
    pub tilt: f64,
    /// Masked pixel runs per spectrum, and their length in pixels.
    pub runs: usize,
    pub run_len: usize,
}

impl Augment {
    /// Whether anything is switched on.
    pub fn is_on(&self) -> bool {
        self.snr.is_some() || self.rv > 0.0 || self.tilt > 0.0 || (self.runs > 0 && self.run_len > 0)
    }

    /// Parses `--augment`: comma-separated `snr=LO:HI`, `rv=KMS`, `tilt=FRAC`, `mask=RUNSxLEN`, or
    /// `none`; e.g. `snr=20:200,rv=30,tilt=0.1,mask=3x20`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: String| Error::invalid("--augment", m);
        let mut a = Augment::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "none" {
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not KEY=VALUE (keys: snr, rv, tilt, mask)")))?;
            let num = |t: &str| {
                t.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| bad(format!("`{part}`: `{t}` is not a non-negative number")))
            };
            match k.trim() {
                "snr" => {
                    let (lo, hi) =
                        v.split_once(':').ok_or_else(|| bad(format!("`{part}`: give snr=LO:HI, e.g. snr=20:200")))?;
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if !(lo > 0.0 && hi >= lo) {
                        return Err(bad(format!("`{part}`: need 0 < LO <= HI")));
                    }
                    a.snr = Some((lo, hi));
                }
                "rv" => a.rv = num(v)?,
                "tilt" => {
                    a.tilt = num(v)?;
                    if a.tilt >= 1.0 {
                        return Err(bad(format!("`{part}`: a tilt of 1 or more makes the flux negative")));
                    }
                }
                "mask" => {
                    let (n, l) = v
                        .split_once('x')
                        .ok_or_else(|| bad(format!("`{part}`: give mask=RUNSxLEN, e.g. mask=3x20")))?;
                    a.runs = n.trim().parse().map_err(|_| bad(format!("`{part}`: `{n}` is not a count")))?;
                    a.run_len = l.trim().parse().map_err(|_| bad(format!("`{part}`: `{l}` is not a length")))?;
                }
                other => return Err(bad(format!("unknown key `{other}` (keys: snr, rv, tilt, mask)"))),
            }
        }
        Ok(a)
    }

    /// One augmented copy of `row` (wavelengths `grid`, Angstrom), drawn from `rng`.
    pub fn apply(&self, row: &[f32], grid: &[f64], rng: &mut StdRng) -> Vec<f32> {
        let n = row.len();
        let mut f: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        if n < 2 || grid.len() != n {
            return row.to_vec();
        }
        let outside: Vec<bool> = row.iter().map(|&v| v == 0.0).collect();
        if self.rv > 0.0 {
            let v = rng.random_range(-self.rv..=self.rv);
            let k = 1.0 + v / crate::data::pipeline::C_KMS;
            // The shifted spectrum at grid[i] is the original at grid[i] / k.
            let mut j = 0usize;
            let src = f.clone();
            for (i, out) in f.iter_mut().enumerate() {
                let l = grid[i] / k;
                while j + 2 < n && grid[j + 1] < l {
                    j += 1;
                }
                let t = ((l - grid[j]) / (grid[j + 1] - grid[j])).clamp(0.0, 1.0);
                *out = src[j] + t * (src[j + 1] - src[j]);
            }
        }
        if self.tilt > 0.0 {
            let a = rng.random_range(-self.tilt..=self.tilt);
            for (i, v) in f.iter_mut().enumerate() {
                *v *= 1.0 + a * (2.0 * i as f64 / (n - 1) as f64 - 1.0);
            }
        }
        if self.runs > 0 && self.run_len > 0 && self.run_len + 2 < n {
            for _ in 0..self.runs {
                let s = rng.random_range(1..n - self.run_len - 1);
                let (a, b) = (f[s - 1], f[s + self.run_len]);
                for k in 0..self.run_len {
                    f[s + k] = a + (b - a) * (k + 1) as f64 / (self.run_len + 1) as f64;
                }
            }
        }
        if let Some((lo, hi)) = self.snr {
            let snr = if hi > lo { (rng.random_range(lo.ln()..=hi.ln())).exp() } else { lo };
            for v in f.iter_mut() {
                *v += gauss(rng) * v.abs().max(0.05) / snr;
            }
        }
        if self.tilt > 0.0 || self.snr.is_some() {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for (v, &o) in f.iter().zip(&outside) {
                if !o {
                    lo = lo.min(*v);
                    hi = hi.max(*v);
                }
            }
            if hi > lo {
                f.iter_mut().for_each(|v| *v = (*v - lo) / (hi - lo));
            }
        }
        f.iter().zip(&outside).map(|(&v, &o)| if o { 0.0 } else { v as f32 }).collect()
    }
}

/// A standard normal draw (Box-Muller).
fn gauss(rng: &mut StdRng) -> f64 {
    let u: f64 = StandardUniform.sample(rng);
    let v: f64 = StandardUniform.sample(rng);
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The generator for one batch: the same for a run and its resumption.
pub fn batch_rng(seed: u64, epoch: usize, batch: usize) -> StdRng {
    StdRng::seed_from_u64(
        seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ ((epoch as u64) << 32 | batch as u64).wrapping_add(0x51A7),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize) -> (Vec<f32>, Vec<f64>) {
        let grid: Vec<f64> = (0..n).map(|i| 4000.0 + i as f64).collect();
        let r: Vec<f32> = (0..n).map(|i| 0.5 + 0.4 * ((i as f32) / 17.0).sin()).collect();
        (r, grid)
    }

    #[test]
    fn parse_names_the_bad_part() {
        let a = Augment::parse("snr=20:200,rv=30,tilt=0.1,mask=3x20").unwrap();
        assert_eq!(a, Augment { snr: Some((20.0, 200.0)), rv: 30.0, tilt: 0.1, runs: 3, run_len: 20 });
        assert!(!Augment::parse("none").unwrap().is_on());
        for bad in ["snr=200", "rv=-3", "tilt=1.5", "mask=3", "colour=1", "snr=0:10"] {
            let e = Augment::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--augment"), "{bad}: {e}");
        }
    }

    #[test]
    fn off_is_the_identity_and_draws_are_seeded() {
        let (r, g) = row(300);
        assert_eq!(Augment::default().apply(&r, &g, &mut batch_rng(1, 0, 0)), r);
        let a = Augment::parse("snr=30:300,rv=50,tilt=0.2,mask=2x10").unwrap();
        let x = a.apply(&r, &g, &mut batch_rng(1, 3, 4));
        assert_eq!(x, a.apply(&r, &g, &mut batch_rng(1, 3, 4)));
        assert_ne!(x, a.apply(&r, &g, &mut batch_rng(1, 3, 5)));
        assert_ne!(x, r);
        // Still min-max normalised.
        let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!((lo - 0.0).abs() < 1e-6 && (hi - 1.0).abs() < 1e-6, "{lo} {hi}");
    }

    #[test]
    fn a_shift_moves_a_line_by_the_doppler_amount() {
        // One absorption line at 4150 A; +72 km/s moves it by 4150 * 72 / c = ~1 A = 1 pixel.
        let grid: Vec<f64> = (0..300).map(|i| 4000.0 + i as f64).collect();
        let r: Vec<f32> = grid.iter().map(|l| 1.0 - 0.8 * (-((l - 4150.0) / 2.0).powi(2)).exp() as f32).collect();
        let a = Augment { rv: 72.0, ..Default::default() };
        // rv is drawn in [-72, 72]: find a seed that draws close to the top.
        for s in 0..200 {
            let mut rng = batch_rng(s, 0, 0);
            let v: f64 = {
                let mut c = rng.clone();
                c.random_range(-72.0..=72.0)
            };
            if v > 70.0 {
                let x = a.apply(&r, &grid, &mut rng);
                let min_at = x.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
                assert_eq!(min_at, 151, "drawn {v} km/s");
                return;
            }
        }
        panic!("no seed drew a shift above 70 km/s");
    }

    #[test]
    fn window_zeros_stay_zero_and_runs_are_straight() {
        let (mut r, g) = row(200);
        r[..20].iter_mut().for_each(|v| *v = 0.0);
        let a = Augment { runs: 1, run_len: 30, ..Default::default() };
        let x = a.apply(&r, &g, &mut batch_rng(2, 0, 0));
        assert!(x[..20].iter().all(|&v| v == 0.0));
        let changed: Vec<usize> = (0..200).filter(|&i| x[i] != r[i]).collect();
        assert!(!changed.is_empty() && changed.len() <= 30);
    }
}
