//! A database directory whose files the input rewrites, opened and read every way.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/harness/files.rs"]
mod files;

libfuzzer_sys::fuzz_target!(|data: &[u8]| files::open_dir(data));
