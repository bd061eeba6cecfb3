//! Unmounting bounded storages for a confined process.
//!
//! Moving a bounded storage out of the runner namespace unmounts it
//! (`storage::bounded::move_out`), which neither Landlock nor the seccomp
//! filter allow. So before confining itself, a collect over a root with
//! bounded storages forks this helper: a process that keeps the
//! privileges, shares nothing with the confined one but a socket, and
//! accepts one thing on it: the name of a storage of *its* root to
//! unmount. It unmounts only a valid runner name whose directory is the
//! mount of that storage's own marked image (`bounded::unmount_storage`),
//! so even a fully compromised collect can ask it for nothing else. It
//! ends when the collect does (the socket closes, and `PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

/// The confined side's end of the socket, once the helper is started.
static HELPER: OnceLock<Mutex<BufReader<UnixStream>>> = OnceLock::new();

/// Longest request or answer line (a name is at most 255 bytes).
const LINE_LIMIT: usize = 4096;

/// Forks the helper for `root`. Call it while the process has one thread
/// (a forked child of a multithreaded process may deadlock), before
/// [`super::confine`]. Once started, [`unmount`] goes through it.
pub fn start(root: &Path) -> Result<()> {
    let root = root.canonicalize().with_context(|| format!("storage root {}", root.display()))?;
    let (ours, theirs) = UnixStream::pair().context("creating the unmount helper's socket")?;
    // SAFETY: the process is single-threaded here (documented contract),
    // so the child may run ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("forking the unmount helper"),
        0 => {
            drop(ours);
            // SAFETY: prctl with a signal number; no pointers.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            serve(&root, theirs);
            // SAFETY: leaves the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(0) }
        }
        _ => {
            drop(theirs);
            HELPER.set(Mutex::new(BufReader::new(ours))).map_err(|_| anyhow::anyhow!("the unmount helper runs already"))
        }
    }
}

/// The helper's loop: one name per line in, `ok` or `error: ...` out.
fn serve(root: &Path, stream: UnixStream) {
    let Ok(mut out) = stream.try_clone() else { return };
    let mut input = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut input).take(LINE_LIMIT as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let name = line.trim_end_matches('\n');
        let answer = match crate::storage::bounded::unmount_storage(root, name) {
            Ok(()) => "ok\n".to_owned(),
            Err(e) => format!("error: {}\n", e.to_string().replace('\n', " ")),
        };
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Asks the helper to unmount the storage `name`. `None`: no helper runs
/// (the caller unmounts itself).
pub fn unmount(name: &str) -> Option<Result<(), String>> {
    let helper = HELPER.get()?;
    let mut stream = match helper.lock() {
        Ok(stream) => stream,
        Err(poisoned) => poisoned.into_inner(),
    };
    let asked = (|| -> std::io::Result<String> {
        stream.get_mut().write_all(format!("{name}\n").as_bytes())?;
        let mut answer = String::new();
        (&mut *stream).take(LINE_LIMIT as u64).read_line(&mut answer)?;
        Ok(answer)
    })();
    Some(match asked {
        Ok(answer) if answer == "ok\n" => Ok(()),
        Ok(answer) if answer.starts_with("error: ") => Err(answer["error: ".len()..].trim_end().to_owned()),
        Ok(answer) => Err(format!("the unmount helper answered {answer:?}")),
        Err(e) => Err(format!("the unmount helper cannot be reached: {e}")),
    })
}
