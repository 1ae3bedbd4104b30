// conv2d input gradient as an implicit GEMM (a transposed convolution of dy):
//   dx[b, c, iy, ix] = sum_{o, ky, kx} w[o, c, ky, kx] dy[b, o, (iy + ph - ky)/sh, (ix + pw - kx)/sw]
// over the (ky, kx) for which the division is exact and lands inside dy.
// M = C, N = batch * H * W, K = O * KH * KW.

// The geometry uniform `g` and `input_index` come from conv_common.wgsl.

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn gemm_m() -> u32 { return g.c; }
fn gemm_n() -> u32 { return g.n * g.h * g.w; }
fn gemm_k() -> u32 { return g.o * g.kh * g.kw; }
fn gemm_k_chunk() -> u32 { return g.k_chunk; }

fn load_a(m: u32, k: u32) -> f32 {
    let kk = g.kh * g.kw;
    let o = k / kk;
    let r = k % kk;
    return wt[(o * g.c + m) * kk + r];
}

fn load_b(k: u32, col: u32) -> f32 {
    let kk = g.kh * g.kw;
    let o = k / kk;
    let r = k % kk;
    let ky = r / g.kw;
    let kx = r % g.kw;
    let plane = g.h * g.w;
    let b = col / plane;
    let q = col % plane;
    let ty = i32(q / g.w) + i32(g.ph) - i32(ky);
    let tx = i32(q % g.w) + i32(g.pw) - i32(kx);
    if (ty < 0 || tx < 0) {
        return 0.0;
    }
    let uy = u32(ty);
    let ux = u32(tx);
    if (uy % g.sh != 0u || ux % g.sw != 0u) {
        return 0.0;
    }
    let oy = uy / g.sh;
    let ox = ux / g.sw;
    if (oy >= g.oh || ox >= g.ow) {
        return 0.0;
    }
    return dy[((b * g.o + o) * g.oh + oy) * g.ow + ox];
}

fn store_c(m: u32, col: u32, split: u32, v: f32) {
    let plane = g.h * g.w;
    let b = col / plane;
    let q = col % plane;
    dx[(b * g.c + m) * plane + q] = v;
}
