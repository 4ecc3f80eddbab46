//! Vector files: NumPy `.npy` (2-D float32), `.fvecs` (ANN-benchmarks: per row an i32
//! dimension then that many f32) and raw little-endian `.f32` (with a given dimension).
//! Every problem names the file and, where it has one, the row.

use std::path::Path;

/// Rows of `dim` floats, row-major.
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
    let need = rows * dim * 4;
    if body.len() < need {
        return Err(format!(
            "truncated: {rows} rows need {need} bytes of data, the file has {} (row {} is incomplete)",
            body.len(),
            body.len() / (dim * 4).max(1)
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
    if dim == 0 || !b.len().is_multiple_of(4 * dim) {
        return Err(format!(
            "{} bytes are not whole rows of {dim} floats (row {} is incomplete)",
            b.len(),
            b.len() / (4 * dim).max(1)
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
