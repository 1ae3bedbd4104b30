// matmul: C[M, N] = op(A) op(B) (+ bias[N]), op = identity or transpose, for the dense layers:
//   forward   y  = x W^T + b   (A = x [N, I], B = W [O, I] transposed)
//   backward  dx = dy W        (A = dy [N, O], B = W [O, I])
//             dW = dy^T x      (A = dy [N, O] transposed, B = x [N, I])
// Bounds are checked in the core (gemm_core.wgsl) before every load and store.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32, // 1: A is stored [K, M]
    trans_b: u32, // 1: B is stored [N, K]
    has_bias: u32,
    k_chunk: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> mat_a: array<f32>;
@group(0) @binding(1) var<storage, read> mat_b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> mat_c: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn gemm_m() -> u32 { return p.m; }
fn gemm_n() -> u32 { return p.n; }
fn gemm_k() -> u32 { return p.k; }
fn gemm_k_chunk() -> u32 { return p.k_chunk; }

fn load_a(m: u32, k: u32) -> f32 {
    if (p.trans_a == 1u) {
        return mat_a[k * p.m + m];
    }
    return mat_a[m * p.k + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if (p.trans_b == 1u) {
        return mat_b[n * p.k + k];
    }
    return mat_b[k * p.n + n];
}

fn store_c(m: u32, n: u32, split: u32, v: f32) {
    var out = v;
    if (p.has_bias == 1u) {
        out += bias[n];
    }
    mat_c[(split * p.m + m) * p.n + n] = out;
}
