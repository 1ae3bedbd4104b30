// Elementwise kernels, forward and backward: relu, selu, add, and scale (out = a * factor * b[0], the
// chain rule through a scalar loss). One thread per element; the grid is two-dimensional so that
// tensors of more than 65535 workgroups fit (index = (wid.y * num_workgroups.x + wid.x) * WG + lid.x).
// SELU's constants are the full-precision values of Klambauer et al. (2017), as on the CPU.

override WG: u32 = 256u;

const SELU_ALPHA: f32 = 1.6732632423543772848170429916717;
const SELU_SCALE: f32 = 1.0507009873554804934193349852946;

struct Params {
    len: u32,
    factor: f32, // scale only
    use_b: u32,  // scale only: multiply by the scalar b[0] too
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// out = max(a, 0)
@compute @workgroup_size(WG)
fn relu_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = select(0.0, a[i], a[i] > 0.0);
}

// a = x, b = dy: out = dy where x > 0 (the gradient at 0 is 0, as PyTorch)
@compute @workgroup_size(WG)
fn relu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = select(0.0, b[i], a[i] > 0.0);
}

@compute @workgroup_size(WG)
fn selu_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) { return; }
    let v = a[i];
    if (v > 0.0) {
        out[i] = SELU_SCALE * v;
    } else {
        out[i] = SELU_SCALE * SELU_ALPHA * (exp(v) - 1.0);
    }
}

// a = x, b = dy
@compute @workgroup_size(WG)
fn selu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) { return; }
    let v = a[i];
    if (v > 0.0) {
        out[i] = b[i] * SELU_SCALE;
    } else {
        out[i] = b[i] * SELU_SCALE * SELU_ALPHA * exp(v);
    }
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = a[i] + b[i];
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) { return; }
    var f = p.factor;
    if (p.use_b == 1u) {
        f = f * b[0];
    }
    out[i] = a[i] * f;
}
