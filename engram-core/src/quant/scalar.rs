//! The reference kernels: plain loops, one weight at a time.

use super::{BLOCK, BlockKind};

fn scale(block: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32()
}

pub(super) fn dequantize(kind: BlockKind, block: &[u8], out: &mut [f32; BLOCK]) {
    match kind {
        BlockKind::Q8 => {
            let d = scale(block);
            for (o, &q) in out.iter_mut().zip(&block[2..2 + BLOCK]) {
                *o = d * f32::from(q as i8);
            }
        }
        BlockKind::Q4 => {
            let d = scale(block);
            for (j, &b) in block[2..2 + BLOCK / 2].iter().enumerate() {
                out[j] = d * f32::from((b & 0x0F) as i8 - 8);
                out[j + BLOCK / 2] = d * f32::from((b >> 4) as i8 - 8);
            }
        }
        BlockKind::F16 => {
            for (o, h) in out.iter_mut().zip(block.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([h[0], h[1]])).to_f32();
            }
        }
    }
}

pub(super) fn row_dot(kind: BlockKind, blocks: &[u8], x: &[f32]) -> f32 {
    let mut w = [0f32; BLOCK];
    let mut sum = 0f32;
    for (b, xs) in blocks.chunks_exact(kind.bytes()).zip(x.chunks_exact(BLOCK)) {
        dequantize(kind, b, &mut w);
        sum += w.iter().zip(xs).map(|(a, b)| a * b).sum::<f32>();
    }
    sum
}

/// `y[r]` = Σ over row r's Q8 blocks of d_w · d_x · (integer dot of the codes).
pub(super) fn matvec_int8(blocks: &[u8], bpr: usize, codes: &[i8], scales: &[f32], y: &mut [f32]) {
    let row_bytes = bpr * BlockKind::Q8.bytes();
    for (r, out) in y.iter_mut().enumerate() {
        let row = &blocks[r * row_bytes..(r + 1) * row_bytes];
        *out = row
            .chunks_exact(BlockKind::Q8.bytes())
            .zip(codes.chunks_exact(BLOCK).zip(scales))
            .map(|(b, (xs, &dx))| {
                let dot: i32 = b[2..]
                    .iter()
                    .zip(xs)
                    .map(|(&q, &x)| i32::from(q as i8) * i32::from(x))
                    .sum();
                scale(b) * dx * dot as f32
            })
            .sum();
    }
}
