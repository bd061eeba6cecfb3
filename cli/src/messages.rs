//! Plain messages: guest errors worded for people, with full paths.

use std::path::Path;

use anyhow::Result;

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
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// The filesystem operations the guest names in its messages, each followed
/// by a root-relative path in Rust debug quotes (`stat "r-1/x": why`).
pub(crate) const GUEST_OPS: [&str; 14] = [
    "create",
    "create directory",
    "list",
    "move",
    "move out",
    "open",
    "open directory",
    "read",
    "remove",
    "remove directory",
    "rename",
    "stat",
    "sync",
    "write",
];

/// A message from the guest or the library as an operator should read it:
/// WASI's `, similar to `EACCES` in POSIX.` glosses taken off, the guest's
/// quoted root-relative paths (`open "r-1/pre-job-metrics.json"`) written as
/// full paths under `root` when it is known (unquoted relative paths when
/// not), and control characters escaped (the text can come from untrusted
/// files and names) while quotes are left as they are.
pub fn plain(message: &str, root: Option<&Path>) -> String {
    let message = without_posix_glosses(message);
    let mut out = String::with_capacity(message.len() + root.map_or(0, |r| r.as_os_str().len()));
    let mut rest = message.as_str();
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = closing_quote(after) else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let quoted = &after[..close];
        let tail = &after[close + 1..];
        if tail.starts_with(':') && follows_guest_op(&out) {
            let relative = unquote(quoted);
            match root {
                Some(root) if relative.is_empty() => out.push_str(&root.display().to_string()),
                Some(root) => out.push_str(&root.join(&relative).display().to_string()),
                None if relative.is_empty() => out.push('.'),
                None => out.push_str(&relative),
            }
        } else {
            out.push('"');
            out.push_str(quoted);
            out.push('"');
        }
        rest = tail;
    }
    out.push_str(rest);
    printable(&out)
}

/// `text` without WASI's error-code glosses (`, similar to `X` [and `Y`] in
/// POSIX`, and the full stop after one).
pub(crate) fn without_posix_glosses(text: &str) -> String {
    const START: &str = ", similar to `";
    const END: &str = " in POSIX";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(START) {
        let Some(len) = rest[start..].find(END) else { break };
        out.push_str(&rest[..start]);
        rest = &rest[start + len + END.len()..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out.push_str(rest);
    out
}

/// The byte offset of the quote closing a debug-quoted string whose opening
/// quote precedes `text` (backslash escapes skipped).
pub(crate) fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

/// Whether `before` ends with one of [`GUEST_OPS`] and a space, as a word.
pub(crate) fn follows_guest_op(before: &str) -> bool {
    let Some(before) = before.strip_suffix(' ') else { return false };
    GUEST_OPS.iter().any(|op| {
        before.strip_suffix(op).is_some_and(|head| !head.ends_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
}

/// The content of a debug-quoted string with its quote and backslash
/// escapes undone; other escapes (`\u{1b}`) stay as text.
pub(crate) fn unquote(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ ('"' | '\'' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
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
    fn plain_drops_wasi_glosses_and_writes_guest_paths_in_full() {
        let root = Path::new("/srv/runners");
        let guest = "kept: open \"r-1/pre-job-metrics.json\": Permission denied, similar to `EACCES` in POSIX.";
        assert_eq!(plain(guest, Some(root)), "kept: open /srv/runners/r-1/pre-job-metrics.json: Permission denied");
        assert_eq!(plain(guest, None), "kept: open r-1/pre-job-metrics.json: Permission denied");
        // Two codes in one gloss; the root itself as the empty path.
        let guest = "list \"\": Resource unavailable, or operation would block, similar to `EAGAIN` and `EWOULDBLOCK` in POSIX.; retried";
        assert_eq!(
            plain(guest, Some(root)),
            "list /srv/runners: Resource unavailable, or operation would block; retried"
        );
        // Quotes that are not paths after an operation are kept as they are.
        let detail = "invalid-value: pre-job-metrics.json \"workflow\": not a string; moved to .quarantine/r-1.5.6";
        assert_eq!(plain(detail, Some(root)), detail);
        assert_eq!(
            plain("refusing to delete \"r-1\": it is a symlink", Some(root)),
            "refusing to delete \"r-1\": it is a symlink"
        );
        assert_eq!(plain("restat \"x\": gone", Some(root)), "restat \"x\": gone", "whole words only");
        // Escaped quotes inside a quoted path; control characters stay escaped.
        assert_eq!(plain("stat \"r-1/a\\\"b\": no", Some(root)), "stat /srv/runners/r-1/a\"b: no");
        assert_eq!(plain("remove \"r-1/\\u{1b}x\": busy", Some(root)), "remove /srv/runners/r-1/\\u{1b}x: busy");
        assert_eq!(plain("raw \u{1b}[2J bell\u{7}", None), "raw \\u{1b}[2J bell\\u{7}");
        // An unterminated quote or gloss is left alone.
        assert_eq!(plain("open \"r-1: cut", Some(root)), "open \"r-1: cut");
        assert_eq!(plain("x, similar to `EIO", None), "x, similar to `EIO");
    }

    #[test]
    fn io_reasons_lose_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_reason(&e), "Permission denied");
    }
}
