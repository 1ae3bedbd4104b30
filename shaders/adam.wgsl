// Adam, as torch.optim.Adam (no weight decay, no amsgrad) for update number `step`:
//   m = m + (g - m)(1 - b1);  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// The bias corrections are computed on the host in f64 and passed in as step_size and bc2_sqrt.

override WG: u32 = 256u;

struct Params {
    len: u32,
    step_size: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc2_sqrt: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m1: array<f32>;
@group(0) @binding(3) var<storage, read_write> m2: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
    if (i >= p.len) { return; }
    let g = grad[i];
    let m = m1[i] + (g - m1[i]) * (1.0 - p.beta1);
    let v = m2[i] * p.beta2 + g * g * (1.0 - p.beta2);
    m1[i] = m;
    m2[i] = v;
    let denom = sqrt(v) / p.bc2_sqrt + p.eps;
    param[i] = param[i] - p.step_size * (m / denom);
}
