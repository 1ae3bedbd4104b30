// The tiled matrix-product core shared by matmul and the three convolution kernels (appended to each of
// them by `src/gpu/kernels.rs`). It computes C[M, N] = A[M, K] B[K, N] where the including file says how
// to read A and B and where to write C (`gemm_m/n/k`, `gemm_k_chunk`, `load_a`, `load_b`, `store_c`):
// the convolutions read their A or B straight from the tensors (implicit GEMM: no im2col buffer).
//
// A workgroup of 16x16 threads computes a 64x64 tile of C; each thread keeps a 4x4 block of it in
// registers (rows lid.y + 16 i, columns lid.x + 16 j, so that neighbouring threads touch neighbouring
// columns). K is walked in slices of 16 staged in workgroup memory. workgroup_id.z splits K into chunks
// of `gemm_k_chunk()` (split-K: a weight gradient has a small C and a huge K); each chunk is stored as its
// own partial product and summed afterwards in a fixed order, so results are deterministic.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_M][TILE_K]
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m_total = gemm_m();
    let n_total = gemm_n();
    let k_total = gemm_k();
    let m0 = wid.y * TILE_M;
    let n0 = wid.x * TILE_N;
    let k_begin = wid.z * gemm_k_chunk();
    let k_end = min(k_total, k_begin + gemm_k_chunk());
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * THREADS;
            // A: neighbouring threads read neighbouring k (row-major A is contiguous in k).
            let am = e / TILE_K;
            let ak = e % TILE_K;
            var va = 0.0;
            if (m0 + am < m_total && k0 + ak < k_end) {
                va = load_a(m0 + am, k0 + ak);
            }
            tile_a[am * TILE_K + ak] = va;
            // B: neighbouring threads read neighbouring n.
            let bk = e / TILE_N;
            let bn = e % TILE_N;
            var vb = 0.0;
            if (n0 + bn < n_total && k0 + bk < k_end) {
                vb = load_b(k0 + bk, n0 + bn);
            }
            tile_b[bk * TILE_N + bn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_a[(lid.y + 16u * i) * TILE_K + kk];
                b[i] = tile_b[kk * TILE_N + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (m < m_total && n < n_total) {
                store_c(m, n, wid.z, acc[i * 4u + j]);
            }
        }
    }
}
