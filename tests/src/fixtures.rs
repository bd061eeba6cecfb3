//! The runner files, their limits and the fixtures of spec 6.

/// The four files of a runner storage (spec 2).
pub const START: &str = "runner-installation-start.timestamp";
pub const INSTALLED: &str = "runner-installed.timestamp";
pub const PRE_JOB: &str = "pre-job-metrics.json";
pub const POST_JOB: &str = "post-job-metrics.json";
pub const ALL_FILES: [&str; 4] = [START, INSTALLED, PRE_JOB, POST_JOB];

/// `FILE_SIZE_BYTES_LIMIT` of spec 2.
pub const FILE_SIZE_LIMIT: usize = 1024;

/// Fixture F of spec 6, file by file.
pub const F_START: &str = "1.0";
pub const F_INSTALLED: &str = "2.0";
pub const F_PRE_JOB: &str = r#"{"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "workflow_run_id1", "repository": "org1/repository1", "event": "push"}"#;
pub const F_POST_JOB: &str = r#"{"timestamp": 3.0, "status": "normal", "status_info": null}"#;

/// A complete, valid storage: `(file, content)` for all four files.
pub fn valid_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (START, b"1700000000.5\n".to_vec()),
        (INSTALLED, b"1700000060\n".to_vec()),
        (
            PRE_JOB,
            br#"{"workflow": "ci", "repository": "canonical/example", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}"#
                .to_vec(),
        ),
        (POST_JOB, br#"{"timestamp": 1700000400, "status": "abnormal", "status_info": {"code": 1}}"#.to_vec()),
    ]
}
