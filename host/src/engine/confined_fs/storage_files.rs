//! `storage-files`: a storage's metrics files read in one host call, where
//! `wasi:filesystem` takes four per file (open, `stat`, read, drop) and
//! three for the storage's directory (open, drop, and an open check of
//! Landlock's, path walk and all), and
//! the emptied storage removed in one, where it takes an open, an unlink
//! per file, a drop and a `rmdir`. The system calls are the ones those
//! steps make here (`openat2` beneath the directory, `fstat`, `pread`,
//! `unlinkat`, `close`), so the confinement is the same; only the crossings
//! go. The guest decides what the bytes mean, as it does for a WASI read
//! (`core/src/fs.rs`, `bounded_read`), and walks whatever a removal left.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};
use wasmtime::component::Resource;

use super::bindings::runner_metrics::confined_fs::storage_files::{Host, OpenedFile, ReadError, ReadStep};
use super::bindings::wasi::filesystem::types::{DescriptorFlags, DescriptorType, ErrorCode};
use super::descriptor::kind;
use super::kernel::{self, code};
use super::{ConfinedFsView, Descriptor};

/// The most names one call reads or removes: an honest guest names four.
pub const MAX_NAMES: usize = 8;

/// The largest `limit`: an honest guest asks for 1 KiB. With
/// [`MAX_NAMES`], one call allocates at most 8 x 64 KiB.
pub const MAX_LIMIT: u32 = 64 * 1024;

impl Host for ConfinedFsView<'_> {
    fn read_files(
        &mut self,
        dir: Resource<Descriptor>,
        storage: Option<String>,
        names: Vec<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Result<OpenedFile, ReadError>>, ErrorCode>> {
        // Past what an honest guest asks: a lie, which stops it (a trap,
        // pinned on the storage it began).
        if names.len() > MAX_NAMES {
            wasmtime::bail!("read-files: {} names, more than the {MAX_NAMES} allowed", names.len());
        }
        if limit > MAX_LIMIT {
            wasmtime::bail!("read-files: a limit of {limit} bytes, more than the {MAX_LIMIT} allowed");
        }
        let d = self.get(&dir)?;
        let mounts = self.mounts(d);
        let Some(storage) = storage else {
            return Ok(Ok(names.iter().map(|name| read_file(d.fd.as_fd(), name, limit, mounts)).collect()));
        };
        // Opened `O_PATH`; each file opened through it is checked, as before.
        let opened = self.open_storage(d, &storage);
        Ok(opened.map(|s| names.iter().map(|name| read_file(s.as_fd(), name, limit, kernel::Mounts::Stay)).collect()))
    }

    fn remove_known(
        &mut self,
        dir: Resource<Descriptor>,
        name: String,
        files: Vec<String>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        if files.len() > MAX_NAMES {
            wasmtime::bail!("remove-known: {} files, more than the {MAX_NAMES} allowed", files.len());
        }
        // As `remove-directory-at` and `unlink-file-at` ask.
        let d = match self.with(&dir, DescriptorFlags::MUTATE_DIRECTORY)? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        if !kernel::plain_name(&name) || !files.iter().all(|file| kernel::plain_name(file)) {
            return Ok(Err(ErrorCode::Invalid));
        }
        let mounts = self.mounts(d);
        // Each unlink and the rmdir are still checked.
        Ok(self.open_storage(d, &name).and_then(|storage| {
            for file in &files {
                // A missing file, or one that is a directory now: the
                // `rmdir` below fails, and the guest's walk deals with it.
                let _ = kernel::unlink_at(storage.as_fd(), file, false, kernel::Mounts::Stay);
            }
            drop(storage);
            kernel::unlink_at(d.fd.as_fd(), &name, true, mounts).map_err(code)
        }))
    }
}

impl ConfinedFsView<'_> {
    /// Opens the storage `name` of `d` as `open-at` opens a directory (one
    /// plain name, no symlink followed, a mount entered only as `open-at`
    /// would), but `O_PATH`: its files are opened or unlinked through it,
    /// nothing is read through it, so it needs no open for reading (which
    /// Landlock checks, path walk and all).
    fn open_storage(&self, d: &Descriptor, name: &str) -> Result<OwnedFd, ErrorCode> {
        if !kernel::plain_name(name) {
            return Err(ErrorCode::Invalid);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        kernel::open(d.fd.as_fd(), name, flags, Mode::empty(), false, self.mounts(d)).map_err(code)
    }
}

/// One file: opened as `open-at` opens it for reading, `stat`ed on the
/// open descriptor, and read only if it is a regular file of at most
/// `limit` bytes, then closed.
fn read_file(dir: BorrowedFd<'_>, name: &str, limit: u32, mounts: kernel::Mounts<'_>) -> Result<OpenedFile, ReadError> {
    let failed = |step| move |e| ReadError { step, code: code(e) };
    if !kernel::plain_name(name) {
        return Err(ReadError { step: ReadStep::Open, code: ErrorCode::Invalid });
    }
    let fd = kernel::open(dir, name, OFlags::RDONLY, Mode::empty(), false, mounts).map_err(failed(ReadStep::Open))?;
    let st = rustix::fs::fstat(&fd).map_err(failed(ReadStep::Stat))?;
    let type_ = kind(FileType::from_raw_mode(st.st_mode));
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let head = if type_ == DescriptorType::RegularFile && size <= u64::from(limit) {
        read_head(fd.as_fd(), size, limit).map_err(failed(ReadStep::Read))?
    } else {
        Vec::new()
    };
    Ok(OpenedFile { type_, size, head })
}

/// At most `limit + 1` bytes from the start of a file `fstat` found to be
/// `size` bytes. A short read that reaches `size` is the end, as the guest's
/// WASI read takes it: no probe read for the end of file, which would cost a
/// system call per file. (A short read before `size` reads on.)
fn read_head(fd: BorrowedFd<'_>, size: u64, limit: u32) -> Result<Vec<u8>, rustix::io::Errno> {
    let wanted = limit as usize + 1;
    let mut head = vec![0u8; wanted];
    let mut have = 0;
    while let Some(rest) = head.get_mut(have..).filter(|rest| !rest.is_empty()) {
        let n = rustix::io::pread(fd, rest, have as u64)?;
        have += n;
        if n == 0 || have as u64 >= size {
            break;
        }
    }
    head.truncate(have);
    Ok(head)
}
