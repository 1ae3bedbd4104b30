//! PNG figures (plotters, with DejaVu Sans bundled so that no system font is needed).

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("drawing the figure: {e}"))
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.filter(|x| x.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// Decimals for tick labels on an axis spanning `lo..hi` with about six ticks: none for Kelvin-sized
/// spans, one or two for dex-sized ones (never a spurious `5000.000`).
fn decimals(lo: f64, hi: f64) -> usize {
    let step = (hi - lo) / 6.0;
    if !(step > 0.0) || !step.is_finite() {
        return 0;
    }
    (-step.log10().floor()).clamp(0.0, 6.0) as usize
}

fn tick(d: usize) -> impl Fn(&f64) -> String {
    move |v| format!("{v:.d$}")
}

/// Writes the PNG through a temporary name.
fn save(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    font();
    let tmp = path.with_extension("tmp.png");
    draw(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Estimate against truth, with the one-to-one line; `axis` names the label with its unit.
pub fn one_to_one(path: &Path, title: &str, axis: &str, truth: &[f64], est: &[f64]) -> Result<()> {
    save(path, |tmp| {
        let root = BitMapBackend::new(tmp, (640, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let (lo, hi) = range(truth.iter().chain(est).copied());
        let mut ch = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(|e| err(path, e))?;
        let d = decimals(lo, hi);
        ch.configure_mesh()
            .x_desc(format!("true {axis}"))
            .y_desc(format!("estimated {axis}"))
            .x_label_formatter(&tick(d))
            .y_label_formatter(&tick(d))
            .draw()
            .map_err(|e| err(path, e))?;
        ch.draw_series(
            truth
                .iter()
                .zip(est)
                .filter(|(t, e)| t.is_finite() && e.is_finite())
                .map(|(t, e)| Circle::new((*t, *e), 2, BLUE.mix(0.5).filled())),
        )
        .map_err(|e| err(path, e))?;
        ch.draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED)).map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    })
}

/// Residuals (truth - estimate) against a label.
/// Residuals `resid` (axis title `ydesc`) against `x` (axis title `xdesc`), with the zero line.
pub fn residuals(path: &Path, title: &str, xdesc: &str, ydesc: &str, x: &[f64], resid: &[f64]) -> Result<()> {
    save(path, |tmp| {
        let root = BitMapBackend::new(tmp, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let (x0, x1) = range(x.iter().copied());
        let (y0, y1) = range(resid.iter().copied());
        let m = y0.abs().max(y1.abs());
        let mut ch = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, -m..m)
            .map_err(|e| err(path, e))?;
        ch.configure_mesh()
            .x_desc(xdesc)
            .y_desc(ydesc)
            .x_label_formatter(&tick(decimals(x0, x1)))
            .y_label_formatter(&tick(decimals(-m, m)))
            .draw()
            .map_err(|e| err(path, e))?;
        ch.draw_series(
            x.iter()
                .zip(resid)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(a, b)| Circle::new((*a, *b), 2, BLUE.mix(0.5).filled())),
        )
        .map_err(|e| err(path, e))?;
        ch.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], RED)).map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    })
}

/// A 2x2 confusion matrix: rows = estimate, columns = truth.
pub fn confusion(path: &Path, title: &str, names: (&str, &str), c: &crate::eval::Confusion) -> Result<()> {
    save(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 660)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        root.draw(&Text::new(title.to_string(), (20, 12), ("sans-serif", 22))).map_err(|e| err(path, e))?;
        let cells = [[c.tp, c.fp], [c.fn_, c.tn]];
        let max = cells.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        let (x0, y0, w) = (250, 100, 230);
        root.draw(&Text::new(format!("truth: {}", names.0), (x0 + 10, y0 - 32), ("sans-serif", 19)))
            .map_err(|e| err(path, e))?;
        root.draw(&Text::new(format!("truth: {}", names.1), (x0 + w + 10, y0 - 32), ("sans-serif", 19)))
            .map_err(|e| err(path, e))?;
        for (r, row) in cells.iter().enumerate() {
            let label = if r == 0 { format!("est.: {}", names.0) } else { format!("est.: {}", names.1) };
            root.draw(&Text::new(label, (20, y0 + r as i32 * w + w / 2), ("sans-serif", 19)))
                .map_err(|e| err(path, e))?;
            for (k, &v) in row.iter().enumerate() {
                let (x, y) = (x0 + k as i32 * w, y0 + r as i32 * w);
                let shade = 255 - (180.0 * v as f64 / max) as u8;
                root.draw(&Rectangle::new([(x, y), (x + w, y + w)], RGBColor(shade, shade, 255).filled()))
                    .map_err(|e| err(path, e))?;
                root.draw(&Rectangle::new([(x, y), (x + w, y + w)], BLACK)).map_err(|e| err(path, e))?;
                root.draw(&Text::new(v.to_string(), (x + w / 2 - 25, y + w / 2 - 15), ("sans-serif", 32)))
                    .map_err(|e| err(path, e))?;
            }
        }
        root.draw(&Text::new(
            format!("recall {:.2}%   false-positive rate {:.2}%", 100.0 * c.recall(), 100.0 * c.fpr()),
            (20, 600),
            ("sans-serif", 20),
        ))
        .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    })
}

/// Lines on shared axes: (name, points); `marks` are points drawn and annotated with their text (a
/// threshold, the best epoch).
pub fn lines(
    path: &Path,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[((f64, f64), String)],
) -> Result<()> {
    save(path, |tmp| {
        let root = BitMapBackend::new(tmp, (720, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let (x0, x1) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
        let (y0, y1) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).chain(marks.iter().map(|m| m.0 .1)));
        let mut ch = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(path, e))?;
        ch.configure_mesh()
            .x_desc(xdesc)
            .y_desc(ydesc)
            .x_label_formatter(&tick(decimals(x0, x1)))
            .y_label_formatter(&tick(decimals(y0, y1)))
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            ch.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(path, e))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        ch.draw_series(marks.iter().map(|(p, _)| Circle::new(*p, 5, RED.filled()))).map_err(|e| err(path, e))?;
        // The text beside its point (offset in pixels), not under the dot.
        ch.draw_series(
            marks.iter().map(|(p, text)| EmptyElement::at(*p) + Text::new(text.clone(), (9, -4), ("sans-serif", 14))),
        )
        .map_err(|e| err(path, e))?;
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    })
}

/// Spectra stacked in panels, each with its caption.
pub fn spectra(path: &Path, panels: &[(String, Vec<f64>, Vec<f64>)]) -> Result<()> {
    save(path, |tmp| {
        let root = BitMapBackend::new(tmp, (900, 210 * panels.len().max(1) as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        for (area, (caption, w, f)) in root.split_evenly((panels.len().max(1), 1)).iter().zip(panels) {
            let (x0, x1) = range(w.iter().copied());
            let (y0, y1) = range(f.iter().copied());
            let mut ch = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 13))
                .margin(6)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(path, e))?;
            ch.configure_mesh()
                .x_labels(8)
                .y_labels(3)
                .x_desc("rest-frame vacuum wavelength [A]")
                .y_desc("normalised flux")
                .x_label_formatter(&tick(0))
                .y_label_formatter(&tick(decimals(y0, y1)))
                .draw()
                .map_err(|e| err(path, e))?;
            ch.draw_series(LineSeries::new(w.iter().copied().zip(f.iter().copied()), BLUE))
                .map_err(|e| err(path, e))?;
        }
        root.present().map_err(|e| err(path, e))
    })
}
