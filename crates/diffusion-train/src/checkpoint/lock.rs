//! One trainer per run directory.
//!
//! An advisory OS lock on `run_dir/.lock` (`File::try_lock`): the OS releases it when the process
//! exits or is killed, so a stale lock after a crash needs no clean-up.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::TrainError;
use crate::run_dir::RunDir;

/// Holds the run directory's lock until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run_dir` (creating the directory), or fails at once with
    /// [`TrainError::RunLocked`] when another process holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        let path = RunDir::new(run_dir).lock_file();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(TrainError::RunLocked {
                run_dir: run_dir.to_path_buf(),
                lock_file: path,
            }),
            Err(TryLockError::Error(e)) => Err(TrainError::io(&path, e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_with_the_run_dir_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = RunLock::acquire(&run).unwrap();
        let err = RunLock::acquire(&run).unwrap_err();
        assert!(matches!(err, TrainError::RunLocked { .. }));
        assert!(err.to_string().contains(&run.display().to_string()));
        drop(first);
        let again = RunLock::acquire(&run).unwrap();
        assert!(again.path().ends_with(crate::run_dir::LOCK_FILE));
    }
}
