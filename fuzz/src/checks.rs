//! Properties the fuzz targets check, shared with the bounded corpus run in
//! `core/tests/fuzz_corpus.rs` (which includes this file), so CI checks
//! the same properties on every seed without needing nightly.
//!
//! Beyond "never panics": whatever the parsers accept must satisfy the
//! spec's rules, and every rendered line must be one line of ASCII JSON that
//! reads back to the values it was rendered from.

use runner_metrics_core::model::{
    CodeInformation, Event, JobConclusion, PostJobStatus, RunnerInstalled, RunnerStart, RunnerStop,
};
use runner_metrics_core::{json, parse, render, tar, FILE_SIZE_BYTES_LIMIT};

fn assert_time(what: &str, value: f64) {
    assert!(value.is_finite() && value >= 0.0, "{what} accepted as {value}");
}

/// The first byte picks the file kind, the rest is the file's content.
pub fn check_metrics_file(data: &[u8]) {
    let Some((&selector, content)) = data.split_first() else { return };
    let oversized = content.len() > FILE_SIZE_BYTES_LIMIT;
    match selector % 3 {
        0 => {
            if let Ok(Some(t)) = parse::parse_timestamp(content) {
                assert!(!oversized);
                assert_time("timestamp file", t);
            }
        }
        1 => {
            if let Ok(Some(pre)) = parse::parse_pre_job(content) {
                assert!(!oversized);
                assert_time("pre-job timestamp", pre.timestamp);
                if let Some(repo) = &pre.repository {
                    // Some '/' with at least one character on each side
                    // (the keeper re-checks the same rule: see keeper/src/check.rs).
                    let ok = repo.char_indices().any(|(i, c)| c == '/' && i > 0 && i + 1 < repo.len());
                    assert!(ok, "accepted repository {repo:?}");
                }
                let text = std::str::from_utf8(content).expect("accepted file is UTF-8");
                assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "accepted file is JSON");
            }
        }
        _ => {
            if let Ok(Some(post)) = parse::parse_post_job(content) {
                assert!(!oversized);
                assert_time("post-job timestamp", post.timestamp);
                let text = std::str::from_utf8(content).expect("accepted file is UTF-8");
                let value: serde_json::Value = serde_json::from_str(text).expect("accepted file is JSON");
                assert_eq!(value["status"].as_str(), Some(post.status.as_str()));
            }
        }
    }
}

/// Whatever the strict parser accepts, serde_json accepts too (strict means
/// stricter, never different).
pub fn check_strict_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if json::parse_strict(text).is_ok() {
        let mut de = serde_json::Deserializer::from_str(text);
        de.disable_recursion_limit();
        let plain = serde::Deserialize::deserialize(&mut de).map(|_: serde_json::Value| ()).and_then(|_| de.end());
        assert!(plain.is_ok(), "strict parser accepted what serde_json rejects: {text:?}");
    }
}

/// A small reader of fuzz bytes: strings, floats and choices.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn string(&mut self) -> String {
        let len = usize::from(self.byte() % 24);
        let take = len.min(self.0.len());
        let (head, rest) = self.0.split_at(take);
        self.0 = rest;
        String::from_utf8_lossy(head).into_owned()
    }

    fn time(&mut self) -> f64 {
        let mut raw = [0u8; 8];
        for b in &mut raw {
            *b = self.byte();
        }
        let value = f64::from_le_bytes(raw).abs();
        if value.is_finite() {
            value
        } else {
            f64::from(self.byte())
        }
    }
}

/// Renders an event built from the bytes and reads the line back.
pub fn check_render_event(data: &[u8]) {
    let mut b = Bytes(data);
    let statuses = [
        PostJobStatus::Normal,
        PostJobStatus::Abnormal,
        PostJobStatus::RepoPolicyCheckFailure,
        PostJobStatus::ExternalContributorCheckFailure,
    ];
    let event = match b.byte() % 3 {
        0 => Event::RunnerInstalled(RunnerInstalled { timestamp: b.time(), flavor: b.string(), duration: b.time() }),
        1 => Event::RunnerStart(RunnerStart {
            timestamp: b.time(),
            flavor: b.string(),
            workflow: b.string(),
            repo: b.string(),
            github_event: b.string(),
            idle: b.time(),
            queue_duration: (b.byte() % 2 == 0).then(|| b.time()),
        }),
        _ => Event::RunnerStop(RunnerStop {
            timestamp: b.time(),
            flavor: b.string(),
            workflow: b.string(),
            repo: b.string(),
            github_event: b.string(),
            status: statuses[usize::from(b.byte() % 4)],
            status_info: (b.byte() % 2 == 0).then(|| CodeInformation {
                code: i64::from_le_bytes([
                    b.byte(),
                    b.byte(),
                    b.byte(),
                    b.byte(),
                    b.byte(),
                    b.byte(),
                    b.byte(),
                    b.byte(),
                ]),
            }),
            job_duration: b.time(),
            job_conclusion: (b.byte() % 2 == 0).then_some(JobConclusion::TimedOut),
        }),
    };
    let line = render::render_event(&event);
    assert!(line.is_ascii() && !line.contains('\n') && !line.contains('\r'), "not one ASCII line: {line:?}");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(value["event"].as_str(), Some(event.kind()));
    let (timestamp, flavor) = match &event {
        Event::RunnerInstalled(e) => (e.timestamp, &e.flavor),
        Event::RunnerStart(e) => (e.timestamp, &e.flavor),
        Event::RunnerStop(e) => (e.timestamp, &e.flavor),
    };
    assert_eq!(value["timestamp"].as_f64(), Some(timestamp), "{line}");
    assert_eq!(value["flavor"].as_str(), Some(flavor.as_str()), "{line}");
    if let Event::RunnerStop(e) = &event {
        assert_eq!(value["workflow"].as_str(), Some(e.workflow.as_str()));
        assert_eq!(value["status"].as_str(), Some(e.status.as_str()));
        assert_eq!(value["status_info"]["code"].as_i64(), e.status_info.map(|i| i.code));
    }
}

/// A pulled tar stream (spec 9): never a panic; what is accepted is at most
/// the file limit each, and bytes that were in the stream.
pub fn check_tar_stream(data: &[u8]) {
    if let Ok(files) = tar::read_metrics_tar(data, &tar::TarLimits::default()) {
        for file in [&files.installed, &files.pre_job, &files.post_job].into_iter().flatten() {
            assert!(file.len() <= FILE_SIZE_BYTES_LIMIT, "accepted a {}-byte file", file.len());
            assert!(file.is_empty() || data.windows(file.len()).any(|w| w == file.as_slice()), "invented bytes");
        }
    }
}
