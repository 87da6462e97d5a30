//! A small binary cache format for [`Features`], so that a dataset's reference features are
//! extracted once.
//!
//! Layout, little-endian:
//!
//! | bytes        | content                                              |
//! |--------------|------------------------------------------------------|
//! | 8            | magic `DIFEVFT\0`                                    |
//! | 4            | format version ([`FORMAT_VERSION`])                  |
//! | 4            | key length `k` in bytes                              |
//! | k            | key, UTF-8 (what the features are of: extractor, dataset, split) |
//! | 8, 8         | rows, dim                                            |
//! | 4 rows dim   | values, f32                                          |
//! | 4            | CRC-32 of everything before it                       |
//!
//! Files are written to a temporary name in the same directory and renamed, so a crash never
//! leaves a half-written file under the final name. Anything unexpected on loading (another
//! magic, version or key, a wrong length, a bad checksum) is an [`EvalError::Cache`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Features;
use crate::EvalError;

const MAGIC: &[u8; 8] = b"DIFEVFT\0";
/// The version written; files of any other version are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Keys longer than this are refused (a corrupt length field must not allocate gigabytes).
const MAX_KEY_BYTES: usize = 4096;

impl Features {
    /// Writes the features to `path` under `key` (atomically: a temporary file in the same
    /// directory, then a rename).
    pub fn save(&self, path: &Path, key: &str) -> Result<(), EvalError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(EvalError::Cache {
                path: path.to_path_buf(),
                message: format!("key of {} bytes, at most {MAX_KEY_BYTES}", key.len()),
            });
        }
        let tmp = temporary_path(path);
        let result = write_file(self, &tmp, key).and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|source| EvalError::Io {
                path: path.to_path_buf(),
                source,
            })
        });
        if result.is_err() {
            // Best effort: the error being reported is the write's, not this one's.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads features written by [`Features::save`] under the same `key`.
    ///
    /// Errors: [`EvalError::Io`] if the file cannot be read (a missing file included: match on
    /// `source.kind()` to tell it apart), [`EvalError::Cache`] if it is not such a file, of
    /// another version or key, truncated or damaged.
    pub fn load(path: &Path, key: &str) -> Result<Features, EvalError> {
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        decode(&bytes, key).map_err(|message| EvalError::Cache {
            path: path.to_path_buf(),
            message,
        })
    }
}

fn write_file(features: &Features, tmp: &Path, key: &str) -> Result<(), EvalError> {
    let io = |source| EvalError::Io {
        path: tmp.to_path_buf(),
        source,
    };
    let file = File::create(tmp).map_err(io)?;
    let mut out = HashingWriter {
        inner: BufWriter::new(file),
        crc: crc32fast::Hasher::new(),
    };
    out.put(MAGIC).map_err(io)?;
    out.put(&FORMAT_VERSION.to_le_bytes()).map_err(io)?;
    out.put(&(key.len() as u32).to_le_bytes()).map_err(io)?;
    out.put(key.as_bytes()).map_err(io)?;
    out.put(&(features.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.put(&(features.dim() as u64).to_le_bytes())
        .map_err(io)?;
    for &x in features.as_slice() {
        out.put(&x.to_le_bytes()).map_err(io)?;
    }
    let crc = out.crc.finalize();
    out.inner.write_all(&crc.to_le_bytes()).map_err(io)?;
    let file = out.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

/// A writer that checksums what goes through it.
struct HashingWriter {
    inner: BufWriter<File>,
    crc: crc32fast::Hasher,
}

impl HashingWriter {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }
}

/// `<name>.tmp.<pid>.<counter>` next to `path`: unique per process and per call.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// Parses a whole cache file; the error is the message of an [`EvalError::Cache`].
fn decode(bytes: &[u8], key: &str) -> Result<Features, String> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(8)? != MAGIC {
        return Err("not a features cache file (bad magic bytes)".into());
    }
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    let key_len = r.u32()? as usize;
    if key_len > MAX_KEY_BYTES {
        return Err(format!("key length {key_len} is implausible"));
    }
    let stored_key = r.take(key_len)?;
    if stored_key != key.as_bytes() {
        return Err(format!(
            "written for key {:?}, expected {key:?}",
            String::from_utf8_lossy(stored_key)
        ));
    }
    let rows = r.u64()?;
    let dim = r.u64()?;
    let values = rows
        .checked_mul(dim)
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| v.checked_mul(4).is_some())
        .ok_or_else(|| format!("implausible shape {rows} x {dim}"))?;
    let expected_len = r.pos + values * 4 + 4;
    if bytes.len() != expected_len {
        return Err(format!(
            "{} bytes, a {rows} x {dim} matrix needs {expected_len} (truncated or padded)",
            bytes.len()
        ));
    }
    let data_bytes = r.take(values * 4)?;
    let stored_crc = r.u32()?;
    let crc = crc32fast::hash(&bytes[..bytes.len() - 4]);
    if crc != stored_crc {
        return Err(format!(
            "checksum mismatch (stored {stored_crc:08x}, computed {crc:08x})"
        ));
    }
    let data = data_bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Features::from_rows(dim as usize, data).map_err(|e| format!("bad shape: {e}"))
}

/// Reads fields in order, every read bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {} of {}", self.pos, self.bytes.len()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Features {
        Features::from_rows(3, vec![1.0, -2.5, 3.25, 0.0, f32::MIN_POSITIVE, 1e30]).unwrap()
    }

    fn saved(dir: &tempfile::TempDir) -> (PathBuf, Vec<u8>) {
        let path = dir.path().join("feats.bin");
        sample().save(&path, "inception/cifar10/train").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    fn cache_error(path: &Path, key: &str) -> String {
        match Features::load(path, key) {
            Err(EvalError::Cache { message, .. }) => message,
            other => panic!("expected a cache error, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = saved(&dir);
        let back = Features::load(&path, "inception/cifar10/train").unwrap();
        assert_eq!(back, sample());
        assert_eq!(bytes.len(), 8 + 4 + 4 + 23 + 8 + 8 + 6 * 4 + 4);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the final file remains");
        // Saving again replaces the file.
        Features::new(2).save(&path, "k").unwrap();
        assert_eq!(Features::load(&path, "k").unwrap().len(), 0);
    }

    #[test]
    fn another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = saved(&dir);
        let message = cache_error(&path, "inception/cifar10/test");
        assert!(message.contains("written for key"), "{message}");
    }

    #[test]
    fn another_magic_or_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = saved(&dir);
        let mut magic = bytes.clone();
        magic[0] = b'X';
        std::fs::write(&path, &magic).unwrap();
        assert!(cache_error(&path, "inception/cifar10/train").contains("magic"));
        let mut version = bytes.clone();
        version[8] = 2;
        std::fs::write(&path, &version).unwrap();
        assert!(cache_error(&path, "inception/cifar10/train").contains("version 2"));
    }

    #[test]
    fn truncated_files_are_refused_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = saved(&dir);
        for len in 0..bytes.len() {
            std::fs::write(&path, &bytes[..len]).unwrap();
            cache_error(&path, "inception/cifar10/train");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        std::fs::write(&path, &padded).unwrap();
        assert!(cache_error(&path, "inception/cifar10/train").contains("padded"));
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = saved(&dir);
        let mut damaged = bytes.clone();
        let last_value = bytes.len() - 5;
        damaged[last_value] ^= 0x10;
        std::fs::write(&path, &damaged).unwrap();
        assert!(cache_error(&path, "inception/cifar10/train").contains("checksum"));
    }

    #[test]
    fn a_huge_shape_field_is_refused_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = saved(&dir);
        let mut huge = bytes.clone();
        let rows_at = 8 + 4 + 4 + 23;
        huge[rows_at..rows_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        cache_error(&path, "inception/cifar10/train");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Features::load(&dir.path().join("absent.bin"), "k").unwrap_err();
        assert!(
            matches!(&err, EvalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err}"
        );
    }

    #[test]
    fn a_failed_save_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temporary file was written.
        let target = dir.path().join("occupied");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), b"keep").unwrap();
        assert!(sample().save(&target, "k").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file was removed");
    }
}
