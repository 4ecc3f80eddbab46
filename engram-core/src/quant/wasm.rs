//! wasm32 simd128 block kernels: i8 codes widen to f32 four at a time; f16 blocks convert in
//! scalar code (simd128 has no half-precision conversion).

use core::arch::wasm32::*;

use super::{BLOCK, BlockKind, scalar};

fn scale(block: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32()
}

/// The 32 signed codes of a Q8 or Q4 block as two vectors of 16 i8.
fn codes(kind: BlockKind, block: &[u8]) -> [v128; 2] {
    match kind {
        BlockKind::Q8 => [v128_load_16(&block[2..18]), v128_load_16(&block[18..34])],
        _ => {
            let v = v128_load_16(&block[2..18]);
            let mask = u8x16_splat(0x0F);
            let eight = i8x16_splat(8);
            [
                i8x16_sub(v128_and(v, mask), eight),
                i8x16_sub(v128_and(u8x16_shr(v, 4), mask), eight),
            ]
        }
    }
}

fn v128_load_16(b: &[u8]) -> v128 {
    let a: [u8; 16] = b.try_into().expect("16 bytes");
    u8x16(
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
        a[14], a[15],
    )
}

/// Sixteen i8 lanes as four f32x4.
fn widen(v: v128) -> [v128; 4] {
    let lo = i16x8_extend_low_i8x16(v);
    let hi = i16x8_extend_high_i8x16(v);
    [
        f32x4_convert_i32x4(i32x4_extend_low_i16x8(lo)),
        f32x4_convert_i32x4(i32x4_extend_high_i16x8(lo)),
        f32x4_convert_i32x4(i32x4_extend_low_i16x8(hi)),
        f32x4_convert_i32x4(i32x4_extend_high_i16x8(hi)),
    ]
}

fn load4(x: &[f32]) -> v128 {
    f32x4(x[0], x[1], x[2], x[3])
}

pub(super) fn dequantize(kind: BlockKind, block: &[u8], out: &mut [f32; BLOCK]) {
    if kind == BlockKind::F16 {
        return scalar::dequantize(kind, block, out);
    }
    let d = f32x4_splat(scale(block));
    for (h, v) in codes(kind, block).into_iter().enumerate() {
        for (i, w) in widen(v).into_iter().enumerate() {
            let o = 16 * h + 4 * i;
            let r = f32x4_mul(d, w);
            out[o] = f32x4_extract_lane::<0>(r);
            out[o + 1] = f32x4_extract_lane::<1>(r);
            out[o + 2] = f32x4_extract_lane::<2>(r);
            out[o + 3] = f32x4_extract_lane::<3>(r);
        }
    }
}

pub(super) fn row_dot(kind: BlockKind, blocks: &[u8], x: &[f32]) -> f32 {
    if kind == BlockKind::F16 {
        return scalar::row_dot(kind, blocks, x);
    }
    let mut total = f32x4_splat(0.0);
    for (b, xs) in blocks.chunks_exact(kind.bytes()).zip(x.chunks_exact(BLOCK)) {
        let mut acc = f32x4_splat(0.0);
        for (h, v) in codes(kind, b).into_iter().enumerate() {
            for (i, w) in widen(v).into_iter().enumerate() {
                let o = 16 * h + 4 * i;
                acc = f32x4_add(acc, f32x4_mul(w, load4(&xs[o..o + 4])));
            }
        }
        total = f32x4_add(total, f32x4_mul(f32x4_splat(scale(b)), acc));
    }
    f32x4_extract_lane::<0>(total)
        + f32x4_extract_lane::<1>(total)
        + f32x4_extract_lane::<2>(total)
        + f32x4_extract_lane::<3>(total)
}
