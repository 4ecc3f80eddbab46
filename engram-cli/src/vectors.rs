//! Vector files: NumPy `.npy` (2-D float32), `.fvecs` (ANN-benchmarks: per row an i32
//! dimension then that many f32) and raw little-endian `.f32` (with a given dimension).
//! Every problem names the file and, where it has one, the row.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Rows of `dim` floats, row-major: a whole (query) file in memory.
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

/// Reads all of `path`'s rows (see [`open`]).
pub fn read(path: &Path, dim: Option<usize>) -> Result<Vectors, String> {
    let mut rows = open(path, dim)?;
    let mut data = Vec::new();
    let mut row = Vec::new();
    while rows.next_into(&mut row)? {
        data.extend_from_slice(&row);
    }
    Ok(Vectors {
        dim: rows.dim,
        data,
    })
}

/// Opens `path` by its extension, to be read a row at a time (an import holds one row, not
/// the file); `dim` is required for `.f32` and checked for the others. The header, the
/// length and the first row's dimension are checked here, each row as it is read.
pub fn open(path: &Path, dim: Option<usize>) -> Result<Rows<BufReader<File>>, String> {
    let name = path.display().to_string();
    let format = format_of(path, dim)?;
    let file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{name}: {e}"))?.len();
    let rows = Rows::new(BufReader::with_capacity(1 << 20, file), len, format)
        .map_err(|e| format!("{name}: {e}"))?;
    // An empty .fvecs names no dimension (its rows would): it holds no rows of any.
    let empty_fvecs = matches!(format, Format::Fvecs) && len == 0;
    if let Some(d) = dim
        && d != rows.dim
        && !empty_fvecs
    {
        return Err(format!(
            "{name}: rows have {} dimensions, expected {d}",
            rows.dim
        ));
    }
    Ok(Rows { name, ..rows })
}

/// The format a vector file's extension names.
fn format_of(path: &Path, dim: Option<usize>) -> Result<Format, String> {
    let name = path.display();
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => Ok(Format::Npy),
        Some("fvecs") => Ok(Format::Fvecs),
        Some("f32") => Ok(Format::Raw(
            dim.ok_or(format!("{name}: a raw .f32 file needs --dim"))?,
        )),
        _ => Err(format!(
            "{name}: unknown vector format (expected .npy, .fvecs or .f32)"
        )),
    }
}

/// A new vector file of `rows` rows of `dim` floats, in the format its extension names (the
/// ones [`open`] reads), written a row at a time.
pub struct Writer {
    out: BufWriter<File>,
    format: Format,
    path: PathBuf,
    rows_left: u64,
}

impl Writer {
    /// Creates `path`, which must not exist: an export never overwrites a file.
    pub fn create(path: &Path, dim: usize, rows: u64) -> Result<Writer, String> {
        let format = format_of(path, Some(dim))?;
        let name = path.display();
        let file = File::create_new(path).map_err(|e| format!("{name}: {e}"))?;
        let mut w = Writer {
            out: BufWriter::with_capacity(1 << 20, file),
            format,
            path: path.to_path_buf(),
            rows_left: rows,
        };
        if let Format::Npy = format {
            let mut header =
                format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
            // Version 1.0: magic, version, u16 length, then the header padded with spaces and
            // ended by a newline so the data starts 64-byte aligned.
            let unpadded = 10 + header.len() + 1;
            header.extend(std::iter::repeat_n(
                ' ',
                unpadded.next_multiple_of(64) - unpadded,
            ));
            header.push('\n');
            let len = u16::try_from(header.len()).map_err(|_| format!("{name}: shape too long"))?;
            w.put(b"\x93NUMPY\x01\x00")?;
            w.put(&len.to_le_bytes())?;
            w.put(header.as_bytes())?;
        }
        Ok(w)
    }

    /// Appends one row (of the dimension given at creation).
    pub fn row(&mut self, row: &[f32]) -> Result<(), String> {
        self.rows_left = self
            .rows_left
            .checked_sub(1)
            .ok_or_else(|| format!("{}: more rows than announced", self.path.display()))?;
        if let Format::Fvecs = self.format {
            let dim =
                i32::try_from(row.len()).map_err(|_| "row too long for .fvecs".to_string())?;
            self.put(&dim.to_le_bytes())?;
        }
        for x in row {
            self.put(&x.to_le_bytes())?;
        }
        Ok(())
    }

    /// Flushes and syncs the file; every announced row must have been written.
    pub fn finish(self) -> Result<(), String> {
        let name = self.path.display().to_string();
        if self.rows_left != 0 {
            return Err(format!("{name}: {} rows missing", self.rows_left));
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| format!("{name}: {}", e.error()))?;
        file.sync_all().map_err(|e| format!("{name}: {e}"))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.out
            .write_all(bytes)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

#[derive(Clone, Copy)]
pub enum Format {
    /// NumPy, 2-D little-endian float32, C order.
    Npy,
    /// Per row an i32 dimension, then that many f32.
    Fvecs,
    /// Bare f32 rows of the given dimension.
    Raw(usize),
}

/// A vector file read a row at a time.
pub struct Rows<R> {
    src: R,
    pub dim: usize,
    /// Rows left, where the header or the length says (not for fvecs).
    remaining: Option<u64>,
    /// The dimension of the next fvecs row, its four bytes already read.
    pending: Option<usize>,
    /// Bytes of the file not yet read.
    left: u64,
    row: usize,
    bytes: Vec<u8>,
    /// The file, for messages.
    name: String,
}

impl<R: Read> Rows<R> {
    /// Reads the header of a `len`-byte file and checks the length agrees with it.
    pub fn new(mut src: R, len: u64, format: Format) -> Result<Self, String> {
        let (dim, remaining, header) = match format {
            Format::Npy => {
                let (dim, rows, header) = npy_header(&mut src, len)?;
                (dim, Some(rows), header)
            }
            Format::Raw(dim) => {
                if dim == 0 || dim > u32::MAX as usize {
                    return Err(format!("a dimension of {dim} is not 1 to {}", u32::MAX));
                }
                let row = 4 * dim as u64;
                if !len.is_multiple_of(row) {
                    return Err(format!(
                        "{len} bytes are not whole rows of {dim} floats (row {} is incomplete)",
                        len / row
                    ));
                }
                (dim, Some(len / row), 0)
            }
            Format::Fvecs => (0, None, 0),
        };
        let mut rows = Rows {
            src,
            dim,
            remaining,
            pending: None,
            left: len - header,
            row: 0,
            bytes: Vec::new(),
            name: String::new(),
        };
        if let Format::Fvecs = format
            && rows.left > 0
        {
            let d = rows.fvecs_dim()?;
            rows.dim = d;
            rows.pending = Some(d);
        }
        Ok(rows)
    }

    /// Rows the file holds: exact for .npy and .f32, from the length for .fvecs.
    pub fn len_hint(&self) -> u64 {
        let unread = self.left + if self.pending.is_some() { 4 } else { 0 };
        self.remaining
            .unwrap_or(unread / (4 + 4 * self.dim as u64).max(1))
    }

    /// Reads the next row into `out`; `false` at the end of the file.
    pub fn next_into(&mut self, out: &mut Vec<f32>) -> Result<bool, String> {
        match self.next_row(out) {
            Ok(more) => Ok(more),
            Err(e) if self.name.is_empty() => Err(e),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    fn next_row(&mut self, out: &mut Vec<f32>) -> Result<bool, String> {
        let row = self.row;
        match &mut self.remaining {
            Some(0) => return Ok(false),
            Some(n) => *n -= 1,
            None if self.left == 0 && self.pending.is_none() => return Ok(false),
            None => {
                let d = match self.pending.take() {
                    Some(d) => d,
                    None => self.fvecs_dim()?,
                };
                if d != self.dim {
                    return Err(format!(
                        "row {row} has {d} dimensions, row 0 has {}",
                        self.dim
                    ));
                }
            }
        }
        self.take(4 * self.dim as u64, row)?;
        out.clear();
        out.extend(
            self.bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "row {row} has a non-finite value ({}) at column {i}",
                out[i]
            ));
        }
        self.row += 1;
        Ok(true)
    }

    /// Reads the dimension the next fvecs row declares.
    fn fvecs_dim(&mut self) -> Result<usize, String> {
        let row = self.row;
        if self.left < 4 {
            return Err(format!("truncated at row {row}"));
        }
        self.take(4, row)?;
        let d = i32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]);
        match usize::try_from(d) {
            Ok(d) if d > 0 => Ok(d),
            _ => Err(format!("row {row} declares dimension {d}")),
        }
    }

    /// Reads the next `n` bytes of the file into `self.bytes`.
    fn take(&mut self, n: u64, row: usize) -> Result<(), String> {
        if n > self.left {
            return Err(format!("truncated in row {row}"));
        }
        self.bytes.resize(n as usize, 0);
        self.src
            .read_exact(&mut self.bytes)
            .map_err(|e| format!("row {row}: {e}"))?;
        self.left -= n;
        Ok(())
    }
}

/// Reads a .npy header: (dim, rows, header bytes); the data must fill the rest.
fn npy_header(src: &mut impl Read, len: u64) -> Result<(usize, u64, u64), String> {
    let mut lead = [0u8; 12];
    let short = |_| "not a .npy file".to_string();
    src.read_exact(&mut lead[..10]).map_err(short)?;
    if &lead[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (hlen, start) = match lead[6] {
        1 => (u16::from_le_bytes([lead[8], lead[9]]) as u64, 10),
        2 | 3 => {
            src.read_exact(&mut lead[10..12])
                .map_err(|_| "truncated or unreadable .npy header".to_string())?;
            (
                u32::from_le_bytes([lead[8], lead[9], lead[10], lead[11]]) as u64,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    if start + hlen > len {
        return Err("truncated or unreadable .npy header".into());
    }
    let mut header = vec![0u8; hlen as usize];
    src.read_exact(&mut header)
        .map_err(|_| "truncated or unreadable .npy header".to_string())?;
    let header = std::str::from_utf8(&header).map_err(|_| "truncated or unreadable .npy header")?;
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
    let need = rows
        .checked_mul(dim)
        .and_then(|n| n.checked_mul(4))
        .ok_or(format!("shape ({rows}, {dim}) is too large"))? as u64;
    let body = len - start - hlen;
    if body < need {
        return Err(format!(
            "truncated: {rows} rows need {need} bytes of data, the file has {body} (row {} is incomplete)",
            body / (dim as u64).saturating_mul(4).max(1)
        ));
    }
    let rows = if dim == 0 { 0 } else { rows as u64 };
    Ok((dim, rows, start + hlen))
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

    /// Every row of an in-memory file, as `read` collects them.
    fn parse(b: &[u8], format: Format) -> Result<Vectors, String> {
        let mut rows = Rows::new(b, b.len() as u64, format)?;
        let (mut data, mut row) = (Vec::new(), Vec::new());
        while rows.next_into(&mut row)? {
            data.extend_from_slice(&row);
        }
        Ok(Vectors {
            dim: rows.dim,
            data,
        })
    }

    fn npy_with_header(header: &str, body: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn fvecs_rows(rows: &[&[f32]]) -> Vec<u8> {
        let mut b = Vec::new();
        for r in rows {
            b.extend_from_slice(&(r.len() as i32).to_le_bytes());
            b.extend(r.iter().flat_map(|x| x.to_le_bytes()));
        }
        b
    }

    #[test]
    fn every_format_reads_back_its_rows() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let npy = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }\n",
            &bytes,
        );
        let fv = fvecs_rows(&[&data[..4], &data[4..8], &data[8..]]);
        for (b, format) in [
            (&npy[..], Format::Npy),
            (&fv[..], Format::Fvecs),
            (&bytes[..], Format::Raw(4)),
        ] {
            let v = parse(b, format).unwrap();
            assert_eq!((v.dim, v.rows()), (4, 3));
            assert_eq!(v.data, data);
        }
        let rows = Rows::new(&fv[..], fv.len() as u64, Format::Fvecs).unwrap();
        assert_eq!(rows.len_hint(), 3);
    }

    #[test]
    fn written_files_read_back_in_every_format_empty_ones_too() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<f32> = (0..15).map(|i| i as f32 * -0.25).collect();
        for ext in ["npy", "fvecs", "f32"] {
            for rows in [0, 1, 5] {
                let path = tmp.path().join(format!("{rows}.{ext}"));
                let mut w = Writer::create(&path, 3, rows as u64).unwrap();
                for r in data.chunks(3).take(rows) {
                    w.row(r).unwrap();
                }
                w.finish().unwrap();
                let v = read(&path, Some(3)).unwrap();
                assert_eq!((v.rows(), &v.data[..]), (rows, &data[..rows * 3]), "{ext}");
                let e = Writer::create(&path, 3, 0).err().unwrap();
                assert!(e.contains("exists"), "{e}");
            }
            // The count announced is the count written.
            let path = tmp.path().join(format!("short.{ext}"));
            let mut w = Writer::create(&path, 3, 2).unwrap();
            w.row(&data[..3]).unwrap();
            assert!(w.finish().unwrap_err().contains("1 rows missing"));
            let path = tmp.path().join(format!("long.{ext}"));
            let mut w = Writer::create(&path, 3, 0).unwrap();
            assert!(w.row(&data[..3]).unwrap_err().contains("more rows"));
        }
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let huge = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }\n",
            &[0; 16],
        );
        assert!(parse(&huge, Format::Npy).unwrap_err().contains("too large"));
        let zero = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }\n",
            &[],
        );
        assert_eq!(parse(&zero, Format::Npy).map(|v| v.rows()).unwrap_or(0), 0);
        assert!(parse(b"\x93NUMPY\x01\x00\xff\xff", Format::Npy).is_err());
        assert!(parse(b"\x93NUMPY\x07\x00\x00\x00", Format::Npy).is_err());
        assert!(parse(&[0; 8], Format::Raw(usize::MAX)).is_err());
        let e = parse(&[0; 8], Format::Raw(0)).unwrap_err();
        assert!(e.contains("dimension of 0"), "{e}");
        assert!(parse(&[0xff, 0xff, 0xff, 0x7f], Format::Fvecs).is_err());
        let e = parse(&fvecs_rows(&[&[1.0; 2], &[1.0; 3]]), Format::Fvecs).unwrap_err();
        assert!(e.contains("row 1 has 3 dimensions"), "{e}");
        // Every prefix of a valid file is an error or a shorter file, never a panic.
        let good = npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n",
            &[0; 16],
        );
        let fv = fvecs_rows(&[&[1.0; 2], &[2.0; 2]]);
        for n in 0..good.len() {
            let _ = parse(&good[..n], Format::Npy);
        }
        for n in 0..fv.len() {
            let r = parse(&fv[..n], Format::Fvecs);
            assert!(r.is_err() || n % 12 == 0, "prefix {n}: {r:?}");
        }
    }
}
