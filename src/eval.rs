//! The seed's metrics: for each label, with `E = truth - estimate`: MAE = mean |E|, SD = standard
//! deviation of E, M = median of E; the same for VMP and normal stars; the VMP and CEMP confusion
//! matrices with recall and false-positive rate; and the recall/false-positive curve of the VMP flag
//! over thresholds, with the chosen operating point.

/// MAE, SD and M of one label.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub n: usize,
    pub mae: f64,
    pub sd: f64,
    pub median: f64,
}

/// Metrics over the pairs where both truth and estimate are known.
pub fn metrics(truth: &[f64], est: &[f64]) -> Metrics {
    let mut e: Vec<f64> =
        truth.iter().zip(est).filter(|(t, p)| t.is_finite() && p.is_finite()).map(|(t, p)| t - p).collect();
    let n = e.len();
    if n == 0 {
        return Metrics { n, mae: f64::NAN, sd: f64::NAN, median: f64::NAN };
    }
    let mae = e.iter().map(|x| x.abs()).sum::<f64>() / n as f64;
    let mean = e.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 { (e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
    e.sort_by(|a, b| a.total_cmp(b));
    let median = if n % 2 == 1 { e[n / 2] } else { 0.5 * (e[n / 2 - 1] + e[n / 2]) };
    Metrics { n, mae, sd, median }
}

/// A 2x2 confusion matrix of a flag: estimate (rows) against truth (columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Confusion {
    /// Flagged and truly positive.
    pub tp: usize,
    /// Flagged but truly negative.
    pub fp: usize,
    /// Missed: not flagged but truly positive.
    pub fn_: usize,
    pub tn: usize,
}

impl Confusion {
    /// From (truth, estimate) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut c = Self::default();
        for (t, e) in pairs {
            match (t, e) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }
    /// tp / (tp + fn): the fraction of true positives found.
    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    /// fp / (fp + tn): the fraction of negatives flagged.
    pub fn fpr(&self) -> f64 {
        self.fp as f64 / (self.fp + self.tn).max(1) as f64
    }
}

/// Recall and false-positive rate of the flag `estimate < threshold` against `truth < cut`, for each
/// threshold: (threshold, recall, fpr).
pub fn curve(truth: &[f64], est: &[f64], cut: f64, thresholds: &[f64]) -> Vec<(f64, f64, f64)> {
    thresholds
        .iter()
        .map(|&th| {
            let c = Confusion::from_pairs(
                truth.iter().zip(est).filter(|(t, e)| t.is_finite() && e.is_finite()).map(|(t, e)| (*t < cut, *e < th)),
            );
            (th, c.recall(), c.fpr())
        })
        .collect()
}
