//! The audit against PyTorch: runs every case of a golden-vector file (`golden-vectors.md`) through
//! specnn's f32 CPU path (or its GPU path) and compares outputs and gradients element by element with
//! `|got - want| <= abs + rel * |want|`, the tolerances the file gives per case.

use crate::autograd::{Backend, LossKind, Tape, Var};
use crate::data::prep;
use crate::error::{Error, Result};
use crate::gpu::ops as gpu_ops;
use crate::gpu::{Gpu, GpuTape, GpuTensor, ParamStore};
use crate::io::read_safetensors;
use crate::nn::{Arch, Dense, Model, ResidualBlock};
use crate::ops::{conv2d::Conv2dSpec, maxpool2d::Pool2dSpec};
use crate::optim::{adam_update, AdamConfig};
use ndarray::{ArrayD, Ix2};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The metadata key of a golden file.
pub const GOLDEN_KEY: &str = "specnn-golden";

#[derive(Deserialize)]
struct Doc {
    version: u32,
    cases: Vec<Case>,
}

/// A case's tolerance.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Tol {
    pub rel: f64,
    pub abs: f64,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    op: String,
    #[serde(default)]
    attrs: Value,
    inputs: BTreeMap<String, String>,
    output: Option<String>,
    outputs: Option<BTreeMap<String, String>>,
    grad_output: Option<String>,
    #[serde(default)]
    grads: BTreeMap<String, String>,
    tol: Tol,
}

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct CaseReport {
    pub name: String,
    pub op: String,
    /// The shapes of the case's inputs.
    pub shapes: String,
    /// Largest `|got - want|` over every checked tensor.
    pub max_abs: f64,
    /// Largest `|got - want| / |want|` over elements with `want != 0`.
    pub max_rel: f64,
    pub tol: Tol,
    /// Number of tensors compared (outputs and gradients).
    pub tensors: usize,
    pub passed: bool,
    /// Why the case failed, when it did.
    pub reason: Option<String>,
}

type Tensors = BTreeMap<String, ArrayD<f32>>;

/// Runs every case of the golden file at `path` on the CPU. A file that cannot be read or parsed is an
/// error; a case that cannot run is reported as failed with its reason.
pub fn audit(path: &Path) -> Result<Vec<CaseReport>> {
    audit_on(path, None)
}

/// Runs every case on the CPU (`None`) or on a GPU: the ops, their gradients, Adam and the models go
/// through the GPU kernels there; the preprocessing cases (fold_s, minmax) are host code on both.
pub fn audit_on(path: &Path, dev: Option<&Gpu>) -> Result<Vec<CaseReport>> {
    let (tensors, meta) = read_safetensors::<f32>(path)?;
    let json = meta
        .get(GOLDEN_KEY)
        .ok_or_else(|| Error::file(path, format!("no `{GOLDEN_KEY}` metadata: not a golden-vector file")))?;
    let doc: Doc =
        serde_json::from_str(json).map_err(|e| Error::file(path, format!("malformed `{GOLDEN_KEY}` JSON: {e}")))?;
    if doc.version != 1 {
        return Err(Error::file(path, format!("golden format version {} is not supported (1 is)", doc.version)));
    }
    if doc.cases.is_empty() {
        return Err(Error::file(path, "the golden file lists no cases"));
    }
    Ok(doc.cases.iter().map(|c| run_case(c, &tensors, dev)).collect())
}

/// The audit of the golden file `path` on `device`: one device spec as `--device` takes it, or `all`
/// for the CPU and every adapter. One `(device name, reports)` per device.
pub fn audit_devices(path: &Path, device: &str) -> Result<Vec<(String, Vec<CaseReport>)>> {
    let mut devices: Vec<(String, Option<std::sync::Arc<Gpu>>)> = Vec::new();
    if device == "all" {
        devices.push(("cpu".into(), None));
        for i in 0..crate::gpu::list_adapters().len() {
            let g = Gpu::open(i)?;
            devices.push((format!("gpu:{i} {}", g.summary.name), Some(std::sync::Arc::new(g))));
        }
    } else {
        let d = crate::gpu::Device::open(device)?;
        devices.push((d.describe(), d.gpu().cloned()));
    }
    devices.into_iter().map(|(name, gpu)| Ok((name, audit_on(path, gpu.as_deref())?))).collect()
}

/// `specnn audit`'s table of `runs` (from [`audit_devices`]): every case with its errors and
/// tolerance for one device, or each device's max abs error side by side for several; with `quiet`
/// only the failures. Returns the text and whether any case failed.
pub fn audit_table(path: &Path, runs: &[(String, Vec<CaseReport>)], quiet: bool) -> (String, bool) {
    use std::fmt::Write;
    let mut out = String::new();
    let mut failed_any = false;
    if runs.len() == 1 {
        let (name, reports) = &runs[0];
        let _ = writeln!(out, "audit of {} on {name}", path.display());
        let _ = writeln!(
            out,
            "{:<38} {:<15} {:>10} {:>10} {:>19}  result  shapes",
            "case", "op", "max abs", "max rel", "tol (abs, rel)"
        );
        let failed = reports.iter().filter(|r| !r.passed).count();
        for r in reports.iter().filter(|r| !(quiet && r.passed)) {
            let tol = format!("{:.1e}, {:.0e}", r.tol.abs, r.tol.rel);
            let verdict = if r.passed { "pass" } else { "FAIL" };
            let _ = writeln!(
                out,
                "{:<38} {:<15} {:>10.2e} {:>10.2e} {:>19}  {verdict}  {}",
                r.name, r.op, r.max_abs, r.max_rel, tol, r.shapes
            );
            if let Some(why) = r.reason.as_ref().filter(|_| !r.passed) {
                let _ = writeln!(out, "    {why}");
            }
        }
        let _ = writeln!(out, "{} passed, {failed} failed", reports.len() - failed);
        failed_any = failed > 0;
    } else {
        let _ = writeln!(
            out,
            "audit of {} on {} devices (max abs error against PyTorch; tolerances as the file gives)",
            path.display(),
            runs.len()
        );
        for (i, (name, _)) in runs.iter().enumerate() {
            let _ = writeln!(out, "  [{i}] {name}");
        }
        let mut head = format!("{:<38} {:<15}", "case", "op");
        for i in 0..runs.len() {
            head += &format!(" {:>16}", format!("[{i}] max abs"));
        }
        let _ = writeln!(out, "{head}");
        for (c, r0) in runs[0].1.iter().enumerate() {
            let mut line = format!("{:<38} {:<15}", r0.name, r0.op);
            for (_, reports) in runs {
                let r = &reports[c];
                failed_any |= !r.passed;
                line += &format!(" {:>11.2e} {:>4}", r.max_abs, if r.passed { "pass" } else { "FAIL" });
            }
            if !quiet || line.contains("FAIL") {
                let _ = writeln!(out, "{line}");
            }
        }
        for (name, reports) in runs {
            let failed = reports.iter().filter(|r| !r.passed).count();
            let _ = writeln!(out, "{name}: {} passed, {failed} failed", reports.len() - failed);
        }
    }
    (out, failed_any)
}

fn get<'t>(t: &'t Tensors, key: &str) -> Result<&'t ArrayD<f32>> {
    t.get(key).ok_or_else(|| Error::Golden(format!("tensor `{key}` is named by a case but not in the file")))
}

fn attr_usize(attrs: &Value, key: &str, default: Option<usize>) -> Result<usize> {
    match attrs.get(key) {
        Some(v) => v
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| Error::Golden(format!("attr `{key}` is not a non-negative integer"))),
        None => default.ok_or_else(|| Error::Golden(format!("attr `{key}` is missing"))),
    }
}

fn attr_f64(attrs: &Value, key: &str) -> Result<f64> {
    attrs
        .get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::Golden(format!("attr `{key}` is missing or not a number")))
}

/// The tensors a case computes, by the key of the tensor they are compared with.
type Got = Vec<(String, ArrayD<f32>)>;

fn run_case(case: &Case, t: &Tensors, dev: Option<&Gpu>) -> CaseReport {
    let shapes = case
        .inputs
        .iter()
        .map(|(role, key)| format!("{role}{:?}", t.get(key).map(|a| a.shape().to_vec()).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut report = CaseReport {
        name: case.name.clone(),
        op: case.op.clone(),
        shapes,
        max_abs: 0.0,
        max_rel: 0.0,
        tol: case.tol,
        tensors: 0,
        passed: false,
        reason: None,
    };
    match compute(case, t, dev).and_then(|got| compare(case, t, got, &mut report)) {
        Ok(()) => {}
        Err(e) => report.reason = Some(e.to_string()),
    }
    report
}

fn compare(case: &Case, t: &Tensors, got: Got, r: &mut CaseReport) -> Result<()> {
    let mut wanted: Vec<&String> =
        case.output.iter().chain(case.outputs.iter().flat_map(|o| o.values())).chain(case.grads.values()).collect();
    wanted.sort();
    let mut produced: Vec<&String> = got.iter().map(|(k, _)| k).collect();
    produced.sort();
    if wanted != produced {
        return Err(Error::Golden(format!("case expects {wanted:?} but specnn produced {produced:?}")));
    }
    let mut worst: Option<(String, f64)> = None;
    let mut ok = true;
    for (key, g) in &got {
        let w = get(t, key)?;
        if g.shape() != w.shape() {
            return Err(Error::Golden(format!("`{key}`: specnn gives shape {:?}, PyTorch {:?}", g.shape(), w.shape())));
        }
        for (&gv, &wv) in g.iter().zip(w.iter()) {
            let (gv, wv) = (gv as f64, wv as f64);
            let d = (gv - wv).abs();
            let limit = r.tol.abs + r.tol.rel * wv.abs();
            if !(d <= limit) {
                ok = false;
                let excess = d / limit;
                if worst.as_ref().is_none_or(|(_, e)| excess > *e) {
                    worst = Some((format!("`{key}`: got {gv:e}, want {wv:e} (|diff| {d:.3e} > {limit:.3e})"), excess));
                }
            }
            r.max_abs = r.max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
            if wv != 0.0 {
                r.max_rel = r.max_rel.max(d / wv.abs());
            }
        }
        r.tensors += 1;
    }
    r.passed = ok;
    r.reason = worst.map(|(m, _)| m);
    Ok(())
}

fn compute(case: &Case, t: &Tensors, dev: Option<&Gpu>) -> Result<Got> {
    let input = |role: &str| -> Result<&ArrayD<f32>> {
        let key = case.inputs.get(role).ok_or_else(|| Error::Golden(format!("case has no input `{role}`")))?;
        get(t, key)
    };
    let out_key = || case.output.clone().ok_or_else(|| Error::Golden("case has no `output`".into()));
    match case.op.as_str() {
        "fold_s" => {
            let x = input("x")?
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(|e| Error::Golden(format!("fold_s input: {e}")))?;
            let side = attr_usize(&case.attrs, "side", Some(64))?;
            Ok(vec![(out_key()?, prep::fold_s(x, side)?.into_dyn())])
        }
        "minmax" => {
            let x = input("x")?
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(|e| Error::Golden(format!("minmax input: {e}")))?;
            Ok(vec![(out_key()?, prep::minmax(x)?.into_dyn())])
        }
        "adam_step" => {
            let a = &case.attrs;
            let cfg = AdamConfig {
                lr: attr_f64(a, "lr")?,
                beta1: attr_f64(a, "beta1")?,
                beta2: attr_f64(a, "beta2")?,
                eps: attr_f64(a, "eps")?,
            };
            let step = attr_usize(a, "step", None)? as u64;
            let (mut p, g, mut m, mut v) =
                (input("param")?.clone(), input("grad")?, input("m")?.clone(), input("v")?.clone());
            if g.shape() != p.shape() || m.shape() != p.shape() || v.shape() != p.shape() {
                return Err(Error::Golden("adam_step: param, grad, m and v differ in shape".into()));
            }
            match dev {
                None => adam_update(&mut p, g, &mut m, &mut v, step, &cfg),
                Some(gpu) => {
                    let up = |a: &ArrayD<f32>| GpuTensor::upload(gpu, &a.view());
                    let (gp, gg, gm, gv) = (up(&p)?, up(g)?, up(&m)?, up(&v)?);
                    gpu_ops::adam(gpu, &gp, &gg, &gm, &gv, step, &cfg)?;
                    (p, m, v) = (gp.to_array(gpu)?, gm.to_array(gpu)?, gv.to_array(gpu)?);
                }
            }
            let outs = case.outputs.as_ref().ok_or_else(|| Error::Golden("adam_step has no `outputs`".into()))?;
            let key =
                |k: &str| outs.get(k).cloned().ok_or_else(|| Error::Golden(format!("adam_step outputs lack `{k}`")));
            Ok(vec![(key("param")?, p), (key("m")?, m), (key("v")?, v)])
        }
        "model" => {
            let arch: Arch = serde_json::from_value(case.attrs.get("arch").cloned().unwrap_or(Value::Null))
                .map_err(|e| Error::Golden(format!("model case: bad `arch`: {e}")))?;
            let params: BTreeMap<String, ArrayD<f32>> = case
                .inputs
                .iter()
                .filter(|(r, _)| r.as_str() != "x")
                .map(|(r, k)| get(t, k).map(|a| (r.clone(), a.clone())))
                .collect::<Result<_>>()?;
            let model = Prepared::Model(Model::from_tensors(&arch, params)?);
            on_device(case, t, &model, dev)
        }
        op => {
            // A residual block registers its own parameters, so it is built first and outlives the tape.
            let block = if op == "residual_block" {
                let layer = |n: &str| -> Result<Dense<f32>> {
                    Ok(Dense {
                        name: n.to_string(),
                        weight: input(&format!("{n}.weight"))?.clone(),
                        bias: input(&format!("{n}.bias"))?.clone(),
                    })
                };
                Some(ResidualBlock { fc1: layer("fc1")?, fc2: layer("fc2")? })
            } else {
                None
            };
            on_device(case, t, &Prepared::Op(block), dev)
        }
    }
}

/// What a model or op case runs: a model, or an op (with its residual block when it is one).
enum Prepared {
    Model(Model<f32>),
    Op(Option<ResidualBlock<f32>>),
}

impl Prepared {
    fn params(&self) -> Vec<(String, &ArrayD<f32>)> {
        match self {
            Prepared::Model(m) => m.params(),
            Prepared::Op(b) => b.as_ref().map(|b| b.params()).unwrap_or_default(),
        }
    }
}

/// Runs a model or op case on the CPU tape, or on a GPU tape holding the case's parameters.
fn on_device(case: &Case, t: &Tensors, prepared: &Prepared, dev: Option<&Gpu>) -> Result<Got> {
    match dev {
        None => run_case_on(case, t, prepared, Tape::<f32>::new()),
        Some(gpu) => {
            let store = ParamStore::upload(gpu, prepared.params())?;
            run_case_on(case, t, prepared, GpuTape::on(gpu, &store))
        }
    }
}

fn run_case_on<'a, B: Backend<'a, Elem = f32>>(
    case: &Case,
    t: &'a Tensors,
    prepared: &'a Prepared,
    mut tape: Tape<'a, B>,
) -> Result<Got> {
    let input = |role: &str| -> Result<&'a ArrayD<f32>> {
        let key = case.inputs.get(role).ok_or_else(|| Error::Golden(format!("case has no input `{role}`")))?;
        get(t, key)
    };
    let block = match prepared {
        Prepared::Model(model) => {
            let xv = tape.input_host(input("x")?.view(), case.grads.contains_key("x"))?;
            let y = model.forward(&mut tape, xv)?;
            return finish(case, t, tape, y, &[("x", xv)]);
        }
        Prepared::Op(block) => block,
    };
    let op = case.op.as_str();
    let mut vars: Vec<(&str, Var)> = Vec::new();
    for (role, key) in &case.inputs {
        let v = tape.input_host(get(t, key)?.view(), case.grads.contains_key(role))?;
        vars.push((role.as_str(), v));
    }
    let var = |role: &str| {
        vars.iter()
            .find(|(r, _)| *r == role)
            .map(|(_, v)| *v)
            .ok_or_else(|| Error::Golden(format!("{op} case has no input `{role}`")))
    };
    let a = &case.attrs;
    let y = match op {
        "conv2d" => {
            let (p, s) = (attr_usize(a, "padding", Some(0))?, attr_usize(a, "stride", Some(1))?);
            let b = var("bias").ok();
            tape.conv2d(var("x")?, var("weight")?, b, Conv2dSpec { stride: (s, s), padding: (p, p) })?
        }
        "maxpool2d" => {
            let (k, s) = (attr_usize(a, "kernel", Some(2))?, attr_usize(a, "stride", Some(2))?);
            tape.maxpool2d(var("x")?, Pool2dSpec { kernel: (k, k), stride: (s, s) })?
        }
        "linear" => tape.linear(var("x")?, var("weight")?, var("bias").ok())?,
        "relu" => tape.relu(var("x")?)?,
        "selu" => tape.selu(var("x")?)?,
        "flatten" => tape.flatten(var("x")?)?,
        "mae_loss" => tape.loss(LossKind::Mae, var("pred")?, var("target")?, None)?,
        "mse_loss" => tape.loss(LossKind::Mse, var("pred")?, var("target")?, None)?,
        "residual_block" => {
            let block = block.as_ref().ok_or_else(|| Error::Golden("residual_block: no block".into()))?;
            block.forward(&mut tape, var("x")?)?
        }
        other => return Err(Error::Golden(format!("unknown op `{other}`"))),
    };
    finish(case, t, tape, y, &vars)
}

/// Collects the output, runs the backward pass with the case's `grad_output`, and collects the gradients
/// of the inputs (`inputs`) and of the parameters registered on the tape.
fn finish<'a, B: Backend<'a, Elem = f32>>(
    case: &Case,
    t: &Tensors,
    mut tape: Tape<'a, B>,
    y: Var,
    inputs: &[(&str, Var)],
) -> Result<Got> {
    let mut got =
        vec![(case.output.clone().ok_or_else(|| Error::Golden("case has no `output`".into()))?, tape.value_host(y)?)];
    if case.grads.is_empty() {
        return Ok(got);
    }
    let gy = get(
        t,
        case.grad_output.as_deref().ok_or_else(|| Error::Golden("case has grads but no `grad_output`".into()))?,
    )?;
    tape.backward_with_host(y, gy.clone())?;
    let mut grads: BTreeMap<String, ArrayD<f32>> = BTreeMap::new();
    for (role, v) in inputs {
        if let Some(g) = tape.grad_host(*v)? {
            grads.insert(role.to_string(), g);
        }
    }
    for (name, g) in tape.into_param_grads_host()? {
        if let Some(g) = g {
            grads.insert(name, g);
        }
    }
    for (role, key) in &case.grads {
        let g = grads.remove(role).ok_or_else(|| Error::Golden(format!("specnn produced no gradient for `{role}`")))?;
        got.push((key.clone(), g));
    }
    Ok(got)
}
