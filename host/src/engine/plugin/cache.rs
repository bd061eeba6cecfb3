//! The compiled-code cache, trusted only as far as its MAC.
//!
//! wasmtime runs serialized code as it is (`Component::deserialize` is
//! `unsafe` for that reason): whoever can write a cache entry owns every
//! later run that loads it, confined or not. So:
//!
//! * each entry carries an HMAC-SHA256 of its name and bytes, under a key
//!   kept beside the entries (`runner-metrics.key`, 32 random bytes, mode
//!   0600, made once, atomically). An entry whose MAC does not match (changed,
//!   planted, written by another version or renamed from another entry) is
//!   never deserialized: it is compiled again, rewritten, and reported;
//! * the CLI reads, checks and (on a miss) compiles and writes both
//!   components *before* it confines itself ([`Precompiled`]), and the
//!   confined process is granted nothing of the cache: it can neither read
//!   the key nor write an entry, so nothing a confined run could write is
//!   ever run by a later one.
//!
//! An entry is `MAGIC`, the 32-byte tag, the entry's own file name and a
//! NUL, then wasmtime's serialized code; the tag is over the name, the NUL
//! and the code, which lie together in the file, so an entry is checked
//! where it was read, with no copy (the start of every run reads two).

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ring::hmac;
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::bindings::IntoAnyhow;
use crate::lock::kind_of;
use crate::log::open_regular_file_with;

/// The key's file name in the cache directory.
pub const KEY_FILE: &str = "runner-metrics.key";
const KEY_LEN: usize = 32;
/// The first bytes of an entry: this format, version 2.
const MAGIC: &[u8; 8] = b"RMCODE2\n";
const TAG_LEN: usize = 32;
/// Where the signed part of an entry starts.
const SIGNED_AT: usize = MAGIC.len() + TAG_LEN;

/// A cache directory and its key.
pub struct CodeCache {
    dir: PathBuf,
    key: hmac::Key,
}

/// Serialized code: the bytes of an entry read whole, from where its code
/// starts (or freshly compiled code, from 0).
pub struct Code {
    bytes: Vec<u8>,
    start: usize,
}

impl Code {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, start: 0 }
    }
}

impl AsRef<[u8]> for Code {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }
}

/// What became of one cache entry.
pub enum Loaded {
    /// Its MAC matched: the serialized code, to deserialize.
    Verified(Code),
    /// There is none (or it cannot be read).
    Missing,
    /// It is there but its MAC does not match: never to be run.
    Refused(String),
}

impl CodeCache {
    /// Opens `dir` (made if missing) and its key (made if missing).
    pub fn open(dir: &Path) -> Result<Self> {
        check_dir(dir)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating the cache directory {}", dir.display()))?;
        let key = read_or_make_key(dir)?;
        Ok(Self { dir: dir.to_owned(), key: hmac::Key::new(hmac::HMAC_SHA256, &key) })
    }

    /// The entry of `wasm` as `engine` compiles it: the name covers the
    /// component's bytes, everything in the engine that changes the code,
    /// and this version.
    pub fn entry(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        wasm.hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        self.dir.join(format!("runner-metrics-{:016x}.cwasm", hasher.finish()))
    }

    /// Reads `entry` and checks its MAC.
    pub fn load(&self, entry: &Path) -> Loaded {
        let Some(bytes) = read_entry(entry) else { return Loaded::Missing };
        let refused = |why: &str| Loaded::Refused(format!("{}: {why}", entry.display()));
        let (Some(magic), Some(tag), Some(signed)) =
            (bytes.get(..MAGIC.len()), bytes.get(MAGIC.len()..SIGNED_AT), bytes.get(SIGNED_AT..))
        else {
            return refused("too short to be a cache entry");
        };
        if magic != MAGIC {
            return refused("not a cache entry of this format");
        }
        let name = file_name(entry);
        // The name it was written under, then a NUL: another entry's
        // (renamed, or copied over this one) is refused like a forgery.
        if signed.get(..name.len()) != Some(name) || signed.get(name.len()) != Some(&0) {
            return refused("written for another entry (its MAC is not for this name)");
        }
        match hmac::verify(&self.key, signed, tag) {
            Ok(()) => Loaded::Verified(Code { start: SIGNED_AT + name.len() + 1, bytes }),
            Err(_) => {
                refused("its MAC does not match (changed since this program wrote it, or written by something else)")
            }
        }
    }

    /// Writes `code` as `entry`, with its MAC, atomically (a temporary
    /// file, then rename).
    pub fn store(&self, entry: &Path, code: &[u8]) -> Result<()> {
        let name = file_name(entry);
        let mut mac = hmac::Context::with_key(&self.key);
        for part in [name, &[0], code] {
            mac.update(part);
        }
        let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(&self.dir)?;
        for part in [MAGIC, mac.sign().as_ref(), name, &[0], code] {
            tmp.write_all(part)?;
        }
        tmp.persist(entry)?;
        Ok(())
    }
}

/// The cache directory must be a directory, or not exist yet (it is made
/// when the first entry is written). The operator names it, so a symlink
/// to a directory is followed; the entries and the key in it never are.
pub fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => anyhow::bail!("cache directory {}: is {}, not a directory", dir.display(), kind_of(&meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cache directory {}", dir.display()))),
    }
}

/// An entry's file name, which its MAC covers (with a NUL and the code),
/// so an entry renamed to another's name is refused too.
fn file_name(entry: &Path) -> &[u8] {
    entry.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default()
}

/// The bytes of an entry, if it is a regular file that can be read
/// (opened without following a symlink, never blocking on a FIFO).
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let mut file = open_regular_file_with(path, std::fs::OpenOptions::new().read(true), libc::O_NOFOLLOW).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The key: read, or made and put in place with `link(2)`, which never
/// replaces one another process made first.
fn read_or_make_key(dir: &Path) -> Result<[u8; KEY_LEN]> {
    let path = dir.join(KEY_FILE);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    let mut key = [0u8; KEY_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("no random bytes for the cache key"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".key")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("making the cache key in {}", dir.display()))?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    match std::fs::hard_link(tmp.path(), &path) {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(&path)?.with_context(|| format!("the cache key {} vanished", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("putting the cache key in place at {}", path.display())),
    }
}

/// The key at `path`; `None` if there is none. A key anyone else could
/// read or write is refused: the MAC would prove nothing.
fn read_key(path: &Path) -> Result<Option<[u8; KEY_LEN]>> {
    let mut file = match open_regular_file_with(path, std::fs::OpenOptions::new().read(true), libc::O_NOFOLLOW) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cache key {}", path.display())),
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    anyhow::ensure!(
        meta.uid() == euid && meta.mode() & 0o077 == 0,
        "cache key {}: owned by uid {} with mode {:o}; it must be this user's (uid {euid}) and mode 0600",
        path.display(),
        meta.uid(),
        meta.mode() & 0o7777
    );
    let mut key = [0u8; KEY_LEN];
    let mut extra = [0u8; 1];
    file.read_exact(&mut key).with_context(|| format!("cache key {}: shorter than {KEY_LEN} bytes", path.display()))?;
    anyhow::ensure!(file.read(&mut extra)? == 0, "cache key {}: longer than {KEY_LEN} bytes", path.display());
    Ok(Some(key))
}

/// Both components' code, read and checked (or compiled and written)
/// before the process confines itself; see the module's doc.
#[derive(Default)]
pub struct Precompiled {
    pub(crate) plugin: Option<Code>,
    pub(crate) keeper: Option<Code>,
    /// Whether the plugin's code came from the cache.
    pub(crate) plugin_from_cache: bool,
    /// Entries refused and compiled again, or a cache that could not be
    /// used: to be said once.
    pub notes: Vec<String>,
}

impl Precompiled {
    /// Nothing precompiled: both components are compiled when needed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads and checks both entries in `cache_dir`; compiles and writes
    /// the ones missing or refused. `engine` must be configured as the
    /// plugin's will be; with `parallel_compilation(false)` it starts no
    /// thread, so a process can still confine itself afterwards.
    pub fn prepare(engine: &Engine, cache_dir: &Path, wasm: [&[u8]; 2]) -> Self {
        let mut done = Self::default();
        let cache = match CodeCache::open(cache_dir) {
            Ok(cache) => cache,
            Err(e) => {
                done.notes.push(format!("the code cache is not used: {e:#}"));
                return done;
            }
        };
        let [plugin, keeper] = wasm.map(|wasm| {
            let entry = cache.entry(engine, wasm);
            match cache.load(&entry) {
                Loaded::Verified(code) => return Some((code, true)),
                Loaded::Missing => {}
                Loaded::Refused(why) => done.notes.push(format!("refused a cache entry, compiled it again: {why}")),
            }
            let code = Component::new(engine, wasm).anyhow().and_then(|c| c.serialize().anyhow());
            match code {
                Ok(code) => {
                    if let Err(e) = cache.store(&entry, &code) {
                        done.notes.push(format!("could not write the cache entry {}: {e:#}", entry.display()));
                    }
                    Some((Code::new(code), false))
                }
                // Compiled again where it is used, where the error says more.
                Err(_) => None,
            }
        });
        done.plugin_from_cache = plugin.as_ref().is_some_and(|(_, cached)| *cached);
        done.plugin = plugin.map(|(code, _)| code);
        done.keeper = keeper.map(|(code, _)| code);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_trusted_only_with_its_mac_under_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(dir.path()).unwrap();
        let (a, b) = (dir.path().join("a.cwasm"), dir.path().join("b.cwasm"));
        cache.store(&a, b"code of a").unwrap();
        assert!(matches!(cache.load(&a), Loaded::Verified(code) if code.as_ref() == b"code of a"));
        assert!(matches!(cache.load(&b), Loaded::Missing));

        // Renamed to another entry's name: refused.
        std::fs::copy(&a, &b).unwrap();
        assert!(matches!(cache.load(&b), Loaded::Refused(why) if why.contains("MAC")));
        // One byte changed: refused.
        let mut bytes = std::fs::read(&a).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&a, &bytes).unwrap();
        assert!(matches!(cache.load(&a), Loaded::Refused(_)));
        // Raw wasmtime code without our header, or a short file: refused.
        std::fs::write(&a, b"\x7fELF plus machine code").unwrap();
        assert!(matches!(cache.load(&a), Loaded::Refused(_)));

        // The key is kept: a second open checks what the first wrote.
        cache.store(&a, b"again").unwrap();
        let reopened = CodeCache::open(dir.path()).unwrap();
        assert!(matches!(reopened.load(&a), Loaded::Verified(code) if code.as_ref() == b"again"));
        // A new key (another cache, another version's) refuses it.
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let rekeyed = CodeCache::open(dir.path()).unwrap();
        assert!(matches!(rekeyed.load(&a), Loaded::Refused(_)));
    }

    #[test]
    fn a_cache_directory_named_through_a_symlink_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let cache = CodeCache::open(&link).unwrap();
        let entry = link.join("e.cwasm");
        cache.store(&entry, b"code").unwrap();
        assert!(matches!(cache.load(&entry), Loaded::Verified(code) if code.as_ref() == b"code"));
        assert!(real.join(KEY_FILE).exists());
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(format!("{:#}", CodeCache::open(&dir.path().join("file")).err().unwrap()).contains("not a directory"));
    }

    #[test]
    fn a_key_others_could_read_or_that_is_not_a_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        CodeCache::open(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = format!("{:#}", CodeCache::open(dir.path()).err().unwrap());
        assert!(e.contains("mode 0600"), "{e}");
        std::fs::remove_file(&key).unwrap();
        std::os::unix::fs::symlink("elsewhere", &key).unwrap();
        assert!(CodeCache::open(dir.path()).is_err());
    }
}
