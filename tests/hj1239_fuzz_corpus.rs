//! Replays the cargo-fuzz seed corpus and regression inputs through the shared harness, so every
//! input the fuzzer ever needed stays a regression test on stable `cargo test`.

use std::path::Path;

fn replay_dir(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.expect("readable dir entry").path();
        if path.is_file() {
            let data = std::fs::read(&path).expect("readable corpus file");
            let result = std::panic::catch_unwind(|| smogwatch::hj1239::fuzz_harness(&data));
            assert!(result.is_ok(), "harness failed on {}", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn replay_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = replay_dir(&root.join("corpus/frame_decoder"));
    assert!(corpus >= 10, "seed corpus missing ({corpus} files)");
    replay_dir(&root.join("regressions/frame_decoder"));
}
