//! A directory listing streamed from `getdents64`, in a fixed buffer (memory
//! flat in the number of entries). The first listing of a descriptor reads
//! the descriptor's own open file, whose offset nobody has moved yet, so
//! listing a directory just opened costs no `openat` and `close` of its own.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use rustix::io::Errno;

/// Bytes of entries fetched per `getdents64` (a root of 10,000 storages is
/// about 25 calls).
const BUFFER: usize = 16 * 1024;

/// The fixed part of a `linux_dirent64`: inode, offset, record length, type.
const HEADER: usize = 8 + 8 + 2 + 1;

pub struct Listing {
    fd: Arc<OwnedFd>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    done: bool,
}

/// One entry: its name (bytes, no NUL) and `d_type`.
pub struct Entry<'a> {
    pub name: &'a [u8],
    pub d_type: u8,
}

impl Listing {
    /// Lists `fd` from its current offset (0 for a directory just opened).
    pub fn new(fd: Arc<OwnedFd>) -> Self {
        Self { fd, buf: vec![0; BUFFER], pos: 0, len: 0, done: false }
    }

    /// The directory being listed (for `fstatat` of a `DT_UNKNOWN` entry).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The next entry (`.` and `..` included), `None` at the end.
    pub fn next(&mut self) -> Option<Result<Entry<'_>, Errno>> {
        if self.pos >= self.len {
            if self.done {
                return None;
            }
            match self.fill() {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let record = self.buf.get(self.pos..self.len).unwrap_or_default();
        // `d_reclen` and `d_type`; a record shorter than a header is refused below.
        let (reclen, d_type) = match record.get(16..HEADER) {
            Some(&[lo, hi, d_type]) => (usize::from(u16::from_ne_bytes([lo, hi])), d_type),
            _ => (0, 0),
        };
        if reclen < HEADER || reclen > record.len() {
            // Not what the kernel writes: stop rather than misread.
            self.done = true;
            self.pos = self.len;
            return Some(Err(Errno::IO));
        }
        let name = record.get(HEADER..reclen)?;
        let name = name.split(|&b| b == 0).next().unwrap_or(name);
        self.pos += reclen;
        Some(Ok(Entry { name, d_type }))
    }

    fn fill(&mut self) -> Result<usize, Errno> {
        loop {
            // SAFETY: the buffer is ours and `BUFFER` bytes long; the
            // kernel writes at most that many and returns how many.
            let n = unsafe {
                libc::syscall(libc::SYS_getdents64, self.fd.as_raw_fd(), self.buf.as_mut_ptr(), self.buf.len())
            };
            if n < 0 {
                let errno = Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
                if errno == Errno::INTR {
                    continue;
                }
                return Err(errno);
            }
            let n = usize::try_from(n).unwrap_or(0).min(self.buf.len());
            self.pos = 0;
            self.len = n;
            return Ok(n);
        }
    }
}
