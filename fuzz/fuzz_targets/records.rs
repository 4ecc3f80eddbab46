//! One record (slot, table entry, binding, int8 row, page, commit ops) replaced by the
//! input with its checksum fixed, so the bytes reach the structural checks behind it.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/harness/files.rs"]
mod files;

libfuzzer_sys::fuzz_target!(|data: &[u8]| files::records(data));
