//! Feeds arbitrary bytes into the HJ 1239 frame decoder (several chunkings) and every message
//! decoder. The harness lives in the library so `tests/hj1239_fuzz_corpus.rs` replays the corpus
//! on every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    smogwatch::hj1239::fuzz_harness(data);
});
