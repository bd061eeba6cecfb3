//! The `wasi:filesystem` host functions over [`kernel`]: a descriptor is an
//! open file or directory and the rights WASI gave it; a listing streams
//! `getdents64`. Links (`link-at`, `symlink-at`) are refused: the guest has
//! no reason to make one, and a symlink made in a storage would be a trap for
//! whatever else reads the tree. Streams are not offered either (the guest
//! reads and writes at offsets).

use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags, Stat, Timestamps};
use rustix::io::Errno;
use wasmtime::component::Resource;

use super::bindings::wasi::clocks::wall_clock::Datetime;
use super::bindings::wasi::filesystem::types::{
    Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, Filesize, MetadataHashValue,
    NewTimestamp, OpenFlags, PathFlags,
};
use super::bindings::wasi::filesystem::{preopens, types};
use super::kernel::{self, code};
use super::listing::Listing;
use super::ConfinedFsView;
use wasmtime_wasi::p2::bindings::io::streams::{Error as StreamErrorResource, InputStream, OutputStream};

/// The most one `read` returns (and allocates): a guest asking for more
/// reads on. The guest reads 1 KiB files.
const MAX_READ: u64 = 1 << 20;

/// An open file or directory and what WASI lets the guest do with it.
pub struct Descriptor {
    pub(super) fd: Arc<OwnedFd>,
    flags: DescriptorFlags,
    /// Opened as a directory (or the preopen): its type needs no syscall.
    directory: bool,
    /// A listing has read from this descriptor's own offset: the next one
    /// needs an open file description of its own.
    listed: bool,
}

/// A listing in progress (`listing.rs`: streamed `getdents64`).
pub struct DirectoryEntryStream {
    listing: Listing,
}

type FsResult<T> = wasmtime::Result<Result<T, ErrorCode>>;

impl ConfinedFsView<'_> {
    pub(super) fn get(&self, fd: &Resource<Descriptor>) -> wasmtime::Result<&Descriptor> {
        Ok(self.table.get(fd)?)
    }

    /// The mounts a lookup from `d` may enter: from the root, a bounded
    /// storage of ours; below it, none.
    pub(super) fn mounts(&self, d: &Descriptor) -> kernel::Mounts<'_> {
        if Arc::ptr_eq(&d.fd, &self.ctx.root) {
            kernel::Mounts::OwnStorages(&*self.ctx.own_mount)
        } else {
            kernel::Mounts::Stay
        }
    }

    /// The descriptor, if the guest was granted `needed` on it.
    pub(super) fn with(
        &self,
        fd: &Resource<Descriptor>,
        needed: DescriptorFlags,
    ) -> wasmtime::Result<Result<&Descriptor, ErrorCode>> {
        let d = self.get(fd)?;
        Ok(if d.flags.contains(needed) { Ok(d) } else { Err(ErrorCode::NotPermitted) })
    }
}

/// Runs `f` on the descriptor if it has `needed`, mapping errors.
macro_rules! on {
    ($view:expr, $fd:expr, $needed:expr, |$d:ident| $body:expr) => {{
        match $view.with(&$fd, $needed)? {
            Ok($d) => Ok($body.map_err(code)),
            Err(e) => Ok(Err(e)),
        }
    }};
}

pub(super) fn kind(file_type: FileType) -> DescriptorType {
    match file_type {
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Directory => DescriptorType::Directory,
        FileType::Symlink => DescriptorType::SymbolicLink,
        FileType::Fifo => DescriptorType::Fifo,
        FileType::Socket => DescriptorType::Socket,
        FileType::CharacterDevice => DescriptorType::CharacterDevice,
        FileType::BlockDevice => DescriptorType::BlockDevice,
        FileType::Unknown => DescriptorType::Unknown,
    }
}

/// The kind `getdents64` gives in `d_type`.
fn dirent_kind(d_type: u8) -> DescriptorType {
    match d_type {
        libc::DT_REG => DescriptorType::RegularFile,
        libc::DT_DIR => DescriptorType::Directory,
        libc::DT_LNK => DescriptorType::SymbolicLink,
        libc::DT_FIFO => DescriptorType::Fifo,
        libc::DT_SOCK => DescriptorType::Socket,
        libc::DT_CHR => DescriptorType::CharacterDevice,
        libc::DT_BLK => DescriptorType::BlockDevice,
        _ => DescriptorType::Unknown,
    }
}

fn datetime(seconds: i64, nanoseconds: i64) -> Option<Datetime> {
    Some(Datetime { seconds: u64::try_from(seconds).ok()?, nanoseconds: u32::try_from(nanoseconds).ok()? })
}

#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn descriptor_stat(st: &Stat) -> DescriptorStat {
    DescriptorStat {
        type_: kind(FileType::from_raw_mode(st.st_mode as _)),
        link_count: st.st_nlink as u64,
        size: st.st_size.max(0) as u64,
        data_access_timestamp: datetime(st.st_atime as i64, st.st_atime_nsec as i64),
        data_modification_timestamp: datetime(st.st_mtime as i64, st.st_mtime_nsec as i64),
        status_change_timestamp: datetime(st.st_ctime as i64, st.st_ctime_nsec as i64),
    }
}

#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn metadata_hash(st: &Stat) -> MetadataHashValue {
    let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
    let mut upper = std::collections::hash_map::DefaultHasher::new();
    (dev, ino, "upper").hash(&mut upper);
    let mut lower = std::collections::hash_map::DefaultHasher::new();
    (dev, ino, "lower").hash(&mut lower);
    MetadataHashValue { upper: upper.finish(), lower: lower.finish() }
}

fn timestamp(t: NewTimestamp) -> rustix::fs::Timespec {
    match t {
        NewTimestamp::NoChange => rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        NewTimestamp::Now => rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW },
        NewTimestamp::Timestamp(d) => rustix::fs::Timespec {
            tv_sec: i64::try_from(d.seconds).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.nanoseconds.min(999_999_999)),
        },
    }
}

impl types::Host for ConfinedFsView<'_> {
    fn filesystem_error_code(&mut self, _err: Resource<StreamErrorResource>) -> wasmtime::Result<Option<ErrorCode>> {
        // This layer makes no streams, so no stream error is one of its.
        Ok(None)
    }
}

impl types::HostDescriptor for ConfinedFsView<'_> {
    fn read_via_stream(&mut self, _: Resource<Descriptor>, _: Filesize) -> FsResult<Resource<InputStream>> {
        Ok(Err(ErrorCode::Unsupported))
    }

    fn write_via_stream(&mut self, _: Resource<Descriptor>, _: Filesize) -> FsResult<Resource<OutputStream>> {
        Ok(Err(ErrorCode::Unsupported))
    }

    fn append_via_stream(&mut self, _: Resource<Descriptor>) -> FsResult<Resource<OutputStream>> {
        Ok(Err(ErrorCode::Unsupported))
    }

    fn advise(&mut self, fd: Resource<Descriptor>, _: Filesize, _: Filesize, _: Advice) -> FsResult<()> {
        // Advice changes nothing the guest can see; taking it costs a call.
        self.get(&fd)?;
        Ok(Ok(()))
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        on!(self, fd, DescriptorFlags::empty(), |d| rustix::fs::fdatasync(d.fd.as_fd()))
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        Ok(Ok(self.get(&fd)?.flags))
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        let d = self.get(&fd)?;
        if d.directory {
            return Ok(Ok(DescriptorType::Directory));
        }
        Ok(rustix::fs::fstat(d.fd.as_fd()).map(|st| kind(FileType::from_raw_mode(st.st_mode as _))).map_err(code))
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        on!(self, fd, DescriptorFlags::WRITE, |d| rustix::fs::ftruncate(d.fd.as_fd(), size))
    }

    fn set_times(&mut self, fd: Resource<Descriptor>, atim: NewTimestamp, mtim: NewTimestamp) -> FsResult<()> {
        let times = Timestamps { last_access: timestamp(atim), last_modification: timestamp(mtim) };
        on!(self, fd, DescriptorFlags::WRITE, |d| rustix::fs::futimens(d.fd.as_fd(), &times))
    }

    fn read(&mut self, fd: Resource<Descriptor>, len: Filesize, offset: Filesize) -> FsResult<(Vec<u8>, bool)> {
        let d = match self.with(&fd, DescriptorFlags::READ)? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let mut buf = vec![0u8; len.min(MAX_READ) as usize];
        Ok(rustix::io::pread(d.fd.as_fd(), &mut buf[..], offset).map_err(code).map(|n| {
            buf.truncate(n);
            let end = n == 0 && len > 0;
            (buf, end)
        }))
    }

    fn write(&mut self, fd: Resource<Descriptor>, buf: Vec<u8>, offset: Filesize) -> FsResult<Filesize> {
        on!(self, fd, DescriptorFlags::WRITE, |d| rustix::io::pwrite(d.fd.as_fd(), &buf, offset).map(|n| n as u64))
    }

    fn read_directory(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<DirectoryEntryStream>> {
        if let Err(e) = self.with(&fd, DescriptorFlags::READ)? {
            return Ok(Err(e));
        }
        let d = self.table.get_mut(&fd)?;
        // The first listing of a directory the guest opened reads its own
        // descriptor (offset 0): no open and close of a second one.
        let listed = if d.directory && !d.listed && !Arc::ptr_eq(&d.fd, &self.ctx.root) {
            d.listed = true;
            Listing::new(Arc::clone(&d.fd))
        } else {
            match kernel::reopen_dir(d.fd.as_fd()) {
                Ok(own) => Listing::new(Arc::new(own)),
                Err(e) => return Ok(Err(code(e))),
            }
        };
        Ok(Ok(self.table.push(DirectoryEntryStream { listing: listed })?))
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        on!(self, fd, DescriptorFlags::empty(), |d| rustix::fs::fsync(d.fd.as_fd()))
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        on!(self, fd, DescriptorFlags::MUTATE_DIRECTORY, |d| kernel::mkdir_at(d.fd.as_fd(), &path, self.mounts(d)))
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        let d = self.get(&fd)?;
        Ok(rustix::fs::fstat(d.fd.as_fd()).map(|st| descriptor_stat(&st)).map_err(code))
    }

    fn stat_at(&mut self, fd: Resource<Descriptor>, flags: PathFlags, path: String) -> FsResult<DescriptorStat> {
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
        on!(self, fd, DescriptorFlags::empty(), |d| kernel::stat_at(d.fd.as_fd(), &path, follow, self.mounts(d))
            .map(|st| descriptor_stat(&st)))
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        _flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let times = Timestamps { last_access: timestamp(atim), last_modification: timestamp(mtim) };
        on!(self, fd, DescriptorFlags::MUTATE_DIRECTORY, |d| kernel::set_times_at(
            d.fd.as_fd(),
            &path,
            &times,
            self.mounts(d)
        ))
    }

    fn link_at(
        &mut self,
        _: Resource<Descriptor>,
        _: PathFlags,
        _: String,
        _: Resource<Descriptor>,
        _: String,
    ) -> FsResult<()> {
        Ok(Err(ErrorCode::NotPermitted))
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        open_flags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let parent = self.get(&fd)?;
        let writes = flags.intersects(DescriptorFlags::WRITE | DescriptorFlags::MUTATE_DIRECTORY)
            || open_flags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
        // WASI's rule: nothing opened through a descriptor gets more than it.
        if writes && !parent.flags.contains(DescriptorFlags::MUTATE_DIRECTORY) {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        // A file is written only by the open that creates it: nothing the
        // guest did not make (a runner's file, a bounded storage's image,
        // another run's reason file) can have its bytes changed, even by a
        // compromised plugin. The guest's one writer (`write_new_file`)
        // opens with CREATE | EXCLUSIVE.
        let creates = open_flags.contains(OpenFlags::CREATE | OpenFlags::EXCLUSIVE);
        if (flags.contains(DescriptorFlags::WRITE) && !creates) || open_flags.contains(OpenFlags::TRUNCATE) {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        let directory = open_flags.contains(OpenFlags::DIRECTORY);
        if directory && flags.contains(DescriptorFlags::WRITE) {
            return Ok(Err(ErrorCode::IsDirectory));
        }
        let mut oflags = match (flags.contains(DescriptorFlags::READ), flags.contains(DescriptorFlags::WRITE)) {
            (_, false) => OFlags::RDONLY,
            (false, true) => OFlags::WRONLY,
            (true, true) => OFlags::RDWR,
        };
        for (wasi, os) in [
            (OpenFlags::CREATE, OFlags::CREATE),
            (OpenFlags::DIRECTORY, OFlags::DIRECTORY),
            (OpenFlags::EXCLUSIVE, OFlags::EXCL),
            (OpenFlags::TRUNCATE, OFlags::TRUNC),
        ] {
            if open_flags.contains(wasi) {
                oflags |= os;
            }
        }
        if flags.contains(DescriptorFlags::FILE_INTEGRITY_SYNC) {
            oflags |= OFlags::SYNC;
        } else if flags.intersects(DescriptorFlags::DATA_INTEGRITY_SYNC | DescriptorFlags::REQUESTED_WRITE_SYNC) {
            oflags |= OFlags::DSYNC;
        }
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let mounts = self.mounts(parent);
        let mode = Mode::from_raw_mode(0o666);
        let opened = match &self.ctx.staging {
            // A confined run may write only in its staging directory: the
            // new file is made there and moved to its name.
            Some(staging) if creates => kernel::parent(parent.fd.as_fd(), &path, mounts)
                .and_then(|(dir, leaf)| staging.create_in(dir.as_fd(), leaf, oflags | kernel::ALWAYS, mode)),
            _ => kernel::open(parent.fd.as_fd(), &path, oflags, mode, follow, mounts),
        };
        match opened {
            Ok(opened) => {
                Ok(Ok(self.table.push(Descriptor { fd: Arc::new(opened), flags, directory, listed: false })?))
            }
            Err(e) => Ok(Err(code(e))),
        }
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        on!(self, fd, DescriptorFlags::READ, |d| kernel::readlink_at(d.fd.as_fd(), &path, self.mounts(d))
            .and_then(|target| String::from_utf8(target).map_err(|_| Errno::ILSEQ)))
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        on!(self, fd, DescriptorFlags::MUTATE_DIRECTORY, |d| kernel::unlink_at(
            d.fd.as_fd(),
            &path,
            true,
            self.mounts(d)
        ))
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let (from, to) = match (
            self.with(&fd, DescriptorFlags::MUTATE_DIRECTORY)?,
            self.with(&new_fd, DescriptorFlags::MUTATE_DIRECTORY)?,
        ) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        };
        let (from_mounts, to_mounts) = (self.mounts(from), self.mounts(to));
        let mut rename =
            || kernel::rename_at((from.fd.as_fd(), &old_path, from_mounts), (to.fd.as_fd(), &new_path, to_mounts));
        let renamed = rename();
        if renamed != Err(ErrorCode::Busy) {
            return Ok(renamed);
        }
        // A mount point of the root: the host's hook may move it.
        match &self.ctx.busy_rename {
            Some(hook)
                if kernel::plain_name(&old_path) && kernel::same_object(from.fd.as_fd(), self.ctx.root.as_fd()) =>
            {
                Ok(hook(&old_path, &mut rename).unwrap_or(renamed))
            }
            _ => Ok(renamed),
        }
    }

    fn symlink_at(&mut self, _: Resource<Descriptor>, _: String, _: String) -> FsResult<()> {
        Ok(Err(ErrorCode::NotPermitted))
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        on!(self, fd, DescriptorFlags::MUTATE_DIRECTORY, |d| kernel::unlink_at(
            d.fd.as_fd(),
            &path,
            false,
            self.mounts(d)
        ))
    }

    fn is_same_object(&mut self, a: Resource<Descriptor>, b: Resource<Descriptor>) -> wasmtime::Result<bool> {
        Ok(kernel::same_object(self.get(&a)?.fd.as_fd(), self.get(&b)?.fd.as_fd()))
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        let d = self.get(&fd)?;
        Ok(rustix::fs::fstat(d.fd.as_fd()).map(|st| metadata_hash(&st)).map_err(code))
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
        on!(self, fd, DescriptorFlags::empty(), |d| kernel::stat_at(d.fd.as_fd(), &path, follow, self.mounts(d))
            .map(|st| metadata_hash(&st)))
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.table.delete(fd)?;
        Ok(())
    }
}

impl types::HostDirectoryEntryStream for ConfinedFsView<'_> {
    fn read_directory_entry(&mut self, stream: Resource<DirectoryEntryStream>) -> FsResult<Option<DirectoryEntry>> {
        let listing = &mut self.table.get_mut(&stream)?.listing;
        loop {
            let (name, d_type) = match listing.next() {
                None => return Ok(Ok(None)),
                Some(Err(e)) => return Ok(Err(code(e))),
                Some(Ok(entry)) => (entry.name.to_vec(), entry.d_type),
            };
            if name == b"." || name == b".." {
                continue;
            }
            // wasmtime-wasi's answer for a name WASI cannot carry; the
            // listing goes on after it.
            let Ok(name) = String::from_utf8(name) else {
                return Ok(Err(ErrorCode::IllegalByteSequence));
            };
            let type_ = match dirent_kind(d_type) {
                // Some filesystems leave `d_type` unset: ask for this one.
                DescriptorType::Unknown => {
                    match rustix::fs::statat(listing.fd(), name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => kind(FileType::from_raw_mode(st.st_mode as _)),
                        Err(e) => return Ok(Err(code(e))),
                    }
                }
                known => known,
            };
            return Ok(Ok(Some(DirectoryEntry { type_, name })));
        }
    }

    fn drop(&mut self, stream: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl preopens::Host for ConfinedFsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let root = Descriptor { fd: Arc::clone(&self.ctx.root), flags: self.ctx.flags, directory: true, listed: false };
        Ok(vec![(self.table.push(root)?, self.ctx.guest_path.clone())])
    }
}
