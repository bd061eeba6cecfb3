//! The model: the WIT types of `wit/0.4.0` (`github-runner:metrics/types`),
//! as wit-bindgen generates them, used as they are by the extraction, the
//! events, the renderer, the reports and the pipeline. Nothing mirrors
//! them: adding a case to a WIT enum touches the WIT and its uses only.
//!
//! Generated once for every crate that speaks them: the guest's components
//! (`component.rs`) and the keeper (`keeper/`) map their worlds' `types` to
//! this module. Types only: this compiles natively too. Below are the few
//! spellings and defaults the WIT cannot say.

/// wit-bindgen output for a world that only imports `types`.
pub mod generated {
    wit_bindgen::generate!({
        path: "../wit/0.4.0",
        inline: "package github-runner:shared-types; world types { import github-runner:metrics/types@0.4.0; }",
        world: "github-runner:shared-types/types",
        generate_all,
        additional_derives: [PartialEq],
        // The command component writes its reports as JSON lines.
        additional_type_attributes: {
            "github-runner:metrics/types@0.4.0/outcome-kind": [#[derive(serde::Serialize)] #[serde(rename_all = "kebab-case")]],
            "github-runner:metrics/types@0.4.0/fs-error": [#[derive(serde::Serialize)]],
            "github-runner:metrics/types@0.4.0/fs-operation": [#[derive(serde::Serialize)] #[serde(rename_all = "kebab-case")]],
            "github-runner:metrics/types@0.4.0/fs-error-code": [#[derive(serde::Serialize)] #[serde(rename_all = "kebab-case")]],
        },
    });
}

pub use generated::github_runner::metrics::types::*;

/// Every case of an enum, in WIT order, and its kebab-case spelling: the
/// one table each spelling is read from and written by.
macro_rules! spelled {
    ($ty:ident { $($case:ident => $text:literal,)* }) => {
        impl $ty {
            /// Every case, in WIT order.
            pub const ALL: &'static [$ty] = &[$($ty::$case),*];

            /// The spelling used in files, event lines, reports and the WIT.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$case => $text,)*
                }
            }

            /// The case spelled exactly `s`.
            pub fn from_str_exact(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|case| case.as_str() == s)
            }
        }
    };
}

spelled!(PostJobStatus {
    Normal => "normal",
    Abnormal => "abnormal",
    RepoPolicyCheckFailure => "repo-policy-check-failure",
    ExternalContributorCheckFailure => "external-contributor-check-failure",
});

// GitHub's spelling (snake case), as event lines carry it.
spelled!(JobConclusion {
    ActionRequired => "action_required",
    Cancelled => "cancelled",
    Failure => "failure",
    Neutral => "neutral",
    Skipped => "skipped",
    Success => "success",
    TimedOut => "timed_out",
});

spelled!(QuarantineReason {
    Oversized => "oversized",
    NotRegularFile => "not-regular-file",
    InvalidUtf8 => "invalid-utf8",
    InvalidJson => "invalid-json",
    InvalidValue => "invalid-value",
    InvalidTimestamp => "invalid-timestamp",
    SandboxTrap => "sandbox-trap",
    Undeletable => "undeletable",
    InvalidArchive => "invalid-archive",
});

spelled!(OutcomeKind {
    Extracted => "extracted",
    NoData => "no-data",
    Quarantined => "quarantined",
    Skipped => "skipped",
    Failed => "failed",
});

spelled!(FsOperation {
    Create => "create",
    CreateDirectory => "create directory",
    FindPreopen => "find preopen",
    List => "list",
    Move => "move",
    MoveOut => "move out",
    Open => "open",
    OpenDirectory => "open directory",
    Read => "read",
    Remove => "remove",
    RemoveDirectory => "remove directory",
    Rename => "rename",
    Stat => "stat",
    Sync => "sync",
    Write => "write",
});

impl FsError {
    pub fn new(code: FsErrorCode, operation: FsOperation, path: &str, cause: impl std::fmt::Display) -> Self {
        Self { operation, path: path.to_owned(), code, cause: cause.to_string() }
    }
}

/// `OPERATION "PATH": CAUSE`, as every message writes a filesystem error.
impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {}", self.operation.as_str(), self.path, self.cause)
    }
}

impl std::error::Error for FsError {}

impl FsError {
    /// `text` with each of `errors` written as `OPERATION ROOT/PATH: CAUSE`
    /// where it is written as `OPERATION "PATH": CAUSE`: the typed errors of
    /// a message say exactly what to replace, so no host parses a message.
    pub fn with_full_paths(text: &str, errors: &[FsError], root: &std::path::Path) -> String {
        let mut text = text.to_owned();
        for error in errors {
            let full = if error.path.is_empty() { root.to_path_buf() } else { root.join(&error.path) };
            let plain = format!("{} {}: {}", error.operation.as_str(), full.display(), error.cause);
            text = text.replacen(&error.to_string(), &plain, 1);
        }
        text
    }
}

impl Failure {
    /// A failure no filesystem error is behind.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), errors: Vec::new() }
    }

    /// `CONTEXT: MESSAGE`, naming the same filesystem errors.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self { message: format!("{context}: {}", self.message), errors: self.errors }
    }

    /// A sentence made of this failure's message (`{}` in `template`) that
    /// names the same filesystem errors.
    pub fn reworded(self, reword: impl FnOnce(&str) -> String) -> Self {
        Self { message: reword(&self.message), errors: self.errors }
    }

    /// This failure and `other` in one sentence (`join` of both messages),
    /// naming the filesystem errors of both.
    pub fn joined(mut self, other: Failure, join: impl FnOnce(&str, &str) -> String) -> Self {
        self.message = join(&self.message, &other.message);
        self.errors.extend(other.errors);
        self
    }
}

impl From<FsError> for Failure {
    fn from(error: FsError) -> Self {
        Self { message: error.to_string(), errors: vec![error] }
    }
}

impl Event {
    /// The `event` key of the JSON line.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunnerInstalled(_) => "runner_installed",
            Self::RunnerStart(_) => "runner_start",
            Self::RunnerStop(_) => "runner_stop",
        }
    }

    /// The flavor the event was issued for.
    pub fn flavor(&self) -> &str {
        match self {
            Self::RunnerInstalled(e) => &e.flavor,
            Self::RunnerStart(e) => &e.flavor,
            Self::RunnerStop(e) => &e.flavor,
        }
    }
}

impl SkipReason {
    /// The kebab-case name of the case, as the WIT spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Excluded => "excluded",
            Self::NotIncluded => "not-included",
            Self::TooYoung(_) => "too-young",
            Self::NotADirectory => "not-a-directory",
            Self::InvalidName => "invalid-name",
            Self::Vanished => "vanished",
        }
    }

    /// Every case's name, as [`SkipReason::as_str`] spells them.
    pub const NAMES: [&'static str; 6] =
        ["excluded", "not-included", "too-young", "not-a-directory", "invalid-name", "vanished"];
}

impl PostJobMetrics {
    /// `status_info.code`, when the file had a `status_info` object.
    pub fn status_code(&self) -> Option<i64> {
        self.status_info.map(|info| info.code)
    }
}

/// Every storage, no minimum age.
impl Default for Selection {
    fn default() -> Self {
        Self { exclude: Vec::new(), include: None, min_age_seconds: None }
    }
}

/// This project's default: a corrupt file makes its whole runner corrupt.
impl Default for Policy {
    fn default() -> Self {
        Self::Strict
    }
}

/// No file pulled.
impl Default for LooseFiles {
    fn default() -> Self {
        Self { installed: None, pre_job: None, post_job: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_reads_back_as_its_case() {
        for &status in PostJobStatus::ALL {
            assert_eq!(PostJobStatus::from_str_exact(status.as_str()), Some(status));
        }
        for &reason in QuarantineReason::ALL {
            assert_eq!(QuarantineReason::from_str_exact(reason.as_str()), Some(reason));
        }
        assert_eq!(QuarantineReason::ALL.len(), 9, "a new case needs its spelling above");
        assert_eq!(QuarantineReason::from_str_exact("Oversized"), None, "exact, not case-blind");
        assert_eq!(JobConclusion::TimedOut.as_str(), "timed_out", "GitHub's spelling");
        assert_eq!(OutcomeKind::from_str_exact("no-data"), Some(OutcomeKind::NoData));
    }

    #[test]
    fn skip_reason_names_are_the_spellings_of_its_cases() {
        let cases = [
            SkipReason::Excluded,
            SkipReason::NotIncluded,
            SkipReason::TooYoung(1.0),
            SkipReason::NotADirectory,
            SkipReason::InvalidName,
            SkipReason::Vanished,
        ];
        assert_eq!(cases.map(|case| case.as_str()), SkipReason::NAMES);
    }
}
