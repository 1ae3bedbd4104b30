//! The synthetic survey: LAMOST-like low-resolution spectra made from stellar labels.
//!
//! **Everything this module makes is synthetic.** It is a physical caricature built so that the
//! pipeline and the networks can be exercised end to end where real labelled abundances are not
//! available; it is not a stellar atmosphere code, and a result on it is never a result on real stars.
//! Files it writes carry `SYNTHETI = 'T'` in their headers and `synthetic = 1` in `labels.csv`.
//!
//! ## Labels (`draw_labels`)
//! * 40% very metal-poor stars ([Fe/H] from -2 to -4.5, denser near -2), as in the seed's sample;
//!   the rest [Fe/H] ~ N(-0.35, 0.45) clipped to [-2, 0.6].
//! * Dwarfs along a main sequence `log g = 4.75 - 2.5e-4 (Teff - 4300) + N(0, 0.12)` (subgiants
//!   spread down to 0.5 dex lower above 6000 K), giants along a red-giant branch
//!   `log g = 0.9 + 1.9e-3 (Teff - 3900 - 75 |[Fe/H]|) + N(0, 0.15)` (metal-poor giants are hotter),
//!   and for 15% of VMP giants a horizontal branch (5600-8400 K, log g 2.3-3.4). Giants are 60% of VMP
//!   stars and 35% of the others. The seed's ranges: Teff 3800-8500 K, log g 0.14-4.9.
//! * Alpha enhancement `[a/Fe] = 0.4 min(1, max(0, -[Fe/H])) + N(0, 0.05)`; `[Mg/Fe] = [a/Fe] + N(0, 0.04)`,
//!   `[O/Fe] = [a/Fe] + 0.15 min(1, max(0, -[Fe/H])) + N(0, 0.08)`.
//! * CEMP stars ([C/Fe] uniform in 1-2.5) with probability `0.12 + 0.1 (-2 - [Fe/H])` below
//!   [Fe/H] = -2 and 0.02 above; otherwise `[C/Fe] ~ N(0.15, 0.2)` lowered by `0.4 (2 - log g)` on the
//!   upper giant branch (mixing); `[N/Fe] ~ N(0.2, 0.2)`, raised in giants as carbon is burnt to nitrogen.
//!
//! ## Spectrum (`render`), in the star's rest frame, vacuum wavelengths
//! `F(l) = B_l(Teff) * K(l) * P(l) * exp(-tau_bands(l)) * prod_i (1 - D_i(l))`
//! * `B_l(Teff)`: the Planck function; `K(l) = 1 - 0.35 z_m exp(-(l - 3700)/700)` with
//!   `z_m = 10^(0.5 [Fe/H]) (5000/Teff)^2` is the blue line-blanketing depression; `P(l)` an
//!   instrument response with a dip at the dichroic (5900 A) and flux-calibration errors
//!   `exp(c1 x + c2 (x^2 - 1/3))`, `x = (l - 6400)/2700`, `c ~ N(0, 0.05)`.
//! * Atomic lines at their real vacuum wavelengths: Ca II H & K (with damping wings reaching past
//!   4000 A), Ca I 4228, Fe I lines (4046, 4384, 4406, 4958, 5271, 5330, 5373), Mg b, Na D, the Ca II
//!   triplet, the O I 7774 triplet, and 300 weak Fe-like lines at fixed pseudo-random wavelengths in
//!   4000-6800 A standing for the forest of metal lines. Each line's equivalent width follows a
//!   **curve of growth**: `W = 2 b_D l/c * I(tau0)` with `I(tau0) = int (1 - exp(-tau0 H(x))) dx`,
//!   `H(x) = exp(-x^2) + a / (sqrt(pi) (1 + x^2))` (Doppler core, damping wings), and
//!   `log tau0 = log gf + [X/H] + t(Teff, log g)`, where neutral lines of ionised elements weaken with
//!   temperature (`-1.5 (Teff - 5800)/1000`) and the Ca triplet, Mg b and Ca II strengthen with
//!   gravity through the damping parameter `a`. The line is drawn as a Gaussian of the line-spread
//!   function (R = 1800: sigma = l / (2.355 R)) with that equivalent width (its depth capped at 0.97,
//!   beyond which it widens).
//! * Balmer lines (H-alpha to H8): strength `s = exp(-((Teff - 9000)/2500)^2)` peaking near 9000 K,
//!   a Gaussian core plus Lorentzian wings of half-width `8 A * 10^(0.3 (log g - 4)) * sqrt(s)`:
//!   wider at high gravity.
//! * Molecular bands, `tau = A exp(-|l - head| / L)` on the degraded side of the head (edge smoothed by
//!   the line-spread function): CH G band (head 4315 A) `A ~ 10^(0.8 [C/H])`; C2 Swan (4738, 5166 A)
//!   `A ~ 10^(2 ([C/H] - [O/H] - 0.3) + 0.5 [C/H])` (C2 needs carbon left over from CO, so it grows
//!   with C/O); CN (3884, 4217 A) `A ~ 10^(0.6 ([C/H] + [N/H]))`, stronger in giants; MgH (5212 A)
//!   `A ~ 10^[Mg/H]`, stronger in dwarfs; TiO (4956, 5168, 5450, 6160, 7055 A) in stars below ~4300 K.
//!   Each has its own temperature factor `10^(-(Teff - T0)/dT)` (molecules survive in cool atmospheres).
//!
//! ## Observation (`observe`)
//! The rest-frame model is shifted by a radial velocity `v ~ N(-10, 60) km/s` (header `Z = v/c`),
//! sampled on LAMOST's grid (3909 pixels, `log10 l = 3.5682 + 1e-4 i`, vacuum), given noise for a
//! signal-to-noise ratio drawn log-uniform in 10-150 (r band; `sigma_i = sqrt(F_i F_r) / SNR`, so the
//! blue end is noisier), extra variance at sky lines (4047, 4359, 5462, 5579, 6302, 6366, 6866 A),
//! and 1-3% bad pixels in clumps (ivar = 0, and-mask set), a few of them at the arm join (5800-6000 A).
//!
//! ## What it leaves out
//! No model atmosphere, radiative transfer, line blending physics, isotopes, rotation, binaries,
//! interstellar reddening or absorption, emission lines, or real instrument systematics; molecular bands
//! are smooth ramps rather than line forests; element ratios other than C, N, O, Mg and alpha follow
//! [Fe/H]. Networks trained on it learn this caricature, not real stars.
//!
//! ## Grids (`marcs_grid`)
//! Noise-free spectra (no radial velocity, calibration errors or bad pixels; R = 2000) on the MARCS
//! steps of the seed's table 8: Teff 2500-4000 K by 100 K and 4250-8000 K by 250 K, log g -0.5 to 5.5 by
//! 0.5, [Fe/H] -5 to +1 by 0.25, without hot low-gravity points the MARCS grid lacks
//! (Teff >= 6000 K with log g < 1, Teff >= 7000 K with log g < 2); [C/Fe] and [N/Fe] on 0.25 steps in
//! [-0.5, 1], [O/Fe] in [-0.25, 0.75], [alpha/Fe] in [-0.25, 0.5], drawn per point from the seed.

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::f64::consts::PI;

/// Speed of light, km/s.
const C: f64 = 299_792.458;

/// LAMOST's low-resolution pixel grid: 3909 pixels, `log10(lambda) = 3.5682 + 1e-4 i` (vacuum).
pub fn lamost_wavelengths() -> Vec<f64> {
    (0..3909).map(|i| 10f64.powf(3.5682 + 1e-4 * i as f64)).collect()
}

/// The labels of one synthetic star, and how it was observed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StarLabels {
    pub teff: f64,
    pub logg: f64,
    pub feh: f64,
    pub cfe: f64,
    pub nfe: f64,
    pub mgfe: f64,
    pub ofe: f64,
    pub afe: f64,
    /// Radial velocity, km/s.
    pub rv: f64,
    /// Signal-to-noise ratio in the r band (infinite for noise-free grids).
    pub snr: f64,
}

impl StarLabels {
    pub fn is_vmp(&self) -> bool {
        self.feh < -2.0
    }
    pub fn is_cemp(&self) -> bool {
        self.is_vmp() && self.cfe > 1.0
    }
}

/// How spectra are observed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observing {
    pub resolution: f64,
    pub noise: bool,
    pub radial_velocity: bool,
    pub calibration_errors: bool,
    pub bad_pixels: bool,
}

impl Observing {
    /// A LAMOST-like survey at R ~ 1800.
    pub fn survey() -> Self {
        Self { resolution: 1800.0, noise: true, radial_velocity: true, calibration_errors: true, bad_pixels: true }
    }
    /// Noise-free theoretical spectra at R = 2000 (the seed's experiment 3).
    pub fn noise_free() -> Self {
        Self { resolution: 2000.0, noise: false, radial_velocity: false, calibration_errors: false, bad_pixels: false }
    }
}

fn normal(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// A generator for star `index` of survey `seed`: independent of threads and of the other stars.
pub fn star_rng(seed: u64, index: u64) -> StdRng {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Draws the labels of one survey star (see the module docs for the distributions).
pub fn draw_labels(rng: &mut impl Rng) -> StarLabels {
    let vmp = rng.random_bool(0.4);
    let feh: f64 = if vmp {
        (-2.0 - rng.random_range(0.0f64..1.0).powf(1.6) * 2.5).max(-4.5)
    } else {
        normal(rng, -0.35, 0.45).clamp(-1.99, 0.6)
    };
    let giant = rng.random_bool(if vmp { 0.6 } else { 0.35 });
    let (teff, logg) = if giant && vmp && rng.random_bool(0.15) {
        (rng.random_range(5600.0..8400.0), rng.random_range(2.3..3.4))
    } else if giant {
        let t: f64 = rng.random_range(3900.0..5300.0) + 75.0 * (-feh).max(0.0);
        (t, (0.9 + 1.9e-3 * (t - 3900.0 - 75.0 * (-feh).max(0.0)) + normal(rng, 0.0, 0.15)).clamp(0.15, 3.8))
    } else {
        let t: f64 = rng.random_range(4300.0..7000.0) + if vmp { rng.random_range(0.0..600.0) } else { 0.0 };
        let mut g = 4.75 - 2.5e-4 * (t - 4300.0) + normal(rng, 0.0, 0.12);
        if t > 6000.0 {
            g -= rng.random_range(0.0..0.5);
        }
        (t.min(8480.0), g.clamp(3.3, 4.9))
    };
    let poor = (-feh).clamp(0.0, 1.0);
    let afe = 0.4 * poor + normal(rng, 0.0, 0.05);
    let mgfe = afe + normal(rng, 0.0, 0.04);
    let ofe = afe + 0.15 * poor + normal(rng, 0.0, 0.08);
    let p_cemp = if feh < -2.0 { 0.12 + 0.1 * (-2.0 - feh) } else { 0.02 };
    let cemp = rng.random_bool(p_cemp.min(0.9));
    let cfe = if cemp {
        rng.random_range(1.0..2.5)
    } else {
        let mixing = if giant && logg < 2.0 { 0.4 * (2.0 - logg) } else { 0.0 };
        (normal(rng, 0.15, 0.2) - mixing).clamp(-1.0, 0.95)
    };
    let mut nfe = normal(rng, 0.2, 0.2);
    if giant {
        nfe += 0.3 * (1.0 - cfe.clamp(0.0, 1.0));
    }
    if cemp {
        nfe += rng.random_range(0.0..1.0);
    }
    let rv = normal(rng, -10.0, 60.0).clamp(-400.0, 400.0);
    let snr = 10f64.powf(rng.random_range(1.0f64..150f64.log10()));
    StarLabels { teff, logg, feh, cfe, nfe, mgfe, ofe, afe, rv, snr }
}

/// The noise-free grid on MARCS steps (module docs), with per-point abundances drawn from `seed`.
pub fn marcs_grid(seed: u64) -> Vec<StarLabels> {
    let mut teffs: Vec<f64> = (0..16).map(|i| 2500.0 + 100.0 * i as f64).collect();
    teffs.extend((0..17).map(|i| 4000.0 + 250.0 * i as f64));
    teffs.dedup();
    let mut rng = StdRng::seed_from_u64(seed);
    let step =
        |rng: &mut StdRng, lo: f64, hi: f64| lo + 0.25 * rng.random_range(0..=((hi - lo) / 0.25).round() as u32) as f64;
    let mut out = Vec::new();
    for &teff in &teffs {
        for gi in 0..13 {
            let logg = -0.5 + 0.5 * gi as f64;
            if (teff >= 6000.0 && logg < 1.0) || (teff >= 7000.0 && logg < 2.0) {
                continue;
            }
            for fi in 0..25 {
                let feh = -5.0 + 0.25 * fi as f64;
                let afe = step(&mut rng, -0.25, 0.5);
                out.push(StarLabels {
                    teff,
                    logg,
                    feh,
                    cfe: step(&mut rng, -0.5, 1.0),
                    nfe: step(&mut rng, -0.5, 1.0),
                    mgfe: afe,
                    ofe: step(&mut rng, -0.25, 0.75),
                    afe,
                    rv: 0.0,
                    snr: f64::INFINITY,
                });
            }
        }
    }
    out
}

/// An atomic line: vacuum wavelength, element, log gf-like strength at 5800 K and solar abundance,
/// damping parameter at log g = 4.4, and how its strength moves with temperature (dex per 1000 K).
struct Line {
    wave: f64,
    element: Element,
    log_gf: f64,
    damping: f64,
    temp_slope: f64,
    /// How the damping scales with gravity: `a * 10^(gravity_power (log g - 4.4))`.
    gravity_power: f64,
}

#[derive(Clone, Copy)]
enum Element {
    Fe,
    Ca,
    Mg,
    Na,
    O,
}

fn strong_lines() -> Vec<Line> {
    use Element::*;
    let l = |wave, element, log_gf, damping, temp_slope, gravity_power| Line {
        wave,
        element,
        log_gf,
        damping,
        temp_slope,
        gravity_power,
    };
    vec![
        l(3934.78, Ca, 5.2, 0.05, -0.2, 0.4),
        l(3969.59, Ca, 4.9, 0.05, -0.2, 0.4),
        l(4227.92, Ca, 2.6, 0.01, -1.6, 0.3),
        l(4046.96, Fe, 1.9, 0.005, -1.5, 0.2),
        l(4384.78, Fe, 2.0, 0.005, -1.5, 0.2),
        l(4405.99, Fe, 1.8, 0.005, -1.5, 0.2),
        l(4958.82, Fe, 1.0, 0.003, -1.5, 0.2),
        l(5270.82, Fe, 1.3, 0.004, -1.5, 0.2),
        l(5329.47, Fe, 0.9, 0.003, -1.5, 0.2),
        l(5372.98, Fe, 0.9, 0.003, -1.5, 0.2),
        l(5168.76, Mg, 2.4, 0.02, -1.2, 0.5),
        l(5174.13, Mg, 2.6, 0.02, -1.2, 0.5),
        l(5185.05, Mg, 2.7, 0.02, -1.2, 0.5),
        l(5891.58, Na, 2.3, 0.01, -1.8, 0.3),
        l(5897.56, Na, 2.0, 0.01, -1.8, 0.3),
        l(8500.36, Ca, 1.9, 0.01, -0.4, -0.3),
        l(8544.44, Ca, 2.4, 0.01, -0.4, -0.3),
        l(8664.52, Ca, 2.2, 0.01, -0.4, -0.3),
        // O I 7774: high excitation, strengthens with temperature and at low gravity (non-LTE).
        l(7774.08, O, 0.1, 0.001, 0.9, -0.3),
        l(7776.31, O, -0.05, 0.001, 0.9, -0.3),
        l(7777.54, O, -0.25, 0.001, 0.9, -0.3),
    ]
}

/// 300 weak Fe-like lines at fixed pseudo-random wavelengths (the same for every star and seed).
fn forest() -> Vec<Line> {
    let mut rng = StdRng::seed_from_u64(0xFE_FE_FE);
    (0..300)
        .map(|_| Line {
            wave: rng.random_range(4000.0..6800.0),
            element: Element::Fe,
            log_gf: rng.random_range(-1.8f64..0.6),
            damping: 0.002,
            temp_slope: -1.5,
            gravity_power: 0.1,
        })
        .collect()
}

/// `I(tau0) = int (1 - exp(-tau0 H(x))) dx` for a Voigt-like `H` with damping `a`: the curve of growth
/// in Doppler widths.
fn curve_of_growth(tau0: f64, a: f64) -> f64 {
    if tau0 < 1e-3 {
        return tau0 * PI.sqrt();
    }
    let xmax = 6.0f64.max((tau0 * a / (PI.sqrt() * 1e-3)).sqrt().min(400.0));
    let n = 600;
    let dx = xmax / n as f64;
    let mut s = 0.0;
    for i in 0..n {
        let x = (i as f64 + 0.5) * dx;
        let h = (-x * x).exp() + a / (PI.sqrt() * (1.0 + x * x));
        s += 1.0 - (-tau0 * h).exp();
    }
    2.0 * s * dx
}

/// A molecular band: head, length of the degraded side, and which side it shades to.
struct Band {
    head: f64,
    length: f64,
    to_red: bool,
}

fn gauss_cdf(x: f64) -> f64 {
    // Abramowitz & Stegun 7.1.26 for erf.
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-z * z).exp();
    0.5 * (1.0 + if z >= 0.0 { y } else { -y })
}

fn add_band(tau: &mut [f64], wave: &[f64], b: &Band, amplitude: f64, sigma_of: impl Fn(f64) -> f64) {
    if amplitude < 1e-5 {
        return;
    }
    for (t, &l) in tau.iter_mut().zip(wave) {
        let d = if b.to_red { l - b.head } else { b.head - l };
        if d < -5.0 * sigma_of(l) || d > 6.0 * b.length {
            continue;
        }
        // The ramp, cut at the head by the line-spread function.
        *t += amplitude * (-(d.max(0.0)) / b.length).exp() * gauss_cdf(d / sigma_of(l));
    }
}

/// The rest-frame flux of a star on the vacuum wavelengths `wave` (module docs), before observation.
pub fn render(s: &StarLabels, wave: &[f64], resolution: f64, calibration: (f64, f64)) -> Vec<f64> {
    let sigma_of = |l: f64| l / (2.3548 * resolution);
    let t = s.teff;
    // Continuum: Planck x blanketing x response x calibration error.
    let zm = 10f64.powf(0.5 * s.feh) * (5000.0 / t).powi(2);
    let mut flux: Vec<f64> = wave
        .iter()
        .map(|&l| {
            let lm = l * 1e-10;
            let planck = 1.0 / (lm.powi(5) * ((6.626e-34 * 2.998e8 / (lm * 1.381e-23 * t)).exp() - 1.0));
            let blanket = 1.0 - 0.35 * zm.min(2.0) * (-(l - 3700.0) / 700.0).exp();
            let response = (1.0 - 0.05 * (-((l - 5900.0) / 40.0).powi(2)).exp())
                * (0.75 + 0.25 * (-((l - 6000.0) / 2500.0).powi(2)).exp());
            let x = (l - 6400.0) / 2700.0;
            let cal = (calibration.0 * x + calibration.1 * (x * x - 1.0 / 3.0)).exp();
            planck * blanket.max(0.2) * response * cal
        })
        .collect();
    let norm = flux[flux.len() / 2];
    flux.iter_mut().for_each(|f| *f = *f / norm * 1000.0);

    // Molecular bands.
    let ch = s.feh + s.cfe;
    let nh = s.feh + s.nfe;
    let oh = s.feh + s.ofe;
    let mg = s.feh + s.mgfe;
    // C2 needs carbon left over after CO formation: it grows with C/O.
    let c2 = 0.3 * 10f64.powf(2.0 * (ch - oh - 0.3) + 0.5 * ch);
    let cool = |t0: f64, dt: f64| 10f64.powf(-(t - t0) / dt).min(30.0);
    let giant_cn = 10f64.powf(-0.2 * (s.logg - 2.0)).min(3.0);
    let dwarf_mgh = 10f64.powf(0.4 * (s.logg - 4.5)).min(2.0);
    let mut tau = vec![0.0; wave.len()];
    let bands: [(Band, f64); 11] = [
        (Band { head: 4315.4, length: 22.0, to_red: false }, 1.0 * 10f64.powf(0.8 * ch) * cool(5000.0, 1000.0)),
        (Band { head: 4738.3, length: 30.0, to_red: false }, 0.8 * c2 * cool(4500.0, 800.0)),
        (Band { head: 5166.5, length: 35.0, to_red: false }, 1.0 * c2 * cool(4500.0, 800.0)),
        (
            Band { head: 3884.2, length: 20.0, to_red: false },
            0.5 * 10f64.powf(0.6 * (ch + nh)) * cool(5000.0, 900.0) * giant_cn,
        ),
        (
            Band { head: 4217.4, length: 25.0, to_red: false },
            0.2 * 10f64.powf(0.6 * (ch + nh)) * cool(5000.0, 900.0) * giant_cn,
        ),
        (Band { head: 5212.0, length: 45.0, to_red: false }, 0.20 * 10f64.powf(mg) * cool(4300.0, 500.0) * dwarf_mgh),
        (Band { head: 4956.0, length: 60.0, to_red: true }, 0.40 * 10f64.powf(s.feh + s.afe) * cool(3600.0, 300.0)),
        (Band { head: 5168.0, length: 60.0, to_red: true }, 0.35 * 10f64.powf(s.feh + s.afe) * cool(3600.0, 300.0)),
        (Band { head: 5450.0, length: 60.0, to_red: true }, 0.30 * 10f64.powf(s.feh + s.afe) * cool(3600.0, 300.0)),
        (Band { head: 6160.0, length: 70.0, to_red: true }, 0.35 * 10f64.powf(s.feh + s.afe) * cool(3600.0, 300.0)),
        (Band { head: 7055.0, length: 80.0, to_red: true }, 0.45 * 10f64.powf(s.feh + s.afe) * cool(3600.0, 300.0)),
    ];
    for (b, a) in &bands {
        add_band(&mut tau, wave, b, a.min(3.0), sigma_of);
    }
    flux.iter_mut().zip(&tau).for_each(|(f, t)| *f *= (-t).exp());

    // Balmer lines: Gaussian core + Lorentzian wings.
    let strength = (-((t - 9000.0) / 2500.0).powi(2)).exp();
    let gamma = 8.0 * 10f64.powf(0.3 * (s.logg - 4.0)) * strength.sqrt();
    for (l0, f) in [(6564.61, 1.0), (4862.68, 0.9), (4341.69, 0.8), (4102.89, 0.7), (3971.20, 0.6), (3890.16, 0.5)] {
        let core = 0.75 * strength * f;
        let sig = (sigma_of(l0).powi(2) + 1.0).sqrt();
        for (fl, &l) in flux.iter_mut().zip(wave) {
            let d = l - l0;
            if d.abs() > 40.0 * gamma.max(2.0) {
                continue;
            }
            let depth =
                core * (-0.5 * (d / sig).powi(2)).exp() + 0.45 * strength * f / (1.0 + (d / gamma.max(0.3)).powi(2));
            *fl *= (1.0 - depth).max(0.05);
        }
    }

    // Atomic lines by their curve of growth.
    for line in strong_lines().iter().chain(forest().iter()) {
        let x_h = match line.element {
            Element::Fe => s.feh,
            Element::Ca => s.feh + s.afe,
            Element::Mg => s.feh + s.mgfe,
            Element::Na => s.feh,
            Element::O => s.feh + s.ofe,
        };
        let log_tau = line.log_gf + x_h + line.temp_slope * (t - 5800.0) / 1000.0 - 0.1 * (s.logg - 4.4);
        let tau0 = 10f64.powf(log_tau.min(9.0));
        let a = line.damping * 10f64.powf(line.gravity_power * (s.logg - 4.4));
        let doppler = line.wave * (2.0 * 1.381e-23 * t / (56.0 * 1.66e-27) / 1e6 + 1.5f64.powi(2)).sqrt() / C;
        let ew = doppler * curve_of_growth(tau0, a);
        if ew < 1e-4 {
            continue;
        }
        let mut sig = sigma_of(line.wave);
        let mut depth = ew / (sig * (2.0 * PI).sqrt());
        if depth > 0.97 {
            sig *= depth / 0.97;
            depth = 0.97;
        }
        for (fl, &l) in flux.iter_mut().zip(wave) {
            let d = l - line.wave;
            if d.abs() < 5.0 * sig {
                *fl *= 1.0 - depth * (-0.5 * (d / sig).powi(2)).exp();
            }
        }
    }
    flux
}

/// One observed synthetic spectrum on LAMOST's grid.
#[derive(Clone, Debug)]
pub struct Observed {
    pub labels: StarLabels,
    pub wavelength: Vec<f64>,
    pub flux: Vec<f32>,
    pub ivar: Vec<f32>,
    pub andmask: Vec<f32>,
    /// Redshift of the radial velocity (`v / c`).
    pub z: f64,
}

/// Observes a star: radial-velocity shift, calibration errors, noise and bad pixels as configured.
pub fn observe(labels: StarLabels, how: &Observing, rng: &mut impl Rng) -> Observed {
    let wave = lamost_wavelengths();
    let rv = if how.radial_velocity { labels.rv } else { 0.0 };
    let z = rv / C;
    let rest: Vec<f64> = wave.iter().map(|l| l / (1.0 + z)).collect();
    let cal = if how.calibration_errors { (normal(rng, 0.0, 0.05), normal(rng, 0.0, 0.05)) } else { (0.0, 0.0) };
    let model = render(&labels, &rest, how.resolution, cal);
    let n = wave.len();
    let mut flux: Vec<f32> = model.iter().map(|&f| f as f32).collect();
    let mut ivar = vec![1e4f32; n];
    let mut andmask = vec![0f32; n];
    if how.noise {
        let mut r_band: Vec<f64> =
            wave.iter().zip(&model).filter(|(l, _)| (6000.0..7000.0).contains(*l)).map(|(_, f)| *f).collect();
        r_band.sort_by(|a, b| a.total_cmp(b));
        let fr = r_band[r_band.len() / 2];
        let sky = [4047.0, 4359.0, 5462.0, 5579.0, 6302.0, 6366.0, 6866.0];
        for i in 0..n {
            let mut var = (model[i].max(1e-3) * fr) / labels.snr.powi(2);
            if sky.iter().any(|s| (wave[i] - s).abs() < 3.0) {
                var *= 20.0;
            }
            flux[i] = (model[i] + normal(rng, 0.0, var.sqrt())) as f32;
            ivar[i] = (1.0 / var) as f32;
        }
    }
    if how.bad_pixels {
        let clumps = rng.random_range(4..12);
        for k in 0..clumps {
            let start = if k == 0 {
                wave.iter().position(|l| *l > rng.random_range(5800.0..5990.0)).unwrap_or(0)
            } else {
                rng.random_range(0..n)
            };
            for i in start..(start + rng.random_range(1..10)).min(n) {
                ivar[i] = 0.0;
                andmask[i] = 1.0;
            }
        }
    }
    Observed { labels, wavelength: wave, flux, ivar, andmask, z }
}
