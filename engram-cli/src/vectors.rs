//! Vector files: NumPy `.npy` (2-D float32), `.fvecs` (ANN-benchmarks: per row an i32
//! dimension then that many f32) and raw little-endian `.f32` (with a given dimension).
//! Every problem names the file and, where it has one, the row.

use std::path::Path;

/// Rows of `dim` floats, row-major.
#[derive(Debug)]
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Reads `path` by its extension; `dim` is required for `.f32` and checked for the others.
pub fn read(path: &Path, dim: Option<usize>) -> Result<Vectors, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display();
    let v = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy(&bytes).map_err(|e| format!("{name}: {e}"))?,
        Some("fvecs") => fvecs(&bytes).map_err(|e| format!("{name}: {e}"))?,
        Some("f32") => {
            let dim = dim.ok_or(format!("{name}: a raw .f32 file needs --dim"))?;
            raw(&bytes, dim).map_err(|e| format!("{name}: {e}"))?
        }
        _ => {
            return Err(format!(
                "{name}: unknown vector format (expected .npy, .fvecs or .f32)"
            ));
        }
    };
    if let Some(d) = dim
        && d != v.dim
    {
        return Err(format!(
            "{name}: rows have {} dimensions, expected {d}",
            v.dim
        ));
    }
    if let Some(i) = v.data.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "{name}: row {} has a non-finite value ({}) at column {}",
            i / v.dim,
            v.data[i],
            i % v.dim
        ));
    }
    Ok(v)
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn npy(b: &[u8]) -> Result<Vectors, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or unreadable .npy header")?;
    let descr = header
        .split("'descr':")
        .nth(1)
        .and_then(|s| s.split('\'').nth(1))
        .ok_or("no dtype in the .npy header")?;
    if descr != "<f4" {
        return Err(format!("dtype {descr} is not little-endian float32 (<f4)"));
    }
    if header.contains("'fortran_order': True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in the .npy header")?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape entry {s}")))
        .collect::<Result<_, _>>()?;
    let [rows, dim] = shape[..] else {
        return Err(format!(
            "array has shape {shape:?}; expected 2-D (rows, dim)"
        ));
    };
    let body = &b[start + hlen..];
    let need = rows
        .checked_mul(dim)
        .and_then(|n| n.checked_mul(4))
        .ok_or(format!("shape ({rows}, {dim}) is too large"))?;
    if body.len() < need {
        return Err(format!(
            "truncated: {rows} rows need {need} bytes of data, the file has {} (row {} is incomplete)",
            body.len(),
            body.len() / dim.saturating_mul(4).max(1)
        ));
    }
    Ok(Vectors {
        dim,
        data: floats(&body[..need]),
    })
}

fn fvecs(b: &[u8]) -> Result<Vectors, String> {
    let mut data = Vec::new();
    let mut dim = None;
    let (mut at, mut row) = (0usize, 0usize);
    while at < b.len() {
        let head = b.get(at..at + 4).ok_or(format!("truncated at row {row}"))?;
        let d = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if d <= 0 {
            return Err(format!("row {row} declares dimension {d}"));
        }
        let d = d as usize;
        if *dim.get_or_insert(d) != d {
            return Err(format!(
                "row {row} has {d} dimensions, row 0 has {}",
                dim.unwrap_or(0)
            ));
        }
        let body = b
            .get(at + 4..at + 4 + 4 * d)
            .ok_or(format!("truncated in row {row}"))?;
        data.extend(floats(body));
        at += 4 + 4 * d;
        row += 1;
    }
    Ok(Vectors {
        dim: dim.unwrap_or(0),
        data,
    })
}

fn raw(b: &[u8], dim: usize) -> Result<Vectors, String> {
    if dim == 0 || dim > u32::MAX as usize {
        return Err(format!("a dimension of {dim} is not 1 to {}", u32::MAX));
    }
    if !b.len().is_multiple_of(4 * dim) {
        return Err(format!(
            "{} bytes are not whole rows of {dim} floats (row {} is incomplete)",
            b.len(),
            b.len() / (4 * dim)
        ));
    }
    Ok(Vectors {
        dim,
        data: floats(b),
    })
}

/// Payloads from a TSV: line i is row i's payload; a line `id<TAB>text` gives `text`.
pub fn payloads(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| match l.iter().position(|&c| c == b'\t') {
            Some(t) => l[t + 1..].to_vec(),
            None => l.to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_with_header(header: &str, body: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let huge = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }\n",
            &[0; 16],
        );
        assert!(npy(&huge).unwrap_err().contains("too large"));
        let zero = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }\n",
            &[],
        );
        assert_eq!(npy(&zero).map(|v| v.rows()).unwrap_or(0), 0);
        assert!(npy(b"\x93NUMPY\x01\x00\xff\xff").is_err());
        assert!(npy(b"\x93NUMPY\x07\x00\x00\x00").is_err());
        assert!(raw(&[0; 8], usize::MAX).is_err());
        assert!(raw(&[0; 8], 0).unwrap_err().contains("dimension of 0"));
        assert!(fvecs(&[0xff, 0xff, 0xff, 0x7f]).is_err());
        // Every prefix of a valid file is an error or a shorter file, never a panic.
        let good = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n",
            &[0; 16],
        );
        for n in 0..good.len() {
            let _ = npy(&good[..n]);
        }
    }
}
