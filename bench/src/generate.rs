//! A deterministic storage root: the same seed and N give the same names and
//! the same bytes, so every contender gets an identical copy.
//!
//! The mix follows the issue: about 80% complete runners, 10% without a
//! post-job file, 5% without an installed timestamp (no data), 5% corrupt
//! (oversized, invalid JSON, wrong types, in turn).

use std::fs;
use std::io;
use std::path::Path;

/// SplitMix64: tiny, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// What kind of storage one runner left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Complete,
    NoPostJob,
    NoInstalled,
    Oversized,
    InvalidJson,
    WrongTypes,
}

impl Kind {
    /// Storages of this kind that the collect pipeline turns into events.
    pub fn extracted(self) -> bool {
        matches!(self, Kind::Complete | Kind::NoPostJob)
    }
    pub fn corrupt(self) -> bool {
        matches!(self, Kind::Oversized | Kind::InvalidJson | Kind::WrongTypes)
    }
}

/// What was generated, to check every contender saw the same root.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    pub storages: usize,
    pub files: usize,
    pub bytes: u64,
    pub extracted: usize,
    pub no_data: usize,
    pub quarantined: usize,
    /// FNV-1a over every path and content, in generation order.
    pub digest: u64,
}

struct Fnv(u64);

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

const STATUSES: [&str; 4] = ["normal", "abnormal", "repo-policy-check-failure", "external-contributor-check-failure"];
const EVENTS: [&str; 4] = ["push", "pull_request", "schedule", "workflow_dispatch"];

/// Writes `n` runner storages into `root` (which must exist and be empty).
pub fn generate(root: &Path, n: usize, seed: u64) -> io::Result<Generated> {
    let mut rng = Rng::new(seed);
    let mut out = Generated::default();
    let mut digest = Fnv(0xCBF2_9CE4_8422_2325);
    let mut corrupt_turn = 0u32;
    for i in 0..n {
        let roll = rng.below(100);
        let kind = match roll {
            0..=79 => Kind::Complete,
            80..=89 => Kind::NoPostJob,
            90..=94 => Kind::NoInstalled,
            _ => {
                corrupt_turn += 1;
                [Kind::Oversized, Kind::InvalidJson, Kind::WrongTypes][(corrupt_turn % 3) as usize]
            }
        };
        // `<prefix>-<n|r>-<12 hex>` as in practice; the index keeps it unique.
        let name = format!("small-n-{i:05x}{:07x}", rng.below(1 << 28));
        let files = storage_files(&mut rng, kind, i);
        let dir = root.join(&name);
        fs::create_dir(&dir)?;
        digest.add(name.as_bytes());
        for (file, content) in &files {
            fs::write(dir.join(file), content)?;
            digest.add(file.as_bytes());
            digest.add(content);
            out.files += 1;
            out.bytes += content.len() as u64;
        }
        out.storages += 1;
        if kind.extracted() {
            out.extracted += 1;
        } else if kind.corrupt() {
            out.quarantined += 1;
        } else {
            out.no_data += 1;
        }
    }
    out.digest = digest.0;
    Ok(out)
}

/// The files of one storage, in a fixed order.
fn storage_files(rng: &mut Rng, kind: Kind, i: usize) -> Vec<(&'static str, Vec<u8>)> {
    let start = 1_700_000_000 + rng.below(10_000_000);
    let installed = start + 30 + rng.below(300);
    let pre = installed + rng.below(3_600);
    let post = pre + 10 + rng.below(7_200);
    let mut files =
        vec![("runner-installation-start.timestamp", format!("{start}.{:06}", rng.below(1_000_000)).into_bytes())];
    if kind != Kind::NoInstalled {
        files.push(("runner-installed.timestamp", format!("{installed}\n").into_bytes()));
    }
    let event = EVENTS[rng.below(4) as usize];
    let pre_job = format!(
        r#"{{"workflow": "ci-{}", "repository": "canonical/repo-{}", "event": "{event}", "timestamp": {pre}, "workflow_run_id": "{}"}}"#,
        rng.below(50),
        rng.below(500),
        10_000_000_000u64 + i as u64
    );
    let status = STATUSES[rng.below(4) as usize];
    let post_job = match status {
        "normal" => format!(r#"{{"timestamp": {post}, "status": "normal"}}"#),
        "abnormal" => format!(
            r#"{{"timestamp": {post}, "status": "abnormal", "status_info": {{"code": {}}}}}"#,
            1 + rng.below(254)
        ),
        other => format!(r#"{{"timestamp": {post}, "status": "{other}", "status_info": {{"code": 403}}}}"#),
    };
    match kind {
        Kind::Complete | Kind::NoInstalled => {
            files.push(("pre-job-metrics.json", pre_job.into_bytes()));
            files.push(("post-job-metrics.json", post_job.into_bytes()));
        }
        Kind::NoPostJob => files.push(("pre-job-metrics.json", pre_job.into_bytes())),
        Kind::Oversized => {
            // Valid JSON, but 2 KiB: over the 1024-byte limit.
            let padding = "x".repeat(2048);
            files.push((
                "pre-job-metrics.json",
                format!(r#"{{"workflow": "{padding}", "event": "push"}}"#).into_bytes(),
            ));
            files.push(("post-job-metrics.json", post_job.into_bytes()));
        }
        Kind::InvalidJson => {
            files.push(("pre-job-metrics.json", pre_job.into_bytes()));
            files.push(("post-job-metrics.json", format!(r#"{{"timestamp": {post}, "status": "normal""#).into_bytes()));
        }
        Kind::WrongTypes => {
            let wrong = format!(
                r#"{{"workflow": "ci", "repository": "canonical/repo", "event": ["push"], "timestamp": true, "workflow_run_id": {{"id": {i}}}}}"#
            );
            files.push(("pre-job-metrics.json", wrong.into_bytes()));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_the_mix_is_roughly_right() {
        let a = std::env::temp_dir().join(format!("rm-bench-gen-a-{}", std::process::id()));
        let b = std::env::temp_dir().join(format!("rm-bench-gen-b-{}", std::process::id()));
        for dir in [&a, &b] {
            let _ = fs::remove_dir_all(dir);
            fs::create_dir_all(dir).unwrap();
        }
        let ga = generate(&a, 400, 7).unwrap();
        let gb = generate(&b, 400, 7).unwrap();
        assert_eq!(ga, gb);
        assert_eq!(ga.storages, 400);
        assert!((300..360).contains(&ga.extracted), "{ga:?}");
        assert!((5..40).contains(&ga.quarantined), "{ga:?}");
        let gc = generate(&std::env::temp_dir().join("unused-never-created"), 0, 8).unwrap();
        assert_eq!(gc.storages, 0);
        for dir in [&a, &b] {
            fs::remove_dir_all(dir).unwrap();
        }
    }
}
