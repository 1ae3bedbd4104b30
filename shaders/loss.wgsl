// Losses with their reductions, in one workgroup: mean absolute error (kind 0), mean squared error
// (kind 1), and the masked MAE (kind 2: the mean over elements whose mask is positive, weighted by the
// mask, so unknown labels are skipped), and the masked Gaussian NLL (kind 3: pred rows hold `labels`
// means then `labels` log-variances, truth and mask are [rows, labels]; `len` counts truth's elements;
// each known label adds w (s + d^2 e^-s) / 2 with s clamped to +-LOG_VAR_LIMIT, its gradient taken at
// the clamped value, and the beta-NLL weight w = e^(beta s) held constant). Each thread sums a strided slice, a tree in workgroup memory
// finishes the sum (fixed order: deterministic), thread 0 writes the loss, then every thread writes the
// gradient of the loss with respect to pred (PyTorch's conventions: the derivative of |0| is 0).
// Batches of labels are small (batch x labels), so one workgroup is enough.

override WG: u32 = 256u;

struct Params {
    len: u32,
    kind: u32,
    want_grad: u32,
    labels: u32,
    beta: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

// ops::loss::LOG_VAR_LIMIT.
const LOG_VAR_LIMIT: f32 = 12.0;

@group(0) @binding(0) var<storage, read> pred: array<f32>;
@group(0) @binding(1) var<storage, read> truth: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> sums: array<f32, WG>;
var<workgroup> counts: array<f32, WG>;

fn weight(i: u32) -> f32 {
    if (p.kind == 2u) {
        return max(mask[i], 0.0);
    }
    return 1.0;
}

// Kind 3: the index in pred of label element i's mean (its log-variance is `labels` further on).
fn mean_at(i: u32) -> u32 {
    return (i / p.labels) * 2u * p.labels + i % p.labels;
}

@compute @workgroup_size(WG)
fn loss_main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    var c = 0.0;
    for (var i = lid.x; i < p.len; i += WG) {
        if (p.kind == 3u) {
            let m = max(mask[i], 0.0);
            if (m > 0.0) {
                let at = mean_at(i);
                let d = pred[at] - truth[i];
                let lv = clamp(pred[at + p.labels], -LOG_VAR_LIMIT, LOG_VAR_LIMIT);
                s += m * exp(p.beta * lv) * 0.5 * (lv + d * d * exp(-lv));
            }
            c += m;
            continue;
        }
        let d = pred[i] - truth[i];
        let m = weight(i);
        if (m > 0.0) {
            if (p.kind == 1u) {
                s += d * d;
            } else {
                s += m * abs(d);
            }
        }
        c += m;
    }
    sums[lid.x] = s;
    counts[lid.x] = c;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid.x < k) {
            sums[lid.x] += sums[lid.x + k];
            counts[lid.x] += counts[lid.x + k];
        }
        workgroupBarrier();
    }
    let total = counts[0];
    if (lid.x == 0u) {
        loss[0] = sums[0] / total;
    }
    if (p.want_grad == 0u) {
        return;
    }
    for (var i = lid.x; i < p.len; i += WG) {
        if (p.kind == 3u) {
            let at = mean_at(i);
            let m = max(mask[i], 0.0);
            var gm = 0.0;
            var gs = 0.0;
            if (m > 0.0) {
                let d = pred[at] - truth[i];
                let lv = clamp(pred[at + p.labels], -LOG_VAR_LIMIT, LOG_VAR_LIMIT);
                let e = exp(-lv);
                let k = m * exp(p.beta * lv) / total;
                gm = k * d * e;
                // At the clamped value where clamped: passed through, as on the CPU.
                gs = k * 0.5 * (1.0 - d * d * e);
            }
            grad[at] = gm;
            grad[at + p.labels] = gs;
            continue;
        }
        let d = pred[i] - truth[i];
        let m = weight(i);
        var gv = 0.0;
        if (p.kind == 1u) {
            gv = 2.0 * d / total;
        } else if (m > 0.0 && d != 0.0) {
            gv = sign(d) * m / total;
        }
        grad[i] = gv;
    }
}
