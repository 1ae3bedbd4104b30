// What the three convolution kernels share (prepended to each by `src/gpu/kernels.rs`): the geometry
// uniform and the im2col index of an input pixel.

struct Geom {
    n: u32, c: u32, h: u32, w: u32,
    o: u32, kh: u32, kw: u32, oh: u32,
    ow: u32, sh: u32, sw: u32, ph: u32,
    pw: u32, has_bias: u32, k_chunk: u32, _pad: u32,
}

@group(0) @binding(4) var<uniform> g: Geom;

// The index in x [N, C, H, W] of the input pixel that kernel tap (ky, kx) of channel c sees from output
// position q (= oy * OW + ox) of sample b, or -1 where that tap falls in the zero padding.
fn input_index(b: u32, c: u32, q: u32, ky: u32, kx: u32) -> i32 {
    let iy = i32((q / g.ow) * g.sh + ky) - i32(g.ph);
    let ix = i32((q % g.ow) * g.sw + kx) - i32(g.pw);
    if (iy < 0 || ix < 0 || iy >= i32(g.h) || ix >= i32(g.w)) {
        return -1;
    }
    return i32(((b * g.c + c) * g.h + u32(iy)) * g.w + u32(ix));
}
