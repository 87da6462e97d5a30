//! `fetch-data` for one dataset: obtain each file, verify it, put it in place, mark completion.
//!
//! Every file lands first in a `.partial-*` temporary file inside the dataset folder, is
//! verified there, and is renamed to its final name only then; a failure drops the temporary
//! file. The completion marker is written last, so its presence means the folder is whole.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::download::{Http, TransferError, Written, copy_hashing, hex, progress_bar};
use crate::table::{DatasetSpec, RemoteFile, Unpack};

/// Name of the completion marker inside a dataset folder.
pub const MARKER: &str = ".fetch-complete";
const PARTIAL_PREFIX: &str = ".partial-";
const UNPACK_PREFIX: &str = ".unpack-";

/// Where to get files instead of the table's URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    /// A local directory holding the files under their usual names.
    Dir(PathBuf),
    /// A base URL; each file is fetched from `<base>/<name>`.
    Url(String),
}

impl Mirror {
    /// `http://...` and `https://...` are URLs, anything else a directory.
    pub fn parse(value: &str) -> Self {
        if value.starts_with("http://") || value.starts_with("https://") {
            Self::Url(value.to_string())
        } else {
            Self::Dir(PathBuf::from(value))
        }
    }
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Datasets go to `<data_dir>/<name>/`.
    pub data_dir: PathBuf,
    /// Replace the table's URLs.
    pub mirror: Option<Mirror>,
    /// Fetch again even when the folder is complete.
    pub force: bool,
    /// Bound on connecting and on each network read.
    pub timeout: Duration,
    /// Honour proxy environment variables.
    pub env_proxy: bool,
    /// Print one line per file.
    pub verbose: bool,
}

/// What `fetch_dataset` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The folder was already complete; nothing was downloaded.
    AlreadyPresent,
    /// Files were fetched and verified.
    Fetched,
}

/// How a file matched the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verified {
    /// Byte for byte the published file.
    Exact,
    /// A gzip file whose decompressed content is the published content (recompressed mirror).
    SameContentGz,
    /// The decompressed file itself.
    Raw,
}

/// Fetches one dataset into `<data_dir>/<name>/`.
pub fn fetch_dataset(spec: &DatasetSpec, opts: &FetchOptions) -> anyhow::Result<Outcome> {
    let dir = opts.data_dir.join(&spec.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = fetch_into(spec, opts, &dir);
    if result.is_err() {
        // Only succeeds when the folder is empty, i.e. when this run created it for nothing.
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

fn fetch_into(spec: &DatasetSpec, opts: &FetchOptions, dir: &Path) -> anyhow::Result<Outcome> {
    let dir = dir.to_path_buf();
    let marker = dir.join(MARKER);
    if !opts.force && marker.is_file() && outputs_present(spec, &dir) {
        return Ok(Outcome::AlreadyPresent);
    }
    // From here on the folder is not known to be complete.
    if marker.exists() {
        std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }
    remove_leftovers(&dir)?;

    let http = Http::new(opts.timeout, opts.env_proxy);
    let mut record = String::new();
    for file in &spec.files {
        let (tmp, verified, written) = obtain(file, &dir, opts, &http)?;
        match &spec.unpack {
            Unpack::Keep => {
                let (keep, other) = match (verified, &file.raw) {
                    (Verified::Raw, Some(raw)) => (raw.name.clone(), Some(file.name.clone())),
                    (_, raw) => (file.name.clone(), raw.as_ref().map(|r| r.name.clone())),
                };
                let dest = dir.join(&keep);
                tmp.persist(&dest)
                    .with_context(|| format!("moving the download to {}", dest.display()))?;
                // Leave one variant only, so readers cannot pick up a stale one.
                if let Some(other) = other {
                    let _ = std::fs::remove_file(dir.join(other));
                }
            }
            Unpack::TarGz { top_dir, expect } => unpack_tar_gz(tmp.path(), &dir, top_dir, expect)?,
        }
        if opts.verbose {
            eprintln!(
                "fetch-data: {}/{}: {} bytes, sha256 verified{}",
                spec.name,
                file.name,
                written.bytes,
                match verified {
                    Verified::Exact => "",
                    Verified::SameContentGz => " (recompressed copy, content matches)",
                    Verified::Raw => " (uncompressed copy, content matches)",
                }
            );
        }
        record.push_str(&format!("{}  {}\n", written.sha256, file.name));
    }
    write_atomically(&dir, &marker, record.as_bytes())?;
    Ok(Outcome::Fetched)
}

/// Whether everything a completed fetch leaves behind is there.
fn outputs_present(spec: &DatasetSpec, dir: &Path) -> bool {
    match &spec.unpack {
        Unpack::Keep => spec.files.iter().all(|f| {
            dir.join(&f.name).is_file()
                || f.raw.as_ref().is_some_and(|r| dir.join(&r.name).is_file())
        }),
        Unpack::TarGz { top_dir, expect } => expect
            .iter()
            .all(|name| dir.join(top_dir).join(name).is_file()),
    }
}

/// Removes temporaries an interrupted run (Ctrl-C, power loss) may have left.
fn remove_leftovers(dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PARTIAL_PREFIX) || name.starts_with(UNPACK_PREFIX) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing leftover {}", path.display()))?;
        }
    }
    Ok(())
}

/// Where one attempt reads from.
enum Source {
    Url(String),
    File(PathBuf),
}

fn sources(file: &RemoteFile, mirror: Option<&Mirror>) -> Result<Vec<Source>, String> {
    Ok(match mirror {
        None => file.urls.iter().cloned().map(Source::Url).collect(),
        Some(Mirror::Url(base)) => {
            vec![Source::Url(format!(
                "{}/{}",
                base.trim_end_matches('/'),
                file.name
            ))]
        }
        Some(Mirror::Dir(d)) => {
            let mut names = vec![file.name.clone()];
            names.extend(file.raw.iter().map(|r| r.name.clone()));
            match names.iter().map(|n| d.join(n)).find(|p| p.is_file()) {
                Some(path) => vec![Source::File(path)],
                None => {
                    return Err(format!(
                        "{} not found in mirror directory {} (looked for {})",
                        file.name,
                        d.display(),
                        names.join(", ")
                    ));
                }
            }
        }
    })
}

/// Tries each source in turn until one yields a verified file.
fn obtain(
    file: &RemoteFile,
    dir: &Path,
    opts: &FetchOptions,
    http: &Http,
) -> anyhow::Result<(NamedTempFile, Verified, Written)> {
    let mut failures = Vec::new();
    match sources(file, opts.mirror.as_ref()) {
        Err(e) => failures.push(e),
        Ok(list) => {
            for source in list {
                let tmp = tempfile::Builder::new()
                    .prefix(PARTIAL_PREFIX)
                    .tempfile_in(dir)
                    .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
                let (origin, result) = match &source {
                    Source::Url(url) => {
                        if opts.verbose {
                            eprintln!("fetch-data: downloading {url}");
                        }
                        (
                            url.clone(),
                            http.download(url, tmp.as_file(), tmp.path(), &file.name),
                        )
                    }
                    Source::File(path) => (path.display().to_string(), copy_local(path, &tmp)),
                };
                let written = match result {
                    Ok(w) => w,
                    Err(TransferError::Local(msg)) => bail!("{msg}"),
                    Err(TransferError::Source(msg)) => {
                        failures.push(msg);
                        continue; // `tmp` is deleted on drop
                    }
                };
                match verify(tmp.path(), &written, file) {
                    Ok(verified) => {
                        tmp.as_file()
                            .sync_all()
                            .with_context(|| format!("writing {}", tmp.path().display()))?;
                        make_readable(&tmp)?;
                        return Ok((tmp, verified, written));
                    }
                    Err(problem) => failures.push(format!(
                        "checksum mismatch for {} from {origin}: {problem}; the file was removed",
                        file.name
                    )),
                }
            }
        }
    }
    let hint = match &opts.mirror {
        None => "use --mirror DIR|URL to fetch from a local copy or another server",
        Some(_) => "check the mirror, or leave out --mirror to use the official servers",
    };
    bail!(
        "could not fetch {}: {}; {hint}",
        file.name,
        failures.join("; ")
    )
}

fn copy_local(path: &Path, tmp: &NamedTempFile) -> Result<Written, TransferError> {
    let source =
        File::open(path).map_err(|e| TransferError::Source(format!("{}: {e}", path.display())))?;
    let len = source.metadata().ok().map(|m| m.len());
    let bar = progress_bar(&path.display().to_string(), len);
    let result = copy_hashing(
        BufReader::new(source),
        tmp.as_file(),
        tmp.path(),
        &path.display().to_string(),
        len,
        &bar,
    );
    bar.finish_and_clear();
    result
}

/// Checks the file against the table; on failure says what was expected and what was found.
fn verify(path: &Path, written: &Written, file: &RemoteFile) -> Result<Verified, String> {
    if written.sha256 == file.sha256 {
        return Ok(Verified::Exact);
    }
    let Some(raw) = &file.raw else {
        return Err(format!(
            "expected sha256 {}, got {}",
            file.sha256, written.sha256
        ));
    };
    if written.sha256 == raw.sha256 {
        return Ok(Verified::Raw);
    }
    let content = gunzip_sha256(path);
    if content.as_deref() == Some(raw.sha256.as_str()) {
        return Ok(Verified::SameContentGz);
    }
    let content = content.map_or(String::new(), |c| format!(" (decompressed {c})"));
    Err(format!(
        "expected sha256 {} (or decompressed {}), got {}{content}",
        file.sha256, raw.sha256, written.sha256
    ))
}

/// SHA-256 of the decompressed content, or `None` when the file is not valid gzip.
fn gunzip_sha256(path: &Path) -> Option<String> {
    let mut reader = MultiGzDecoder::new(BufReader::new(File::open(path).ok()?));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(hex(&hasher.finalize()))
}

/// Unpacks a verified `.tar.gz` next to its final place, checks it, then renames it in.
fn unpack_tar_gz(
    archive: &Path,
    dir: &Path,
    top_dir: &str,
    expect: &[String],
) -> anyhow::Result<()> {
    let staging = tempfile::Builder::new()
        .prefix(UNPACK_PREFIX)
        .tempdir_in(dir)
        .with_context(|| format!("creating a temporary directory in {}", dir.display()))?;
    let reader = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    // `unpack` refuses entries that would land outside the staging directory.
    tar::Archive::new(MultiGzDecoder::new(BufReader::new(reader)))
        .unpack(staging.path())
        .with_context(|| format!("unpacking into {}", staging.path().display()))?;
    let unpacked = staging.path().join(top_dir);
    for name in expect {
        if !unpacked.join(name).is_file() {
            bail!("the archive has no {top_dir}/{name}");
        }
    }
    let dest = dir.join(top_dir);
    if dest.exists() {
        // Move the old copy into the staging dir, which is deleted on drop.
        std::fs::rename(&dest, staging.path().join("old"))
            .with_context(|| format!("replacing {}", dest.display()))?;
    }
    std::fs::rename(&unpacked, &dest).with_context(|| format!("moving into {}", dest.display()))?;
    Ok(())
}

/// Temporary files are created private (0600); data files should read like any other.
fn make_readable(tmp: &NamedTempFile) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting permissions of {}", tmp.path().display()))?;
    }
    #[cfg(not(unix))]
    let _ = tmp;
    Ok(())
}

fn write_atomically(dir: &Path, dest: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    make_readable(&tmp)?;
    tmp.persist(dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
