// conv2d weight gradient as an implicit GEMM:
//   dw[o, c, ky, kx] = sum_{b, oy, ox} dy[b, o, oy, ox] x[b, c, oy*sh + ky - ph, ox*sw + kx - pw]
// M = O, N = C * KH * KW, K = batch * OH * OW. K is large and M N small, so the product is split along K
// (workgroup_id.z) into partial sums [splits, O, C*KH*KW], summed by `sum_splits` in reduce.wgsl.

// The geometry uniform `g` and `input_index` come from conv_common.wgsl.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

fn gemm_m() -> u32 { return g.o; }
fn gemm_n() -> u32 { return g.c * g.kh * g.kw; }
fn gemm_k() -> u32 { return g.n * g.oh * g.ow; }
fn gemm_k_chunk() -> u32 { return g.k_chunk; }

fn load_a(m: u32, k: u32) -> f32 {
    let plane = g.oh * g.ow;
    let b = k / plane;
    let q = k % plane;
    return dy[(b * g.o + m) * plane + q];
}

fn load_b(k: u32, col: u32) -> f32 {
    let kk = g.kh * g.kw;
    let c = col / kk;
    let r = col % kk;
    let ky = r / g.kw;
    let kx = r % g.kw;
    let plane = g.oh * g.ow;
    let i = input_index(k / plane, c, k % plane, ky, kx);
    if (i < 0) {
        return 0.0;
    }
    return x[u32(i)];
}

fn store_c(m: u32, col: u32, split: u32, v: f32) {
    partial[(split * g.o + m) * gemm_n() + col] = v;
}
