//! The file-level fuzz harness shared by the `open_dir` and `records` fuzz targets (`fuzz/`)
//! and the corpus replay test (`tests/fuzz_replay.rs`): a small valid database whose files
//! the input patches, then every read the engine offers. Any error is fine; a panic, a hang
//! or an out-of-bounds read is a bug.

use std::path::Path;
use std::sync::OnceLock;

use engram_core::quant::QuantScheme;
use engram_core::{
    ConceptInput, Cue, Engram, EpisodeInput, Filter, Options, RecallParams, TensorInput, Ttl,
};

pub const DIM: usize = 8;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        int8_mirror: Some(true),
        concept_cache_entries: 4,
        strength_cache_entries: 4,
        ..Options::default()
    }
}

/// The template database's files, by name, built once per process: every record kind and
/// every op kind is present (episodes with keys and a time to live, concepts with a second
/// version, bindings, a delete, networks in all four schemes, an agent default, accesses).
pub fn template() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Engram::open(dir.path(), opts()).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.set_agent_ttl(3, Some(1 << 60)).unwrap();
        let mut eps = Vec::new();
        for i in 0..6u8 {
            let v: Vec<f32> = (0..DIM).map(|d| f32::from(i) + d as f32 * 0.5).collect();
            let key = [b'k', i];
            let input = EpisodeInput {
                agent: u64::from(i % 4),
                timestamp: i64::from(i),
                embedding: &v,
                payload: &[i; 5],
                key: (i % 2 == 0).then_some(&key[..]),
            };
            let ttl = if i == 5 {
                Ttl::At(i64::MAX - 1)
            } else {
                Ttl::AgentDefault
            };
            eps.push(tx.insert_episode_with_ttl(&input, ttl).unwrap());
        }
        let c0 = tx
            .insert_concept(&ConceptInput {
                centroid: &[1.0; DIM],
                label: "zero",
            })
            .unwrap();
        let c1 = tx
            .insert_concept(&ConceptInput {
                centroid: &[0.5; DIM],
                label: "one",
            })
            .unwrap();
        for (i, &e) in eps.iter().enumerate() {
            tx.bind(e, if i % 2 == 0 { c0 } else { c1 }, 0.25 + i as f32 / 10.0)
                .unwrap();
        }
        let w: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
        let importance: Vec<f32> = (0..64).map(|i| (i % 5) as f32).collect();
        for (n, scheme) in [
            QuantScheme::Q8,
            QuantScheme::Q4,
            QuantScheme::F16,
            QuantScheme::Mixed {
                f16: 0.25,
                q8: 0.25,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let t = TensorInput {
                name: "w",
                shape: &[2, 32],
                data: &w,
                importance: Some(&importance),
            };
            tx.put_network(n as u64, "policy", &[t], scheme).unwrap();
        }
        tx.commit().unwrap();
        // A second commit with in-place ops (delete, head moves, new concept version) and
        // recorded accesses, so commit records carry every op kind.
        let snap = db.begin_read().unwrap();
        let cue = Cue {
            embedding: &[1.0; DIM],
            filter: Filter::default(),
        };
        let params = RecallParams {
            record_access: true,
            ..RecallParams::default()
        };
        snap.recall(&cue, &params).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.delete_episode(eps[1]).unwrap();
        tx.update_concept(c1, &[0.25; DIM], Some("one'")).unwrap();
        tx.bind(eps[0], c1, 0.9).unwrap();
        tx.delete_network(3, "policy").unwrap();
        tx.commit().unwrap();
        // Read with the handle open, as a `kill -9` leaves them: the second commit lives in
        // the write-ahead log (the first, which created the key index, wrote a record), so
        // opens replay it. The log's zeros past its entries are left out.
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                let mut bytes = std::fs::read(e.path()).unwrap();
                if name == "wal" {
                    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    bytes.truncate(used.next_multiple_of(4096));
                }
                (name, bytes)
            })
            .filter(|(name, _)| name != "LOCK")
            .collect();
        drop(db);
        assert!(
            files.iter().any(|(n, b)| n == "wal" && !b.is_empty()),
            "the template holds a logged commit"
        );
        files.sort();
        files
    })
}

/// Recomputes the checksums a patch would otherwise break at the door (manifest, commit
/// records, head slots, slot archives, catalog records), so the fuzzer reaches the
/// structural validation behind them.
fn fix_checksums(name: &str, b: &mut [u8]) {
    let put = |b: &mut [u8], at: usize, crc: u32| b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    match name {
        "MANIFEST" if b.len() >= 512 => {
            let crc = crc32c::crc32c(&b[..508]);
            put(b, 508, crc);
        }
        "commit.0" | "commit.1" if b.len() >= 16 => {
            let body = u64::from_le_bytes(b[8..16].try_into().unwrap());
            if let Some(end) = usize::try_from(body).ok().and_then(|n| n.checked_add(16))
                && end <= b.len()
            {
                let crc = crc32c::crc32c(&b[8..end]);
                put(b, 4, crc);
            }
        }
        "wal" => {
            // Each entry starts at a multiple of 4,096 with its magic.
            for at in (0..b.len()).step_by(4096) {
                if b[at..].starts_with(b"EGWL") && b.len() >= at + 16 {
                    let body = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap());
                    if let Some(end) = usize::try_from(body)
                        .ok()
                        .and_then(|n| n.checked_add(at + 16))
                        && end <= b.len()
                    {
                        let crc = crc32c::crc32c(&b[at + 8..end]);
                        put(b, at + 4, crc);
                    }
                }
            }
        }
        "head" => {
            for slot in b.chunks_mut(256) {
                if slot.len() == 256 {
                    let crc = crc32c::crc32c(&slot[8..]);
                    put(slot, 4, crc);
                }
            }
        }
        _ if name.ends_with(".bnd") => {
            for record in b.chunks_exact_mut(48) {
                let crc = crc32c::crc32c(&record[..36]);
                put(record, 36, crc);
            }
        }
        _ if name.ends_with(".eps") || name.ends_with(".con") => {
            // 8-d: episode archive 4·8 + 80 bytes, concept 4·8 + 64; strides 128.
            let archive = if name.ends_with(".eps") { 112 } else { 96 };
            for slot in b.chunks_mut(128) {
                if slot.len() >= archive + 4 {
                    let crc = crc32c::crc32c(&slot[..archive]);
                    put(slot, archive, crc);
                }
            }
        }
        _ if name.ends_with(".nets") => {
            let mut at = 0;
            while at + 8 <= b.len() {
                let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
                let Some(end) = (at + 8).checked_add(len).filter(|&e| e <= b.len()) else {
                    break;
                };
                let crc = crc32c::crc32c(&b[at + 8..end]);
                put(b, at + 4, crc);
                at = end;
            }
        }
        _ => {}
    }
}

/// `open_dir`: the input rewrites the template's files. Byte 0: bit 0 = recompute checksums
/// afterwards. Then patches of `file u8, op u8, offset u16 LE, len u8, bytes[len]`: op % 4 =
/// 0 overwrite at offset, 1 truncate to offset, 2 append, 3 replace the whole file.
pub fn open_dir(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut files = template().to_vec();
    let mut touched = vec![false; files.len()];
    while rest.len() >= 5 {
        let f = rest[0] as usize % files.len();
        let op = rest[1] % 4;
        let offset = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let len = (rest[4] as usize).min(rest.len() - 5);
        let bytes = &rest[5..5 + len];
        rest = &rest[5 + len..];
        let file = &mut files[f].1;
        match op {
            0 => {
                let end = offset.min(file.len()) + bytes.len();
                if file.len() < end {
                    file.resize(end, 0);
                }
                let start = offset.min(file.len() - bytes.len());
                file[start..start + bytes.len()].copy_from_slice(bytes);
            }
            1 => file.truncate(offset),
            2 => file.extend_from_slice(bytes),
            _ => *file = bytes.to_vec(),
        }
        touched[f] = true;
    }
    if flags & 1 == 1 {
        for ((name, bytes), _) in files.iter_mut().zip(&touched).filter(|(_, t)| **t) {
            fix_checksums(name, bytes);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    exercise(dir.path());
}

/// `records`: the input replaces one record of the template in place (same length, so the
/// files still agree on sizes) and its checksum is recomputed, so the bytes reach rkyv's
/// bytecheck and the engine's own field checks. Byte 0 picks the file among those holding
/// records, byte 1 the record, the rest are its new bytes (repeated to fill it).
pub fn records(data: &[u8]) {
    let [which, index, bytes @ ..] = data else {
        return;
    };
    if bytes.is_empty() {
        return;
    }
    // (file suffix, record size): slots, table entries, bindings, int8 rows, pages, commits,
    // log entries.
    const KINDS: [(&str, usize); 9] = [
        (".eps", 128),
        (".con", 128),
        (".etab", 48),
        (".ctab", 48),
        (".bnd", 48),
        (".i8", 64),
        (".pages", 4096),
        ("commit.", 0),
        ("wal", 4096),
    ];
    let (suffix, size) = KINDS[*which as usize % KINDS.len()];
    let mut files = template().to_vec();
    let Some((name, file)) = files
        .iter_mut()
        .filter(|(n, b)| n.contains(suffix) && !b.is_empty())
        .max_by_key(|(n, _)| n.clone())
    else {
        return;
    };
    let size = if size == 0 { file.len() } else { size };
    let records = file.len() / size;
    if records == 0 {
        return;
    }
    let start = (*index as usize % records) * size;
    // Ops live after the commit record's and log entry's headers: keep the header (an
    // entry's base too), rewrite the rest.
    let from = match suffix {
        "commit." => start + 16,
        "wal" => start + 24,
        _ => start,
    };
    for (dst, src) in file[from..start + size]
        .iter_mut()
        .zip(bytes.iter().cycle())
    {
        *dst = *src;
    }
    fix_checksums(&name.clone(), file);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    exercise(dir.path());
}

/// Opens `dir` read-only and read-write, and reads everything through both.
pub fn exercise(dir: &Path) {
    let ro = Options {
        read_only: true,
        ..opts()
    };
    if let Ok(db) = Engram::open(dir, ro) {
        let _ = read_all(&db);
    }
    if let Ok(db) = Engram::open(dir, opts())
        && read_all(&db).is_ok()
        && db.compact().is_ok()
    {
        let _ = read_all(&db);
    }
}

fn read_all(db: &Engram) -> engram_core::Result<()> {
    let snap = db.begin_read()?;
    let verified = snap.verify();
    for id in snap.episode_ids()? {
        if let Some(ep) = snap.episode(id)? {
            let _ = (
                ep.embedding().len(),
                ep.payload(),
                ep.key(),
                ep.expires_at(),
            );
            let _ = (ep.last_access(), ep.access_count());
        }
        for b in snap.bindings_of_episode(id)? {
            let _ = snap.binding_strength(id, b.concept);
        }
        let _ = snap.episode_fan_count(id);
    }
    for id in snap.concept_ids()? {
        if let Some(c) = snap.concept(id)? {
            let _ = (c.centroid().len(), c.label(), c.members(), c.coherence());
        }
        let _ = snap.lookup_concept(id);
        let _ = snap.bindings_of_concept(id);
        let _ = snap.concept_fan_count(id);
    }
    let q = [0.5f32; DIM];
    let _ = snap.search(&q, 5, &Filter::default());
    let _ = snap.search_int8(&q, 5, &Filter::default(), 5);
    let _ = snap.search_concepts(&q, 2);
    let cue = Cue {
        embedding: &q,
        filter: Filter::default(),
    };
    let _ = snap.recall(&cue, &RecallParams::default());
    let _ = snap.episode_by_key(b"k\x02");
    for (agent, name) in snap.networks() {
        let Ok(Some(net)) = snap.network(agent, &name) else {
            continue;
        };
        for t in net.tensors() {
            let Ok(t) = t else { continue };
            let (rows, cols) = (t.blocks.rows(), t.blocks.cols());
            let Some(n) = rows.checked_mul(cols).filter(|&n| n <= 1 << 20) else {
                continue;
            };
            let mut out = vec![0f32; n];
            let _ = t.dequantize_into(&mut out);
            let x = vec![1f32; cols];
            let mut y = vec![0f32; rows];
            let _ = t.matvec(&x, &mut y);
        }
    }
    verified.map(|_| ())
}
