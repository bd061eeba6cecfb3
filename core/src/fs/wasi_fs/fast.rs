//! The fast build's calls of the Rust host's `storage-files`
//! (`wit/confined-fs`): a storage's files read in one call, where
//! [`WasiFs::read_bounded`] takes four WASI calls per file, and an emptied
//! storage removed in one. The host opens, `stat`s, reads and unlinks;
//! what the bytes mean is decided here, by the rule every reader shares
//! ([`bounded_read`]), so both builds give the same outcomes and words.

use super::*;
use crate::component::runner_metrics::confined_fs::storage_files::{self, ReadStep};

pub(super) fn read_storage(
    fs: &WasiFs,
    name: &str,
    names: &[&str],
    limit: usize,
) -> FsResult<Vec<FsResult<BoundedRead>>> {
    let one_by_one = || {
        fs.enter_dir(name)?;
        Ok(read_one_by_one(fs, name, names, limit))
    };
    let Ok(wire_limit) = u32::try_from(limit) else { return one_by_one() };
    if fs.through_root_only.get() || !crate::names::is_plain_name(name) {
        return one_by_one();
    }
    // The host opens the storage for the reads: no descriptor of it here,
    // nothing to drop.
    match with_owned(names, |owned| storage_files::read_files(&fs.root, Some(name), owned, wire_limit)) {
        Ok(answers) => Ok(names
            .iter()
            .zip(answers)
            .map(|(file, answer)| match answer {
                Ok(opened) => bounded_read(kind_of(opened.type_), opened.size, limit, || Ok(opened.head)),
                Err(e) => Err(error(operation(e.step), &join(name, file), e.code)),
            })
            .collect()),
        Err(ErrorCode::Unsupported) => {
            fs.give_up_dir_cache();
            one_by_one()
        }
        // As `enter_dir` says it.
        Err(code) => Err(error(FsOperation::OpenDirectory, name, code)),
    }
}

fn operation(step: ReadStep) -> FsOperation {
    match step {
        ReadStep::Open => FsOperation::Open,
        ReadStep::Stat => FsOperation::Stat,
        ReadStep::Read => FsOperation::Read,
    }
}

/// [`crate::walk::DirHandle::remove_known`] in one host call. The error is
/// the guest's words for it, though the walk that follows a failure says
/// what it finds for itself.
pub(super) fn remove_known(dir: &Descriptor, name: &str, files: &[&str]) -> FsResult<()> {
    with_owned(files, |owned| storage_files::remove_known(dir, name, owned))
        .map_err(|e| error(FsOperation::RemoveDirectory, name, e))
}

thread_local! {
    /// The four file names of a storage as the imports take them (owned
    /// strings), made once rather than for every storage.
    static METRICS_FILES: Vec<String> = crate::files::ALL.iter().map(|file| (*file).to_owned()).collect();
}

/// `f` of `names` as owned strings: the metrics files' own, or a copy.
fn with_owned<T>(names: &[&str], f: impl FnOnce(&[String]) -> T) -> T {
    if names == crate::files::ALL {
        METRICS_FILES.with(|owned| f(owned))
    } else {
        f(&names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())
    }
}
