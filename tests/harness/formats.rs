//! Older on-disk formats, made from this build's directories, for the upgrade tests.

/// Rewrites a closed database this build wrote, with no table trimmed, as format `version`
/// (7 to 10) wrote it: no write-ahead log (a closed database's commits are all in its
/// newest commit record); commit records with the old magic; for formats 7 to 9, with the
/// version state without the words that format lacks (0 here) in them and in both head
/// slots, and 64-byte binding records; that version in the MANIFEST. (Checked once against
/// the format-7 and format-8 builds: each verifies and reads such a directory.)
pub fn downgrade(dir: &std::path::Path, version: u32) {
    std::fs::remove_file(dir.join("wal")).unwrap();
    if version == 10 {
        for name in ["commit.0", "commit.1"] {
            let path = dir.join(name);
            let mut b = std::fs::read(&path).unwrap();
            if b.len() >= 16 {
                b[2] = 10; // the magic; the crc covers bytes 8.. only
                std::fs::write(&path, b).unwrap();
            }
        }
        set_manifest_version(dir, version);
        return;
    }
    const STATE: usize = 31 * 8;
    let old_state = match version {
        7 => 27 * 8,
        8 => 29 * 8,
        _ => STATE,
    };
    let crc = |b: &[u8]| crc32c::crc32c(b).to_le_bytes();
    for name in ["commit.0", "commit.1"] {
        let path = dir.join(name);
        let b = std::fs::read(&path).unwrap();
        if b.len() < 16 {
            continue;
        }
        let body = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
        assert!(
            b[16 + old_state..16 + STATE].iter().all(|&x| x == 0),
            "tables trimmed"
        );
        let mut out = b"EGCR".to_vec();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&((body - (STATE - old_state)) as u64).to_le_bytes());
        out.extend_from_slice(&b[16..16 + old_state]);
        out.extend_from_slice(&b[16 + STATE..16 + body]);
        let c = crc(&out[8..]);
        out[4..8].copy_from_slice(&c);
        std::fs::write(&path, out).unwrap();
    }
    let head = std::fs::read(dir.join("head")).unwrap();
    let mut out = vec![0u8; head.len()];
    for slot in 0..head.len().div_ceil(256) {
        let s = &head[slot * 256..];
        let mut old = s[..8].to_vec();
        old.extend_from_slice(&s[8..8 + old_state]);
        let c = crc(&old[8..]);
        old[4..8].copy_from_slice(&c);
        out[slot * 256..slot * 256 + old.len()].copy_from_slice(&old);
    }
    std::fs::write(dir.join("head"), out).unwrap();
    // Binding records of formats 7 to 9: 64 bytes, with a created_txn word (0 here: this
    // build never reads it) and a reserved one.
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "bnd") {
            let new = std::fs::read(&path).unwrap();
            let mut old = Vec::new();
            for r in new.chunks_exact(48) {
                let mut o = [0u8; 64];
                o[0..16].copy_from_slice(&r[0..16]);
                o[24..44].copy_from_slice(&r[16..36]);
                let c = crc(&o[..44]);
                o[44..48].copy_from_slice(&c);
                o[48..56].copy_from_slice(&r[40..48]);
                old.extend_from_slice(&o);
            }
            std::fs::write(&path, old).unwrap();
        }
    }
    set_manifest_version(dir, version);
}

fn set_manifest_version(dir: &std::path::Path, version: u32) {
    let mut m = std::fs::read(dir.join("MANIFEST")).unwrap();
    m[8..12].copy_from_slice(&version.to_le_bytes());
    let c = crc32c::crc32c(&m[..508]).to_le_bytes();
    m[508..].copy_from_slice(&c);
    std::fs::write(dir.join("MANIFEST"), m).unwrap();
}

pub fn format_of(dir: &std::path::Path) -> u32 {
    let m = std::fs::read(dir.join("MANIFEST")).unwrap();
    u32::from_le_bytes(m[8..12].try_into().unwrap())
}

/// A copy of the flat directory `from` at `to`, for one trial on the same old files.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}
