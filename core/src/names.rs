//! Which directory names are runner storages (spec 2).
//!
//! Names come from the filesystem, which the runner may influence, so they are
//! checked before they are joined into any path.

/// The longest valid runner name, in bytes (a filesystem name limit).
pub const MAX_NAME_LEN: usize = 255;

/// The reserved entry of the root that holds quarantined storages.
pub const QUARANTINE_DIR: &str = ".quarantine";

/// The reserved entry of the root where storages are moved, atomically,
/// before their files are removed: a deletion cut short never leaves a
/// half-emptied storage under a runner name to be extracted again.
pub const DELETING_DIR: &str = ".deleting";

/// The reserved entry of the root holding the filesystem images of bounded
/// storages (spec 8), each loop-mounted on its runner's directory. Only
/// the host's storage commands act on it.
pub const IMAGES_DIR: &str = ".images";

/// The reserved entry of a directory of pulled runners (spec 9) that
/// remembers which runners it ingested, so a retry logs nothing twice.
/// Only the host's ingest acts on it.
pub const INGESTED_DIR: &str = ".ingested";

/// The reserved entry of the root under which a confined run makes its new
/// files (a directory of its own per run, the one place beneath the root
/// where the kernel lets it open a file for writing) before moving each to
/// its name. Only the host acts on it.
pub const WRITING_DIR: &str = ".writing";

/// The reserved entry of the root that the host locks so that one run at a
/// time works on the root (spec 7).
pub const LOCK_FILE: &str = ".lock";

/// One component naming an entry of the directory it is resolved in: not
/// empty, `.` (the directory itself) or `..` (outside it), and no `/`. The
/// rule of the Rust host's confined filesystem, and of the guest's choice
/// of asking it for a storage by name.
pub fn is_plain_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains('/')
}

/// A valid runner name: 1 to 255 bytes of `[A-Za-z0-9._-]`, not starting
/// with `.` (those are reserved for the project).
pub fn is_valid_runner_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a root entry belongs to the project itself and is not reported.
pub fn is_reserved(name: &str) -> bool {
    name == QUARANTINE_DIR
        || name == DELETING_DIR
        || name == LOCK_FILE
        || name == IMAGES_DIR
        || name == INGESTED_DIR
        || name == WRITING_DIR
}

/// The longest part of a runner name kept in a quarantine or deletion entry
/// name, so that `<name>.<secs>.<micros>.<n>.reason.json` stays within the
/// 255-byte limit of a file name. The reason file keeps the whole name.
pub const ENTRY_NAME_PREFIX: usize = 200;

/// `<runner>.<secs>.<micros>`: the base of quarantine and deletion entries.
/// Runner names are ASCII, so any byte length is a char boundary.
pub fn entry_base(runner: &str, now: f64) -> String {
    let prefix = runner.get(..runner.len().min(ENTRY_NAME_PREFIX)).unwrap_or(runner);
    format!("{prefix}.{now:.6}")
}

/// The runner name inside a `<name>.<secs>.<micros>[.<n>]` entry name.
pub fn runner_name_of(entry: &str) -> &str {
    fn digits(t: &str) -> bool {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
    }
    fn strip_stamp(s: &str) -> Option<&str> {
        let (rest, micros) = s.rsplit_once('.')?;
        let (name, secs) = rest.rsplit_once('.')?;
        (micros.len() == 6 && digits(micros) && digits(secs)).then_some(name)
    }
    let without_attempt = entry.rsplit_once('.').filter(|(_, n)| digits(n)).map(|(rest, _)| rest);
    without_attempt.and_then(strip_stamp).or_else(|| strip_stamp(entry)).unwrap_or(entry)
}

/// Whether `location` (an entry of `.quarantine/` or `.deleting/`) can be
/// the runner `runner`'s: it starts with the part of the name it keeps.
pub fn is_location_of(location: &str, runner: &str) -> bool {
    let prefix = runner.get(..runner.len().min(ENTRY_NAME_PREFIX)).unwrap_or(runner);
    location.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_seen_in_practice() {
        assert!(is_valid_runner_name("small-n-0123456789ab"));
        assert!(is_valid_runner_name("0123456789abcdef0123456789abcdef"));
        assert!(is_valid_runner_name("a"));
        assert!(is_valid_runner_name("a.b_c-d"));
        assert!(is_valid_runner_name(&"x".repeat(255)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", ".", "..", ".quarantine", ".hidden", "a/b", "a b", "a\nb", "a\u{1b}[31m", "é", "a\0b"] {
            assert!(!is_valid_runner_name(bad), "{bad:?} must be invalid");
        }
        assert!(!is_valid_runner_name(&"x".repeat(256)));
    }

    #[test]
    fn only_the_project_dirs_are_reserved() {
        assert!(is_reserved(".quarantine"));
        assert!(is_reserved(".deleting"));
        assert!(is_reserved(".images"));
        assert!(is_reserved(".ingested"));
        assert!(!is_reserved(".other"));
        assert!(!is_reserved("quarantine"));
    }
}
