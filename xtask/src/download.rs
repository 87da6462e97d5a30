//! Getting bytes: HTTP(S) with ureq, or a copy from a local mirror, hashed while written.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// Why a transfer failed, split by who is to blame: a bad source is worth trying the next URL
/// for; a local write error (disk full, permissions) would fail again and stops everything.
#[derive(Debug)]
pub enum TransferError {
    /// The server or network failed; the message names the URL or file.
    Source(String),
    /// Writing the local file failed; the message names the path.
    Local(String),
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source(m) | Self::Local(m) => f.write_str(m),
        }
    }
}

/// Size and SHA-256 (lowercase hex) of what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of those bytes.
    pub sha256: String,
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies `reader` to `writer`, hashing on the way, and tells read errors (source) from write
/// errors (local, reported with `dest`).
pub fn copy_hashing(
    mut reader: impl Read,
    mut writer: impl Write,
    dest: &Path,
    source: &str,
    expected_len: Option<u64>,
    progress: &ProgressBar,
) -> Result<Written, TransferError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    let dropped = |bytes: u64, why: String| {
        let of = expected_len.map_or(String::new(), |n| format!(" of {n}"));
        TransferError::Source(format!(
            "{source}: connection dropped after {bytes}{of} bytes ({why})"
        ))
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(dropped(bytes, e.to_string())),
        };
        hasher.update(&buf[..n]);
        writer
            .write_all(&buf[..n])
            .map_err(|e| TransferError::Local(format!("writing {}: {e}", dest.display())))?;
        bytes += n as u64;
        progress.set_position(bytes);
    }
    if let Some(n) = expected_len
        && bytes != n
    {
        return Err(dropped(bytes, "body shorter than Content-Length".into()));
    }
    writer
        .flush()
        .map_err(|e| TransferError::Local(format!("writing {}: {e}", dest.display())))?;
    Ok(Written {
        bytes,
        sha256: hex(&hasher.finalize()),
    })
}

/// A progress bar with bytes and rate on a terminal, hidden otherwise.
pub fn progress_bar(label: &str, len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    let template = if len.is_some() {
        "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:30} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// A blocking HTTP client with bounded waits.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    /// `timeout` bounds connecting and each read; `env_proxy` honours `HTTPS_PROXY` and friends.
    pub fn new(timeout: Duration, env_proxy: bool) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .try_proxy_from_env(env_proxy)
            .build();
        Self { agent }
    }

    /// Streams `url` into `writer` (the file at `dest`).
    pub fn download(
        &self,
        url: &str,
        writer: impl Write,
        dest: &Path,
        label: &str,
    ) -> Result<Written, TransferError> {
        let response = match self.agent.get(url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Err(TransferError::Source(format!(
                    "{url}: HTTP {code} {}",
                    r.status_text()
                )));
            }
            Err(ureq::Error::Transport(t)) => {
                let detail = t.message().map_or(String::new(), |m| format!(": {m}"));
                return Err(TransferError::Source(format!(
                    "{url}: cannot connect ({}{detail})",
                    t.kind()
                )));
            }
        };
        let len = response
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bar = progress_bar(label, len);
        let result = copy_hashing(response.into_reader(), writer, dest, url, len, &bar);
        bar.finish_and_clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FullDisk;

    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hashes_what_it_copies() {
        let mut out = Vec::new();
        let bar = ProgressBar::hidden();
        let w = copy_hashing(&b"abc"[..], &mut out, Path::new("o"), "src", Some(3), &bar).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(w.bytes, 3);
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            w.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn disk_full_is_a_local_error_naming_the_path() {
        let bar = ProgressBar::hidden();
        let err = copy_hashing(
            &b"abc"[..],
            FullDisk,
            Path::new("/d/f.gz"),
            "src",
            None,
            &bar,
        )
        .unwrap_err();
        let TransferError::Local(msg) = err else {
            panic!("expected a local error, got {err}");
        };
        assert!(msg.contains("/d/f.gz"), "{msg}");
        assert!(msg.to_lowercase().contains("no space"), "{msg}");
    }

    #[test]
    fn short_body_is_a_dropped_connection() {
        let bar = ProgressBar::hidden();
        let err = copy_hashing(
            &b"ab"[..],
            Vec::new(),
            Path::new("o"),
            "http://h/f",
            Some(5),
            &bar,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TransferError::Source(_)));
        assert!(
            msg.contains("connection dropped after 2 of 5 bytes"),
            "{msg}"
        );
    }
}
