//! The fuzz targets' properties (`fuzz/src/checks.rs`), run in CI on the
//! committed seed corpus plus a bounded number of deterministic mutations of
//! each seed. The real fuzzing runs with `cargo +nightly fuzz run <target>`
//! (see docs/security.md); this keeps its properties checked on every test
//! run without nightly.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

/// Mutations per seed: enough to explore around each seed, bounded in time.
const MUTATIONS_PER_SEED: usize = 300;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the {target} corpus has only {} seeds", seeds.len());
    seeds
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, inserts, deletes and duplicates bytes, like a fuzzer's mutator.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"-",
        b"e",
        b".",
        b"\xef\xbb\xbf",
        b"\0",
        b"1e400",
        b"NaN",
        b"\\ud800",
    ];
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            3 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(16)).min(data.len());
                let copy = data[start..end].to_vec();
                data.splice(at..at, copy);
            }
            _ => data.insert(at, rng.next() as u8),
        }
    }
    data
}

fn run(target: &str, check: fn(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for seed in corpus(target) {
        check(&seed);
        for _ in 0..MUTATIONS_PER_SEED {
            let input = mutate(&seed, &mut rng);
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{target}: property failed for input {:?}", String::from_utf8_lossy(&input));
        }
    }
}

#[test]
fn metrics_files_corpus_and_mutations() {
    run("metrics_files", checks::check_metrics_file);
}

#[test]
fn strict_json_corpus_and_mutations() {
    run("strict_json", checks::check_strict_json);
}

#[test]
fn render_event_corpus_and_mutations() {
    run("render_event", checks::check_render_event);
}

#[test]
fn tar_stream_corpus_and_mutations() {
    run("tar_stream", checks::check_tar_stream);
}

/// The tar seeds (made with Python's `tarfile` in GNU, ustar and pax
/// formats) end as their names say: the valid streams (a pax-format stream
/// that needs no extension header is plain ustar) and the bare or unknown
/// names give their files; every other one is corrupt (`pax_header`: the
/// extension header a non-ASCII name needs).
#[test]
fn tar_stream_seeds_end_as_their_names_say() {
    use runner_metrics_core::tar::{read_metrics_tar, TarLimits};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tar_stream");
    let accepted = ["valid_gnu", "valid_ustar", "valid_pax", "bare_names", "unknown_files", "empty"];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let result = read_metrics_tar(&std::fs::read(&path).unwrap(), &TarLimits::default());
        assert_eq!(result.is_ok(), accepted.contains(&name.as_str()), "{name}: {result:?}");
    }
}
