// Reductions, each in a fixed order (deterministic from run to run):
//   bias_grad:  out[o] = sum_{b < outer, j < inner} src[(b * cols + o) * inner + j]
//               (a dense layer's bias gradient has inner = 1; a convolution's has inner = OH * OW).
//               One workgroup per o; each thread sums a strided slice, then a tree in workgroup memory.
//   sum_splits: out[i] = sum_{s < splits} src[s * len + i] (the split-K partial products).

override WG: u32 = 256u;

struct Params {
    outer: u32,
    cols: u32,
    inner: u32,
    splits: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = wid.y * nwg.x + wid.x;
    // No early return before the barriers: a workgroup past the end still takes part in them.
    let live = o < p.cols;
    let count = p.outer * p.inner;
    var acc = 0.0;
    if (live) {
        for (var e = lid.x; e < count; e += WG) {
            let b = e / p.inner;
            let j = e % p.inner;
            acc += src[(b * p.cols + o) * p.inner + j];
        }
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            partial[lid.x] += partial[lid.x + s];
        }
        workgroupBarrier();
    }
    if (live && lid.x == 0u) {
        out[o] = partial[0];
    }
}

@compute @workgroup_size(WG)
fn sum_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
    let len = p.cols;
    if (i >= len) { return; }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        acc += src[s * len + i];
    }
    out[i] = acc;
}
