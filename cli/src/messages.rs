//! Plain messages: guest errors worded for people, with full paths.

use std::path::Path;

use anyhow::Result;
use runner_metrics::Stopped;
use runner_metrics_core::model::FsError;

/// Checks `--storage DIR` before anything else, so that a missing root, a
/// file or an inaccessible one reads the same in every subcommand: one line
/// naming the path and what is wrong with it.
pub fn check_root(root: &Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!("storage root {}: not a directory", root.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("storage root {}: no such directory", root.display())
        }
        Err(e) => anyhow::bail!("storage root {}: cannot be accessed: {}", root.display(), io_reason(&e)),
    }
}

/// An I/O error as a reason, without the `(os error N)` tail.
pub fn io_reason(error: &std::io::Error) -> String {
    runner_metrics_core::fs::cause_of(error)
}

/// A message from the guest or the library as an operator should read it:
/// the filesystem errors it names (`errors`, typed by the guest) written
/// with their full paths under `root` when it is known
/// (`open /srv/runners/r-1/pre-job-metrics.json: Permission denied`), and
/// control characters escaped (the text can come from untrusted files and
/// names) while quotes are left as they are.
pub fn plain(message: &str, errors: &[FsError], root: Option<&Path>) -> String {
    match root {
        Some(root) => printable(&FsError::with_full_paths(message, errors, root)),
        None => printable(message),
    }
}

/// An error chain as one line: a run's stop ([`Stopped`]) with its paths
/// in full, control characters escaped.
pub fn plain_error(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    match error.chain().find_map(|e| e.downcast_ref::<Stopped>()) {
        Some(stopped) => plain(&text, &stopped.failure.errors, Some(&stopped.root)),
        None => printable(&text),
    }
}

/// `text` with control characters (and other characters Rust escapes in
/// debug output, such as bidirectional overrides) escaped; quotes and
/// backslashes left alone.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\'' | '\\' => out.push(c),
            _ => out.extend(c.escape_debug()),
        }
    }
    out
}

/// UNIX seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, no time zone
/// database needed).
pub fn format_time(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_times_as_utc() {
        assert_eq!(format_time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000.0), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(951_782_400.0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn plain_writes_the_typed_errors_paths_in_full_and_nothing_else() {
        use runner_metrics_core::model::{FsErrorCode, FsOperation};
        let root = Path::new("/srv/runners");
        let error =
            |operation, path: &str| FsError::new(FsErrorCode::PermissionDenied, operation, path, "Permission denied");
        let open = error(FsOperation::Open, "r-1/pre-job-metrics.json");
        let message = format!("kept: {open}");
        assert_eq!(message, "kept: open \"r-1/pre-job-metrics.json\": Permission denied");
        let errors = [open];
        assert_eq!(
            plain(&message, &errors, Some(root)),
            "kept: open /srv/runners/r-1/pre-job-metrics.json: Permission denied"
        );
        assert_eq!(plain(&message, &errors, None), message, "no root: as the guest wrote it");
        // The root itself is the empty path.
        let list = error(FsOperation::List, "");
        assert_eq!(
            plain(&format!("{list}; retried"), &[list], Some(root)),
            "list /srv/runners: Permission denied; retried"
        );
        // Quoted text that no typed error names is left as it is, even
        // when it looks like an error: nothing is parsed.
        let look_alike = "invalid-value: pre-job-metrics.json \"workflow\": not a string; stat \"x\": gone";
        assert_eq!(plain(look_alike, &[], Some(root)), look_alike);
        // Untrusted text: control characters escaped, quotes kept.
        let odd = error(FsOperation::Remove, "r-1/a\"b\u{1b}");
        let message = format!("{odd} \u{7}");
        assert_eq!(
            plain(&message, &[odd], Some(root)),
            "remove /srv/runners/r-1/a\"b\\u{1b}: Permission denied \\u{7}"
        );
    }

    #[test]
    fn io_reasons_lose_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_reason(&e), "Permission denied");
    }
}
