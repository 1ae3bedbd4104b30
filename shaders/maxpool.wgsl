// Max pooling (floor mode, no padding), forward with argmax and backward through it.
// Forward: one thread per output; the argmax is the winner's index inside its H x W plane, the first
// maximum winning and NaN winning, exactly as the CPU path and PyTorch.
// Backward: one thread per *input* element, gathering dy from every window that chose it (a gather
// needs no atomics, so overlapping windows are summed deterministically).

override WG: u32 = 256u;

struct Params {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, kh: u32, kw: u32, sh: u32,
    sw: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

fn is_nan(v: f32) -> bool {
    return !(v == v);
}

// src = x, dst = y, argmax_out
@compute @workgroup_size(WG)
fn maxpool_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    let ohw = p.oh * p.ow;
    if (i >= p.planes * ohw) { return; }
    let plane = i / ohw;
    let q = i % ohw;
    let oy = q / p.ow;
    let ox = q % p.ow;
    let base = plane * p.h * p.w;
    var best = oy * p.sh * p.w + ox * p.sw;
    for (var ki = 0u; ki < p.kh; ki++) {
        for (var kj = 0u; kj < p.kw; kj++) {
            let j = (oy * p.sh + ki) * p.w + ox * p.sw + kj;
            let v = src[base + j];
            let bv = src[base + best];
            if (v > bv || (is_nan(v) && !is_nan(bv))) {
                best = j;
            }
        }
    }
    dst[i] = src[base + best];
    argmax_out[i] = best;
}

// src = dy, argmax_in, dst = dx
@compute @workgroup_size(WG)
fn maxpool_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    let hw = p.h * p.w;
    if (i >= p.planes * hw) { return; }
    let plane = i / hw;
    let j = i % hw;
    let iy = j / p.w;
    let ix = j % p.w;
    // windows oy with oy*sh <= iy < oy*sh + kh
    var oy_lo = 0u;
    if (iy + 1u > p.kh) { oy_lo = (iy + 1u - p.kh + p.sh - 1u) / p.sh; }
    var ox_lo = 0u;
    if (ix + 1u > p.kw) { ox_lo = (ix + 1u - p.kw + p.sw - 1u) / p.sw; }
    let oy_hi = min(iy / p.sh + 1u, p.oh);
    let ox_hi = min(ix / p.sw + 1u, p.ow);
    var acc = 0.0;
    for (var oy = oy_lo; oy < oy_hi; oy++) {
        for (var ox = ox_lo; ox < ox_hi; ox++) {
            let o = plane * p.oh * p.ow + oy * p.ow + ox;
            if (argmax_in[o] == j) {
                acc += src[o];
            }
        }
    }
    dst[i] = acc;
}
