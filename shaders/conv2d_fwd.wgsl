// conv2d forward as an implicit GEMM (PyTorch's cross-correlation with zero padding):
//   y[b, o, oy, ox] = bias[o] + sum_{c, ky, kx} w[o, c, ky, kx] x[b, c, oy*sh + ky - ph, ox*sw + kx - pw]
// M = O, N = batch * OH * OW, K = C * KH * KW; A is the weight [O, C*KH*KW] as stored, B is the im2col
// matrix read from x on the fly (zeros in the padding), so no im2col buffer is ever written.

// The geometry uniform `g` and `input_index` come from conv_common.wgsl.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn gemm_m() -> u32 { return g.o; }
fn gemm_n() -> u32 { return g.n * g.oh * g.ow; }
fn gemm_k() -> u32 { return g.c * g.kh * g.kw; }
fn gemm_k_chunk() -> u32 { return g.k_chunk; }

fn load_a(m: u32, k: u32) -> f32 {
    return wt[m * gemm_k() + k];
}

fn load_b(k: u32, col: u32) -> f32 {
    let kk = g.kh * g.kw;
    let c = k / kk;
    let r = k % kk;
    let ky = r / g.kw;
    let kx = r % g.kw;
    let plane = g.oh * g.ow;
    let i = input_index(col / plane, c, col % plane, ky, kx);
    if (i < 0) {
        return 0.0;
    }
    return x[u32(i)];
}

fn store_c(m: u32, col: u32, split: u32, v: f32) {
    let plane = g.oh * g.ow;
    let b = col / plane;
    let q = col % plane;
    var out = v;
    if (g.has_bias == 1u) {
        out += bias[m];
    }
    y[(b * g.o + m) * plane + q] = out;
}
