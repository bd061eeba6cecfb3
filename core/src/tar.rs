//! A bounded reader of the tar stream a runner VM sends for pulled metrics
//! (spec 9): `ssh runner 'tar -C /home/ubuntu/metrics-exchange -cf - .'`.
//!
//! The stream comes from the untrusted VM, so this reads it the way the
//! storage flow reads a directory: nothing is trusted, everything is
//! bounded, and anything that is not plainly the runner's metrics files
//! makes the runner corrupt with a reason.
//!
//! * **Bounds** ([`TarLimits`]): total bytes (checked before anything is
//!   parsed), entries, and the declared size of a known file (the
//!   1024-byte limit, refused from the header, before any data is taken).
//!   A stream that claims more data than it holds is truncated, not read.
//! * **Names**: only the known files at the top level are read, named as
//!   `tar -C DIR -cf - .` writes them (`./name`) or bare (`name`). The
//!   `./` entry itself is expected; other regular files and directories
//!   with unknown names are ignored, as the storage flow ignores them.
//!   An absolute name, a `..` component, a name that is not UTF-8 or a
//!   second entry with the same name is corrupt.
//! * **Kinds**: a known name must be a regular file. A symlink, hard link,
//!   device, FIFO, a directory with a known name, or any other kind is
//!   corrupt, whatever its name.
//! * **Format**: POSIX ustar and GNU headers with a valid checksum, ended
//!   by a zero block, followed by nothing but zeros. Extension headers (GNU
//!   long names, pax) are corrupt: they could rename the next entry, and
//!   the metrics files' names are short.
//!
//! Pure Rust over a byte slice: the same code natively and in the guest.

use crate::files;
use crate::model::{LooseFiles, QuarantineReason};
use crate::parse::Corruption;
use crate::FILE_SIZE_BYTES_LIMIT;

const BLOCK: usize = 512;

/// How much of a pulled stream is read at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarLimits {
    /// Bytes of the whole stream (headers, data, padding, end blocks).
    pub max_bytes: usize,
    /// Entries (the `./` directory included).
    pub max_entries: usize,
}

impl Default for TarLimits {
    /// 64 KiB and 64 entries: three files of at most 1 KiB, as GNU tar
    /// writes them (padded to a 10 KiB record), with room to spare.
    fn default() -> Self {
        Self { max_bytes: 64 * 1024, max_entries: 64 }
    }
}

/// The slot of a known file's bytes.
trait Slots {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Vec<u8>>>;
}

impl Slots for LooseFiles {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Vec<u8>>> {
        match name {
            files::INSTALLED => Some(&mut self.installed),
            files::PRE_JOB => Some(&mut self.pre_job),
            files::POST_JOB => Some(&mut self.post_job),
            _ => None,
        }
    }
}

/// Reads the known metrics files out of `stream`. `Err`: why the stream
/// makes the runner corrupt (it names the entry when one is to blame):
/// `oversized` past a bound, `not-regular-file` for an entry of another
/// kind, `invalid-archive` for everything else.
pub fn read_metrics_tar(stream: &[u8], limits: &TarLimits) -> Result<LooseFiles, Corruption> {
    let archive = |detail: String| Corruption::new(QuarantineReason::InvalidArchive, detail);
    let kind = |detail: String| Corruption::new(QuarantineReason::NotRegularFile, detail);
    let oversized = |detail: String| Corruption::new(QuarantineReason::Oversized, detail);
    if stream.len() > limits.max_bytes {
        return Err(oversized(format!("the tar stream is larger than {} bytes", limits.max_bytes)));
    }
    let mut found = LooseFiles::default();
    let mut seen: Vec<String> = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(header) = at.checked_add(BLOCK).and_then(|end| stream.get(at..end)) else {
            return Err(archive(format!("the tar stream ends at byte {at} without its end-of-archive block")));
        };
        if header.iter().all(|&b| b == 0) {
            // The end: whatever follows (GNU tar pads to a 10 KiB record)
            // must be zeros too.
            return match stream.get(at..).unwrap_or_default().iter().position(|&b| b != 0) {
                None => Ok(found),
                Some(offset) => Err(archive(format!("the tar stream has data after its end, at byte {}", at + offset))),
            };
        }
        if seen.len() >= limits.max_entries {
            return Err(archive(format!("the tar stream has more than {} entries", limits.max_entries)));
        }
        let entry = Header::parse(header).map_err(|why| archive(format!("tar entry at byte {at}: {why}")))?;
        let data_start = at + BLOCK;
        let padded = entry.size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
        let data_end = usize::try_from(entry.size)
            .ok()
            .and_then(|size| data_start.checked_add(size))
            .filter(|end| *end <= stream.len())
            .ok_or_else(|| {
                archive(format!("tar entry {:?} claims {} bytes the stream does not hold", entry.name, entry.size))
            })?;
        let next = usize::try_from(padded).ok().and_then(|p| data_start.checked_add(p)).unwrap_or(usize::MAX);
        let name = normalize(&entry.name).map_err(archive)?;
        if seen.contains(&name) {
            return Err(archive(format!("tar entry {:?} appears twice", entry.name)));
        }
        seen.push(name.clone());
        match (entry.kind, found.slot(&name)) {
            (Kind::Regular, Some(slot)) => {
                if entry.size > FILE_SIZE_BYTES_LIMIT as u64 {
                    return Err(oversized(format!(
                        "{name} is {} bytes, more than the {FILE_SIZE_BYTES_LIMIT}-byte limit",
                        entry.size
                    )));
                }
                *slot = stream.get(data_start..data_end).map(<[u8]>::to_vec);
            }
            (Kind::Regular | Kind::Directory, None) => {}
            (Kind::Directory, Some(_)) => return Err(kind(format!("{name} is a directory, not a regular file"))),
            (Kind::Extension, _) => {
                return Err(archive(format!("tar entry {:?} is {}", entry.name, Kind::Extension.describe())))
            }
            (other, _) => {
                return Err(kind(format!("tar entry {:?} is {}, not a regular file", entry.name, other.describe())))
            }
        }
        at = next;
    }
}

/// The name an entry stands for at the top level: `./name` and `name` are
/// `name`, `./` and `.` are `.`, deeper names are kept whole (and ignored).
fn normalize(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err(format!("tar entry {raw:?} has an absolute name"));
    }
    let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(format!("tar entry {raw:?} has a '..' component"));
    }
    Ok(if parts.is_empty() { ".".to_owned() } else { parts.join("/") })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Directory,
    HardLink,
    Symlink,
    Device,
    Fifo,
    Extension,
    Other,
}

impl Kind {
    fn from_flag(flag: u8) -> Self {
        match flag {
            b'0' | 0 => Self::Regular,
            b'5' => Self::Directory,
            b'1' => Self::HardLink,
            b'2' => Self::Symlink,
            b'3' | b'4' => Self::Device,
            b'6' => Self::Fifo,
            b'L' | b'K' | b'x' | b'g' => Self::Extension,
            _ => Self::Other,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Regular => "a regular file",
            Self::Directory => "a directory",
            Self::HardLink => "a hard link",
            Self::Symlink => "a symlink",
            Self::Device => "a device",
            Self::Fifo => "a FIFO",
            Self::Extension => "an extension header (GNU long name or pax), which is not accepted",
            Self::Other => "an entry of an unknown kind",
        }
    }
}

/// What is read from one 512-byte header.
struct Header {
    name: String,
    size: u64,
    kind: Kind,
}

impl Header {
    fn parse(block: &[u8]) -> Result<Self, String> {
        let field = |from: usize, to: usize| block.get(from..to).unwrap_or_default();
        let magic = field(257, 263);
        if magic != b"ustar\0" && magic != b"ustar " {
            return Err("not a ustar or GNU tar header".to_owned());
        }
        let stored = octal(field(148, 156)).ok_or("its checksum is not an octal number")?;
        let computed: u64 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) })
            .sum();
        if stored != computed {
            return Err(format!("bad header checksum ({stored} stored, {computed} computed)"));
        }
        let kind = Kind::from_flag(block.get(156).copied().unwrap_or(0));
        let text = |bytes: &[u8]| -> Result<String, String> {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let bytes = bytes.get(..end).unwrap_or_default();
            String::from_utf8(bytes.to_vec()).map_err(|_| "its name is not UTF-8".to_owned())
        };
        let base = text(field(0, 100))?;
        // POSIX ustar splits long names into a prefix; GNU uses those bytes
        // for times, and its magic says so.
        let prefix = if magic == b"ustar\0" { text(field(345, 500))? } else { String::new() };
        let name = if prefix.is_empty() { base } else { format!("{prefix}/{base}") };
        let size_field = field(124, 136);
        // Base-256 (the high bit set) is how tar writes sizes of 8 GiB and
        // more: far past anything this reads.
        let size = if size_field.first().is_some_and(|b| b & 0x80 != 0) {
            u64::MAX
        } else {
            octal(size_field).ok_or_else(|| format!("entry {name:?}: its size is not an octal number"))?
        };
        Ok(Self { name, size, kind })
    }
}

/// An octal field: optional spaces, digits, then NUL or spaces.
fn octal(field: &[u8]) -> Option<u64> {
    let text = field.iter().skip_while(|&&b| b == b' ').take_while(|&&b| b != 0 && b != b' ');
    let mut value: u64 = 0;
    let mut any = false;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header block as GNU tar writes it (`ustar  ` magic) or POSIX.
    fn header(name: &str, flag: u8, size: u64, posix: bool) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[100..107].copy_from_slice(b"0000644");
        if size < 1 << 33 {
            block[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        } else {
            // Base-256, as tar writes sizes of 8 GiB and more.
            block[124] = 0x80;
            block[128..136].copy_from_slice(&size.to_be_bytes());
        }
        block[156] = flag;
        if posix {
            block[257..263].copy_from_slice(b"ustar\0");
            block[263..265].copy_from_slice(b"00");
        } else {
            block[257..265].copy_from_slice(b"ustar  \0");
        }
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        block
    }

    fn entry(stream: &mut Vec<u8>, name: &str, flag: u8, data: &[u8]) {
        stream.extend(header(name, flag, data.len() as u64, false));
        stream.extend(data);
        stream.resize(stream.len().div_ceil(BLOCK) * BLOCK, 0);
    }

    fn end(mut stream: Vec<u8>) -> Vec<u8> {
        stream.extend([0u8; 2 * BLOCK]);
        stream.resize(stream.len().div_ceil(10240) * 10240, 0);
        stream
    }

    fn read(stream: &[u8]) -> Result<LooseFiles, String> {
        read_metrics_tar(stream, &TarLimits::default()).map_err(|c| c.detail)
    }

    fn reason(stream: &[u8]) -> QuarantineReason {
        read_metrics_tar(stream, &TarLimits::default()).expect_err("corrupt").reason
    }

    fn valid() -> Vec<u8> {
        let mut s = Vec::new();
        entry(&mut s, "./", b'5', b"");
        entry(&mut s, "./runner-installed.timestamp", b'0', b"1700000060");
        entry(&mut s, "./pre-job-metrics.json", b'0', br#"{"timestamp": 1}"#);
        entry(&mut s, "./post-job-metrics.json", b'0', br#"{"timestamp": 2, "status": "normal"}"#);
        entry(&mut s, "./other-file", b'0', b"ignored");
        entry(&mut s, "./subdir/", b'5', b"");
        entry(&mut s, "./subdir/pre-job-metrics.json", b'0', b"deeper: ignored");
        s
    }

    #[test]
    fn a_stream_as_gnu_tar_writes_it_gives_the_known_files() {
        let got = read(&end(valid())).unwrap();
        assert_eq!(got.installed.as_deref(), Some(&b"1700000060"[..]));
        assert_eq!(got.pre_job.as_deref(), Some(&br#"{"timestamp": 1}"#[..]));
        assert_eq!(got.post_job.as_deref(), Some(&br#"{"timestamp": 2, "status": "normal"}"#[..]));
        // Bare names and POSIX headers too; missing files are missing.
        let mut s = header("runner-installed.timestamp", b'0', 2, true);
        s.extend(b"42");
        s.resize(BLOCK * 2, 0);
        let got = read(&end(s)).unwrap();
        assert_eq!(got, LooseFiles { installed: Some(b"42".to_vec()), ..LooseFiles::default() });
        assert_eq!(read(&end(Vec::new())).unwrap(), LooseFiles::default());
    }

    #[test]
    fn every_hostile_stream_is_corrupt_with_a_reason() {
        let with = |name: &str, flag: u8, data: &[u8]| {
            let mut s = valid();
            entry(&mut s, name, flag, data);
            end(s)
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("symlink", with("./x", b'2', b""), "a symlink"),
            ("hard link", with("./y", b'1', b""), "a hard link"),
            ("char device", with("./c", b'3', b""), "a device"),
            ("FIFO", with("./f", b'6', b""), "a FIFO"),
            ("known name as a directory", with("./runner-installed.timestamp/", b'5', b""), "appears twice"),
            ("GNU long name", with("././@LongLink", b'L', b"./pre-job-metrics.json\0"), "extension header"),
            ("pax header", with("./PaxHeaders/x", b'x', b"30 path=pre-job-metrics.json\n"), "extension header"),
            ("dot-dot", with("./../escape", b'0', b"x"), "'..'"),
            ("absolute", with("/etc/passwd", b'0', b"x"), "absolute"),
            ("duplicate", with("./pre-job-metrics.json", b'0', b"{}"), "appears twice"),
        ];
        for (what, stream, expected) in cases {
            let e = read(&stream).expect_err(what);
            assert!(e.contains(expected), "{what}: {e}");
            // Entries of another kind blame a file; the rest, the stream.
            let want = match what {
                "symlink" | "hard link" | "char device" | "FIFO" => QuarantineReason::NotRegularFile,
                _ => QuarantineReason::InvalidArchive,
            };
            assert_eq!(reason(&stream), want, "{what}");
        }
        // A known file over the limit, refused from its header.
        let mut s = Vec::new();
        entry(&mut s, "./pre-job-metrics.json", b'0', &[b' '; 1025]);
        assert!(read(&end(s.clone())).unwrap_err().contains("1024-byte limit"));
        assert_eq!(reason(&end(s)), QuarantineReason::Oversized);
        // A directory where a file is expected.
        let mut s = Vec::new();
        entry(&mut s, "./post-job-metrics.json/", b'5', b"");
        assert!(read(&end(s)).unwrap_err().contains("a directory"));
    }

    #[test]
    fn truncated_oversized_and_endless_streams_stop_at_their_bounds() {
        let full = end(valid());
        // Cut anywhere before the end block: truncated, never a panic.
        for cut in [1, 100, BLOCK, BLOCK + 3, 4 * BLOCK - 1, 7 * BLOCK] {
            assert!(read(&full[..cut]).is_err(), "cut at {cut}");
        }
        // Headers claiming 8 GiB - 1 (octal) and 1 TiB (base-256): neither
        // is read, for a known or an unknown name.
        for (name, size) in [("./pre-job-metrics.json", (1 << 33) - 1), ("./other", 1 << 40)] {
            let mut s = header(name, b'0', size, false);
            s.extend([0u8; 4 * BLOCK]);
            assert!(read(&s).unwrap_err().contains("does not hold"), "{name} {size}");
        }
        // A stream that never ends: refused at the bound, not read.
        let endless = vec![b'x'; TarLimits::default().max_bytes + 1];
        assert!(read(&endless).unwrap_err().contains("larger than"));
        // Too many entries.
        let mut many = Vec::new();
        for i in 0..=TarLimits::default().max_entries {
            entry(&mut many, &format!("./f{i}"), b'0', b"");
        }
        assert!(read(&end(many)).unwrap_err().contains("more than 64 entries"));
        // Data after the end, a bad checksum, no magic.
        let mut after = end(valid());
        let last = after.len() - 1;
        after[last] = 1;
        assert!(read(&after).unwrap_err().contains("after its end"));
        let mut bad = end(valid());
        bad[0] ^= 1;
        assert!(read(&bad).unwrap_err().contains("checksum"));
        let mut old = end(valid());
        old[257..263].copy_from_slice(b"\0\0\0\0\0\0");
        assert!(read(&old).unwrap_err().contains("not a ustar"));
    }

    #[test]
    fn nul_and_non_utf8_names() {
        let mut s = header("./ok", b'0', 0, false);
        s[2] = 0xff;
        s[148..156].copy_from_slice(b"        ");
        let sum: u64 = s.iter().map(|&b| u64::from(b)).sum();
        s[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(read(&end(s)).unwrap_err().contains("not UTF-8"));
        // A NUL ends the name: "./pre-job-metrics.json\0evil" is the known file.
        let mut s = Vec::new();
        entry(&mut s, "./pre-job-metrics.json\0evil", b'0', b"{}");
        assert_eq!(read(&end(s)).unwrap().pre_job.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn a_real_gnu_tar_stream_of_a_metrics_directory() {
        let dir = std::env::temp_dir().join(format!("runner-metrics-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(files::INSTALLED), "1700000060").unwrap();
        std::fs::write(dir.join(files::PRE_JOB), r#"{"timestamp": 1}"#).unwrap();
        let out = std::process::Command::new("tar").arg("-C").arg(&dir).args(["-cf", "-", "."]).output();
        let _ = std::fs::remove_dir_all(&dir);
        let Some(out) = out.ok().filter(|o| o.status.success()) else {
            runner_metrics_test_skip::skip("tar::tests: the real GNU tar stream", "no tar here");
            return;
        };
        let got = read(&out.stdout).unwrap();
        assert_eq!(got.installed.as_deref(), Some(&b"1700000060"[..]));
        assert_eq!(got.pre_job.as_deref(), Some(&br#"{"timestamp": 1}"#[..]));
        assert_eq!(got.post_job, None);
    }
}
