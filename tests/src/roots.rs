//! Storage roots built for a test: runner directories with given files, symlinks, FIFOs, stray entries.

use crate::*;

/// A temporary directory holding a storage root (`<tmp>/runner-fs`) and an
/// `outside` directory beside it, for symlink targets that a runner must
/// never reach through the manager.
pub struct StorageRoot {
    _temp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Default for StorageRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl StorageRoot {
    pub fn new() -> Self {
        let temp = tempfile::Builder::new().prefix("runner-metrics-e2e-").tempdir().expect("temp dir");
        let root = temp.path().join("runner-fs");
        let outside = temp.path().join("outside");
        fs::create_dir(&root).expect("create root");
        fs::create_dir(&outside).expect("create outside");
        Self { _temp: temp, root, outside }
    }

    /// The storage root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A directory next to the root, not inside it.
    pub fn outside(&self) -> &Path {
        &self.outside
    }

    /// `<root>/<name>`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `<root>/.quarantine`.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join(".quarantine")
    }

    /// Creates the runner directory `<root>/<name>` (empty).
    pub fn runner(&self, name: &str) -> Runner {
        let path = self.root.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Runner { path }
    }

    /// A runner directory with all four valid files.
    pub fn valid_runner(&self, name: &str) -> Runner {
        let runner = self.runner(name);
        for (file, content) in valid_files() {
            runner.file(file, content);
        }
        runner
    }

    /// A runner directory holding fixture F of spec 6.
    pub fn fixture_f(&self, name: &str) -> Runner {
        let runner = self.runner(name);
        runner.file(START, F_START).file(INSTALLED, F_INSTALLED).file(PRE_JOB, F_PRE_JOB).file(POST_JOB, F_POST_JOB);
        runner
    }

    /// A regular file directly in the root.
    pub fn root_file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, content).expect("write root file");
        path
    }

    /// A symlink directly in the root.
    pub fn root_symlink(&self, name: &str, target: impl AsRef<Path>) -> PathBuf {
        let path = self.root.join(name);
        std::os::unix::fs::symlink(target, &path).expect("root symlink");
        path
    }

    /// A FIFO directly in the root.
    pub fn root_fifo(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        mkfifo(&path).expect("root fifo");
        path
    }
}

/// One runner directory, with chainable builders for its entries.
pub struct Runner {
    pub path: PathBuf,
}

impl Runner {
    pub fn name(&self) -> String {
        self.path.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// A regular file with `content`.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> &Self {
        fs::write(self.path.join(name), content).expect("write runner file");
        self
    }

    /// A regular file of exactly `size` bytes: `content` followed by
    /// spaces, so it is valid in every way but its size (surrounding
    /// whitespace is allowed in timestamp and JSON files alike).
    pub fn padded(&self, name: &str, content: impl AsRef<[u8]>, size: usize) -> &Self {
        let mut bytes = content.as_ref().to_vec();
        assert!(bytes.len() <= size, "content longer than {size} bytes");
        bytes.resize(size, b' ');
        self.file(name, bytes)
    }

    /// A symlink named `name` pointing at `target`.
    pub fn symlink(&self, name: &str, target: impl AsRef<Path>) -> &Self {
        std::os::unix::fs::symlink(target, self.path.join(name)).expect("symlink");
        self
    }

    /// A directory named `name` holding one small file.
    pub fn dir(&self, name: &str) -> &Self {
        let dir = self.path.join(name);
        fs::create_dir(&dir).expect("dir in place of a file");
        fs::write(dir.join("inner.txt"), b"inside a directory\n").expect("inner file");
        self
    }

    /// A FIFO named `name`.
    pub fn fifo(&self, name: &str) -> &Self {
        mkfifo(&self.path.join(name)).expect("mkfifo");
        self
    }

    /// Removes one entry (file, symlink, FIFO or directory tree).
    pub fn remove(&self, name: &str) -> &Self {
        let path = self.path.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path).expect("remove dir"),
            Ok(_) => fs::remove_file(&path).expect("remove"),
            Err(_) => {}
        }
        self
    }

    /// Sets the directory's modification time to `ago` before now (the
    /// directory is opened read-only; `futimens` works on that descriptor).
    pub fn age(&self, ago: Duration) -> &Self {
        set_mtime_ago(&self.path, ago).expect("set mtime");
        self
    }
}

/// `mkfifo(path, 0644)`.
pub fn mkfifo(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the modification time of a file or directory to `ago` before now.
pub fn set_mtime_ago(path: &Path, ago: Duration) -> io::Result<()> {
    let file = fs::File::open(path)?;
    file.set_modified(SystemTime::now() - ago)
}
