//! Random API operation sequences (three bytes a step) against the in-memory model.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/harness/model.rs"]
mod model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| model::run(model::steps_from_bytes(data)));
