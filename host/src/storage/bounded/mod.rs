//! Bounded storages (spec 8): a runner's storage as a fixed-size ext4
//! image, loop-mounted on `<root>/<name>`, so a job that fills its storage
//! fills its image and never the disk of the root, the log or the
//! quarantine.
//!
//! The image lives at `<root>/.images/<name>.img` while the storage is in
//! the runner namespace. A mount point cannot be renamed (`EBUSY`), so every
//! move out of the namespace (deletion, quarantine, by the host here or by
//! the guest through the confined filesystem's hook) goes through
//! [`move_out`]: unmount, hard-link the image into the now plain directory
//! as [`IMAGE_IN_STORAGE`], move the directory, drop the `.images/` link.
//! The moved directory is then an ordinary one holding its image: deletion
//! removes it with the usual walk, quarantine keeps it whole, purge deletes
//! it, restore links it back into `.images/` and mounts it.
//!
//! Crash safety comes from one rule, applied by [`reattach_all`] before
//! every collect and `storage list` (and for one name by `get` and
//! `restore`): for each `.images/<name>.img`,
//!
//! * no `<root>/<name>` and a second link (the image moved on with its
//!   directory, the `.images/` link was not dropped yet): drop it;
//! * no `<root>/<name>` and no other link: the directory was removed by
//!   someone else; make it again and mount;
//! * `<root>/<name>` mounted from it: nothing to do;
//! * `<root>/<name>` not mounted (a reboot, or a crash between two steps):
//!   drop a link of the same image inside it, then mount it again.
//!
//! Every state between two steps of a move or a restore is one of these,
//! so the next run finishes or undoes it, and the image is never lost.
//!
//! An image is only ever mounted when it carries the `trusted.` extended
//! attribute [`MARK_XATTR`] set at creation: a job can write a file named
//! `.image` into a plain storage, but it cannot set a `trusted.` attribute
//! (that takes `CAP_SYS_ADMIN`), so the kernel never parses an image a job
//! made.
//!
//! Mounting needs root: [`create`] says so before touching anything. It
//! mounts a new image before naming it in `.images/`, so no recovery pass
//! finds it unmounted; the commands that do not otherwise lock the root
//! (`storage list`, `get`) change mounts only under its lock, taken without
//! waiting ([`reattach_all_if_free`]), so they never cross a collect's move.

pub mod unmount_helper;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use runner_metrics_core::names::is_valid_runner_name;

use super::{
    error, io_error, kind_of, require_name, require_root, write_atomically, ContentEntry, ErrorKind, Result, Storage,
    StorageError, INSTALLATION_START_FILE,
};

/// The reserved entry of the root holding the images (the guest's name).
pub use runner_metrics_core::names::IMAGES_DIR;

/// The name of a bounded storage's image inside its own directory once it
/// left the runner namespace (in `.deleting/` or `.quarantine/`).
pub const IMAGE_IN_STORAGE: &str = ".image";

/// The extended attribute that marks an image as made by [`create`].
pub const MARK_XATTR: &str = "trusted.runner-metrics";
const MARK_VALUE: &[u8] = b"bounded-storage-image";

/// The longest name of a bounded storage: `.NAME.img.part.PID` must fit
/// in a file name (255 bytes, with a pid of up to 7 digits).
pub const MAX_NAME_LEN: usize = 255 - ".".len() - ".img.part.".len() - 7;

/// Smallest and largest image sizes accepted (mkfs.ext4 needs some room;
/// the upper bound only catches typos).
pub const MIN_SIZE: u64 = 256 * 1024;
pub const MAX_SIZE: u64 = 1 << 40;

/// How long an unmount waits for a busy storage before detaching it
/// lazily (the kernel then frees the loop device when its last user goes).
const UNMOUNT_PATIENCE: Duration = Duration::from_millis(500);

/// Mount options of every bounded storage: nothing on it runs, no device
/// node on it opens a device, no set-uid bit counts.
pub const MOUNT_OPTIONS: &str = "loop,nodev,nosuid,noexec";

/// `<root>/.images/<name>.img`.
pub fn image_path(root: &Path, name: &str) -> PathBuf {
    root.join(IMAGES_DIR).join(format!("{name}.img"))
}

/// Parses a size such as `1048576`, `512K`, `1M`, `1MiB` or `2G` (binary
/// units), within [`MIN_SIZE`]..=[`MAX_SIZE`].
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use K, M or G, e.g. 1M)")),
    };
    let value: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size such as 1M or 512K"))?;
    let bytes = value.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&bytes) {
        return Err(format!("{text:?}: a bounded storage is between 256K and 1T"));
    }
    Ok(bytes)
}

/// The user (and group) a runner writes its storage as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Parses `UID[:GID]` or `USER[:GROUP]` (a user's group defaults to its
/// primary group; a numeric UID's to the same number).
pub fn parse_owner(text: &str) -> std::result::Result<Owner, String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup_user(user).ok_or_else(|| format!("no user named {user:?}"))?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup_group(g).ok_or_else(|| format!("no group named {g:?}"))?,
        },
    };
    Ok(Owner { uid, gid })
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: a valid C string; the result is copied out at once (the CLI
    // parses its arguments on one thread).
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    // SAFETY: non-null entries point at a valid passwd record.
    (!entry.is_null()).then(|| unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}

fn lookup_group(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: as in lookup_user.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    // SAFETY: non-null entries point at a valid group record.
    (!entry.is_null()).then(|| unsafe { (*entry).gr_gid })
}

fn require_privileges(path: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(error(
            ErrorKind::Io,
            path,
            "a bounded storage is a mounted filesystem image, and mounting needs root privileges: \
             run as root, or create the storage without --size (a plain directory)",
        ));
    }
    Ok(())
}

/// Creates `<root>/<name>` as a bounded storage of `size` bytes: an ext4
/// image in `.images/`, marked as ours, mounted `nodev,nosuid,noexec` on the
/// runner's directory, its root owned by `owner`, holding
/// `runner-installation-start.timestamp`. All or nothing: on any failure
/// the directory and the image are removed again.
pub fn create(root: &Path, name: &str, size: u64, owner: Option<Owner>) -> Result<Storage> {
    let dir = require_name(root, name)?;
    if name.len() > MAX_NAME_LEN {
        return Err(error(
            ErrorKind::InvalidName,
            &dir,
            format!("a bounded storage's name is at most {MAX_NAME_LEN} bytes (its image's names add to it)"),
        ));
    }
    require_root(root)?;
    require_privileges(&dir)?;
    let images = super::ensure_reserved_dir(root, IMAGES_DIR)?;
    let _ = fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let image = image_path(root, name);
    let part = images.join(format!(".{name}.img.part.{}", std::process::id()));
    let made = make_image(&part, size, owner);
    if let Err(e) = made {
        let _ = fs::remove_file(&part);
        return Err(e);
    }
    // The directory is the name's claim: it fails, touching nothing, when
    // anything has that name.
    if let Err(e) = fs::create_dir(&dir) {
        let _ = fs::remove_file(&part);
        return Err(match e.kind() {
            io::ErrorKind::AlreadyExists => {
                error(ErrorKind::AlreadyExists, &dir, "a storage (or another entry) with this name already exists")
            }
            _ => io_error(&dir, "cannot create the storage directory", &e),
        });
    }
    let undo = |e: StorageError| {
        let _ = unmount(&dir);
        let _ = fs::remove_file(&part);
        let _ = fs::remove_dir(&dir);
        e
    };
    // Mounted before it gets its name in `.images/`: a collect or a
    // listing that runs meanwhile never finds the image unmounted (and
    // mounts it a second time).
    mount(&part, &dir, false).map_err(undo)?;
    // mkfs makes lost+found; a storage starts empty, as a plain one does.
    let _ = fs::remove_dir(dir.join("lost+found"));
    let (_, stamp) = super::now();
    write_atomically(&dir, INSTALLATION_START_FILE, format!("{stamp}\n").as_bytes()).map_err(undo)?;
    super::rename_noreplace(&part, &image).map_err(|e| {
        undo(match e.kind() {
            io::ErrorKind::AlreadyExists => error(
                ErrorKind::AlreadyExists,
                &image,
                "an image with this name exists without its storage directory; the next collect or \
                 `storage list` mounts it again",
            ),
            _ => io_error(&image, "cannot put the image in place", &e),
        })
    })?;
    Ok(Storage { name: name.to_owned(), path: dir, bounded: true, mount_error: None, foreign_mount: false })
}

/// Writes a formatted, marked image of `size` bytes at `path` (new).
fn make_image(path: &Path, size: u64, owner: Option<Owner>) -> Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_error(path, "cannot create the image", &e))?;
    file.set_len(size).map_err(|e| io_error(path, "cannot size the image", &e))?;
    set_mark(&file).map_err(|e| {
        io_error(path, "cannot mark the image (the filesystem of the root needs `trusted.` extended attributes)", &e)
    })?;
    drop(file);
    let mut mkfs = Command::new("mkfs.ext4");
    // No reserved blocks (the runner may use all of it), quiet, and the
    // root directory owned by the runner's user.
    mkfs.args(["-q", "-F", "-m", "0"]);
    if let Some(owner) = owner {
        mkfs.args(["-E", &format!("root_owner={}:{}", owner.uid, owner.gid)]);
    }
    run(mkfs.arg(path), path, "mkfs.ext4")?;
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io_error(path, "cannot sync the image", &e))
}

fn set_mark(file: &fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let key = CString::new(MARK_XATTR).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a valid descriptor, C string and buffer of the given length.
    let rc =
        unsafe { libc::fsetxattr(file.as_raw_fd(), key.as_ptr(), MARK_VALUE.as_ptr().cast(), MARK_VALUE.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `path` is a regular file (never through a symlink) carrying our
/// mark: an image [`create`] made, not a file a job wrote.
pub fn is_marked_image(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(key) = CString::new(MARK_XATTR) else { return false };
    let mut value = [0u8; 64];
    // SAFETY: a valid descriptor, C string and buffer of the given length.
    let n = unsafe { libc::fgetxattr(file.as_raw_fd(), key.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    usize::try_from(n).is_ok_and(|n| value.get(..n) == Some(MARK_VALUE))
}

/// Runs a system tool; its stderr becomes the error's reason.
fn run(command: &mut Command, path: &Path, what: &str) -> Result<()> {
    let output = command.output().map_err(|e| io_error(path, &format!("cannot run {what}"), &e))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    Err(error(ErrorKind::Io, path, format!("{what} failed ({}): {}", output.status, said.trim())))
}

/// Mounts `image` on `dir` (read-only when asked), `nodev,nosuid,noexec`,
/// on a loop device that goes away with the mount.
fn mount(image: &Path, dir: &Path, read_only: bool) -> Result<()> {
    require_privileges(dir)?;
    if !is_marked_image(image) {
        return Err(error(ErrorKind::Io, image, "is not an image made by `storage create --size`; not mounted"));
    }
    require_released(image)?;
    let options = if read_only { format!("{MOUNT_OPTIONS},ro,noload") } else { MOUNT_OPTIONS.to_owned() };
    run(Command::new("mount").args(["-t", "ext4", "-o", &options]).arg(image).arg(dir), dir, "mount")
}

/// Unmounts `dir` (never through a symlink). A busy mount is retried for
/// [`UNMOUNT_PATIENCE`], then detached lazily. Not mounted is success.
fn unmount(dir: &Path) -> Result<()> {
    let path = runner_metrics_core::fs::c_path(dir).map_err(|e| io_error(dir, "cannot unmount", &e))?;
    let deadline = Instant::now() + UNMOUNT_PATIENCE;
    loop {
        // SAFETY: a valid C string.
        if unsafe { libc::umount2(path.as_ptr(), libc::UMOUNT_NOFOLLOW) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) => return Ok(()),
            Some(libc::EBUSY) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Some(libc::EBUSY) => {
                // SAFETY: a valid C string.
                let rc = unsafe { libc::umount2(path.as_ptr(), libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH) };
                return if rc == 0 {
                    Ok(())
                } else {
                    Err(io_error(dir, "cannot unmount (lazily)", &io::Error::last_os_error()))
                };
            }
            _ => return Err(io_error(dir, "cannot unmount", &e)),
        }
    }
}

/// Why this process cannot move bounded storages out of the runner
/// namespace, if it cannot: it lacks `CAP_SYS_ADMIN` (unmounting needs it),
/// or it runs in a mount namespace of its own (a systemd unit's
/// `ProtectSystem=`, `PrivateTmp=`...), where an unmount would not reach
/// the runner's view and the image would be moved from under a live mount.
/// The namespace is compared with init's when `/proc/1/ns/mnt` can be read,
/// else told by the root's mount being a slave (`master:` without
/// `shared:` in `/proc/self/mountinfo`); a private copy made some other way
/// is not detected.
pub fn cannot_move_mounts(root: &Path) -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
    const CAP_SYS_ADMIN: u32 = 21;
    match effective.and_then(|hex| u64::from_str_radix(hex, 16).ok()) {
        Some(caps) if caps & (1 << CAP_SYS_ADMIN) != 0 => {}
        _ => return Some("unmounting needs CAP_SYS_ADMIN, which this process lacks".into()),
    }
    if let (Ok(own), Ok(init)) = (fs::read_link("/proc/self/ns/mnt"), fs::read_link("/proc/1/ns/mnt")) {
        if own != init {
            return Some(NAMESPACE_OF_ITS_OWN.into());
        }
        return None;
    }
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let holder = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = Path::new(fields.get(4)?);
            let tags: Vec<&str> = fields.get(6..)?.iter().copied().take_while(|f| *f != "-").collect();
            root.starts_with(point).then_some((point.as_os_str().len(), tags))
        })
        .max_by_key(|(len, _)| *len);
    match holder {
        Some((_, tags))
            if tags.iter().any(|t| t.starts_with("master:")) && !tags.iter().any(|t| t.starts_with("shared:")) =>
        {
            Some(NAMESPACE_OF_ITS_OWN.into())
        }
        _ => None,
    }
}

const NAMESPACE_OF_ITS_OWN: &str = "this process runs in a mount namespace of its own (a systemd unit's \
    ProtectSystem=, PrivateTmp=...), where an unmount would not reach the runner's mount; \
    run it in the host's mount namespace (docs/deployment.md)";

/// How `<root>/<name>` relates to its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mount {
    /// The image is mounted there.
    Ours,
    /// A plain directory: nothing is mounted there.
    None,
}

/// Whether `dir` (a directory of `root`) is the mount of `image`: another
/// device than the root's, a loop device whose backing file is `image`.
/// Something else mounted there is an error, and nothing touches it.
fn mount_of(root: &Path, dir: &Path, image: &Path) -> Result<Mount> {
    let meta = fs::symlink_metadata(dir).map_err(|e| io_error(dir, "cannot be read", &e))?;
    let root_dev = fs::metadata(root).map_err(|e| io_error(root, "cannot be read", &e))?.dev();
    if meta.dev() == root_dev {
        return Ok(Mount::None);
    }
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let backing = backing_file(Path::new(&format!("/sys/dev/block/{major}:{minor}")));
    let image = image.canonicalize().unwrap_or_else(|_| image.to_owned());
    if backing.is_some_and(|b| b == image) {
        return Ok(Mount::Ours);
    }
    Err(error(
        ErrorKind::Io,
        dir,
        format!("something else than {} is mounted here (device {major}:{minor}); left alone", image.display()),
    ))
}

/// The loop device `image` is attached to (`loopN`), if any: a bounded
/// storage detached lazily while its job still held a file keeps it until
/// the last one is closed. Compared by device and inode (the kernel's own
/// record, `LOOP_GET_STATUS64`): the path it was attached under is gone
/// once the image moved to quarantine.
fn loop_device_of(image: &Path) -> Option<String> {
    let meta = fs::metadata(image).ok()?;
    let wanted = (meta.dev(), meta.ino());
    fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dev| dev.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("loop"))
        .find(|name| loop_backing_inode(name) == Some(wanted))
}

/// `(st_dev, st_ino)` of the file attached to `/dev/<name>`, if any.
fn loop_backing_inode(name: &str) -> Option<(u64, u64)> {
    /// `struct loop_info64` of `<linux/loop.h>` (all of it: the kernel
    /// writes the whole struct; two fields are read).
    #[allow(dead_code)]
    #[repr(C)]
    struct LoopInfo64 {
        lo_device: u64,
        lo_inode: u64,
        lo_rdevice: u64,
        lo_offset: u64,
        lo_sizelimit: u64,
        lo_number: u32,
        lo_encrypt_type: u32,
        lo_encrypt_key_size: u32,
        lo_flags: u32,
        lo_file_name: [u8; 64],
        lo_crypt_name: [u8; 64],
        lo_encrypt_key: [u8; 32],
        lo_init: [u64; 2],
    }
    const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
    use std::os::fd::AsRawFd;
    let device = fs::File::open(Path::new("/dev").join(name)).ok()?;
    // SAFETY: all-zero bytes are a valid LoopInfo64 (integers and arrays).
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: LOOP_GET_STATUS64 fills a struct loop_info64, which `info`
    // is, on an open descriptor; it fails (ENXIO) when nothing is attached.
    let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_GET_STATUS64 as _, &mut info as *mut LoopInfo64) };
    (rc == 0).then_some((info.lo_device, info.lo_inode))
}

/// Refuses to mount `image` while it is still attached from its lazily
/// detached mount: `mount` would reuse that loop device, whose superblock
/// is mounted writable (a read-only mount is refused, a writable one
/// shares it and then never matches the image's path again).
fn require_released(image: &Path) -> Result<()> {
    match loop_device_of(image) {
        None => Ok(()),
        Some(device) => Err(error(
            ErrorKind::Io,
            image,
            format!(
                "is still in use: a process of its job holds a file of it (its mount was detached lazily and \
                 /dev/{device} stays attached until that file is closed); try again once the job is gone"
            ),
        )),
    }
}

/// The file behind a loop device, from its sysfs directory (`None`: not a
/// loop device, or none attached).
fn backing_file(device: &Path) -> Option<PathBuf> {
    let bytes = fs::read(device.join("loop/backing_file")).ok()?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes.strip_suffix(b"\n").unwrap_or(&bytes))))
}

/// What [`reattach_all`] found for one bounded storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reattached {
    /// It was (and is) mounted.
    Mounted,
    /// It was mounted again (after a reboot or an interrupted move).
    Remounted,
    /// Dry run: it would have to be mounted again.
    WouldRemount,
    /// The image had moved on with its directory; the stale link was dropped.
    Forgotten,
}

/// What [`reattach_all`] did per name, and the names it could not bring
/// back, with why.
pub type Reattachment = (Vec<(String, Reattached)>, Vec<(String, StorageError)>);

/// Applies the module's recovery rule to every image of `.images/` (see
/// the module documentation). Returns what it did per name, and the names
/// it could not bring back, with why (their storages are not to be read:
/// their directory is empty or gone). With `dry_run`, nothing changes.
pub fn reattach_all(root: &Path, dry_run: bool) -> Result<Reattachment> {
    let images = root.join(IMAGES_DIR);
    let listing = match fs::read_dir(&images) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io_error(&images, "cannot list", &e)),
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| io_error(&images, "cannot list", &e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if let Some(name) = file_name.strip_suffix(".img").filter(|n| is_valid_runner_name(n)) {
            names.push(name.to_owned());
        } else if !dry_run && file_name.starts_with('.') && file_name.contains(".img.part.") {
            drop_stale_part(&entry.path());
        }
    }
    names.sort();
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for name in names {
        match reattach(root, &name, dry_run) {
            Ok(Some(what)) => done.push((name, what)),
            Ok(None) => {}
            Err(e) => failed.push((name, e)),
        }
    }
    Ok((done, failed))
}

/// A `create` that died before its image got its name leaves
/// `.NAME.img.part.PID`; once it is an hour old, and no longer mounted, it
/// is removed (its storage directory, empty, is deleted by a collect as a
/// storage without data).
fn drop_stale_part(path: &Path) {
    let old = fs::symlink_metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(3600));
    if old && loop_device_of(path).is_none() {
        let _ = fs::remove_file(path);
    }
}

/// [`reattach_all`] for commands that otherwise leave the root alone
/// (`storage list`): a dry pass first, then the changes under the root's
/// lock, taken without waiting, so they never cross a collect's moves.
/// When a run holds the lock, what needs mounting is reported, unchanged.
pub fn reattach_all_if_free(root: &Path) -> Result<Reattachment> {
    let (seen, mut failed) = reattach_all(root, true)?;
    if seen.iter().all(|(_, what)| *what == Reattached::Mounted) {
        return Ok((seen, failed));
    }
    match crate::lock::RootLock::acquire(root, Duration::ZERO) {
        Ok(lock) => {
            let done = reattach_all(root, false);
            drop(lock);
            done
        }
        Err(busy) => {
            let (mounted, stuck): (Vec<_>, Vec<_>) =
                seen.into_iter().partition(|(_, what)| *what == Reattached::Mounted);
            failed.extend(stuck.into_iter().map(|(name, _)| {
                let e = error(ErrorKind::Io, &root.join(&name), format!("not mounted, and not mounted now: {busy}"));
                (name, e)
            }));
            Ok((mounted, failed))
        }
    }
}

/// [`reattach`] for one name, as [`reattach_all_if_free`] does it.
pub fn reattach_if_free(root: &Path, name: &str) -> Result<Option<Reattached>> {
    match reattach(root, name, true)? {
        Some(Reattached::WouldRemount | Reattached::Forgotten) => {
            let lock = crate::lock::RootLock::acquire(root, Duration::ZERO).map_err(|busy| {
                error(ErrorKind::Io, &root.join(name), format!("not mounted, and not mounted now: {busy}"))
            })?;
            let done = reattach(root, name, false);
            drop(lock);
            done
        }
        seen => Ok(seen),
    }
}

/// The recovery rule for one name; `None` when `name` has no image (a
/// plain storage).
pub fn reattach(root: &Path, name: &str, dry_run: bool) -> Result<Option<Reattached>> {
    let image = image_path(root, name);
    let meta = match fs::symlink_metadata(&image) {
        Ok(meta) if meta.is_file() => meta,
        Ok(meta) => {
            return Err(error(
                ErrorKind::NotADirectory,
                &image,
                format!("is {}, not an image; left alone", kind_of(&meta)),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&image, "cannot be read", &e)),
    };
    let dir = root.join(name);
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if dry_run {
                return Ok(Some(if meta.nlink() > 1 { Reattached::Forgotten } else { Reattached::WouldRemount }));
            }
            if meta.nlink() > 1 {
                fs::remove_file(&image).map_err(|e| io_error(&image, "cannot drop the stale link", &e))?;
                return Ok(Some(Reattached::Forgotten));
            }
            fs::create_dir(&dir).map_err(|e| io_error(&dir, "cannot make the mount point again", &e))?;
        }
        Err(e) => return Err(io_error(&dir, "cannot be read", &e)),
        Ok(m) if !m.is_dir() => {
            return Err(error(
                ErrorKind::NotADirectory,
                &dir,
                format!("is {}, not the mount point of {}; left alone", kind_of(&m), image.display()),
            ))
        }
        Ok(_) => {
            if mount_of(root, &dir, &image)? == Mount::Ours {
                return Ok(Some(Reattached::Mounted));
            }
            if dry_run {
                return Ok(Some(Reattached::WouldRemount));
            }
            // A move or a restore cut short left the image linked inside.
            let inside = dir.join(IMAGE_IN_STORAGE);
            if fs::symlink_metadata(&inside).is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev()) {
                fs::remove_file(&inside).map_err(|e| io_error(&inside, "cannot drop the link", &e))?;
            }
            let mut entries = fs::read_dir(&dir).map_err(|e| io_error(&dir, "cannot list", &e))?;
            if entries.next().is_some() {
                return Err(error(
                    ErrorKind::Io,
                    &dir,
                    format!("is not mounted and not empty, so {} is not mounted over it; left alone", image.display()),
                ));
            }
        }
    }
    mount(&image, &dir, false)?;
    Ok(Some(Reattached::Remounted))
}

/// Moves the storage `name` out of the runner namespace with `rename` (a
/// rename of `<root>/<name>` into `.deleting/` or `.quarantine/`). A plain
/// storage is just renamed. A bounded one is unmounted, its image linked
/// inside as [`IMAGE_IN_STORAGE`], renamed, and its `.images/` link
/// dropped; if the rename fails it is mounted back. The outer `Err`: the
/// storage could not be prepared and is untouched (still mounted).
pub fn move_out<T, E>(
    root: &Path,
    name: &str,
    rename: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<std::result::Result<T, E>> {
    let image = image_path(root, name);
    match fs::symlink_metadata(&image) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(rename()),
        Err(e) => return Err(io_error(&image, "cannot be read", &e)),
        Ok(_) => {}
    }
    let dir = root.join(name);
    if mount_of(root, &dir, &image)? == Mount::Ours {
        if let Some(why) = cannot_move_mounts(root) {
            return Err(error(ErrorKind::Io, &dir, format!("a bounded storage cannot be moved: {why}")));
        }
        match unmount_helper::unmount(name) {
            Some(done) => done.map_err(|why| error(ErrorKind::Io, &dir, format!("cannot unmount: {why}")))?,
            None => unmount(&dir)?,
        }
    }
    let inside = dir.join(IMAGE_IN_STORAGE);
    match fs::hard_link(&image, &inside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && same_file(&image, &inside) => {}
        Err(e) => {
            let _ = mount(&image, &dir, false);
            return Err(io_error(&inside, &format!("cannot link {} here", image.display()), &e));
        }
    }
    match rename() {
        Ok(moved) => {
            // Left behind, this link is dropped by the next reattach (no
            // directory, a second link).
            let _ = fs::remove_file(&image);
            Ok(Ok(moved))
        }
        Err(e) => {
            let _ = fs::remove_file(&inside);
            let _ = mount(&image, &dir, false);
            Ok(Err(e))
        }
    }
}

/// Whether `<root>/<name>` is a bounded storage of ours, mounted: a valid
/// runner name, its image in `.images/`, mounted there. The confined
/// filesystem enters no other mount from the root.
pub fn is_own_mount(root: &Path, name: &str) -> bool {
    if !is_valid_runner_name(name) {
        return false;
    }
    let image = image_path(root, name);
    fs::symlink_metadata(&image).is_ok_and(|meta| meta.is_file())
        && matches!(mount_of(root, &root.join(name), &image), Ok(Mount::Ours))
}

/// Unmounts the bounded storage `name` of `root`, and nothing else: a
/// valid runner name whose directory is the mount of its own image. What
/// the unmount helper of a confined collect does for each request
/// ([`unmount_helper`]).
pub fn unmount_storage(root: &Path, name: &str) -> Result<()> {
    let dir = require_name(root, name)?;
    let image = image_path(root, name);
    if !is_marked_image(&image) {
        return Err(error(ErrorKind::Io, &image, "is not the image of a bounded storage; nothing unmounted"));
    }
    match mount_of(root, &dir, &image)? {
        Mount::Ours => unmount(&dir),
        Mount::None => Ok(()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The image a quarantined (or moved) storage directory holds, if it is
/// one of ours.
pub fn image_inside(storage_dir: &Path) -> Option<PathBuf> {
    let inside = storage_dir.join(IMAGE_IN_STORAGE);
    is_marked_image(&inside).then_some(inside)
}

/// Before a quarantined storage directory holding an image goes back
/// under `name`: links the image into `.images/` (the first step of a
/// restore; see the module documentation for why this order).
pub fn link_back(root: &Path, image: &Path, name: &str) -> Result<()> {
    let target = image_path(root, name);
    super::ensure_reserved_dir(root, IMAGES_DIR)?;
    fs::hard_link(image, &target).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => error(ErrorKind::AlreadyExists, &target, "an image with this name exists"),
        _ => io_error(&target, &format!("cannot link {} here", image.display()), &e),
    })
}

/// Undoes [`link_back`] when the move back failed.
pub fn unlink_back(root: &Path, name: &str) {
    let _ = fs::remove_file(image_path(root, name));
}

/// The top-level entries of the filesystem in `image`, mounted read-only
/// (and `nodev,nosuid,noexec`) on a private directory for the listing.
pub fn image_contents(root: &Path, image: &Path) -> Result<Vec<ContentEntry>> {
    let images = super::ensure_reserved_dir(root, IMAGES_DIR)?;
    let at = tempfile::Builder::new()
        .prefix(".show.")
        .tempdir_in(&images)
        .map_err(|e| io_error(&images, "cannot make a directory to mount on", &e))?;
    mount(image, at.path(), true)?;
    let listed = super::list_entries(at.path());
    let unmounted = unmount(at.path());
    let listed = listed?;
    unmounted?;
    Ok(listed)
}
