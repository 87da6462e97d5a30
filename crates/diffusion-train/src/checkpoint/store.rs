//! The checkpoint directory on disk: atomic writes, listing and pruning.
//!
//! A checkpoint is written whole to `checkpoints/step-00000123.tmp/`, every file and the
//! directory are fsynced, then it is renamed to `step-00000123/` and never touched again. Old
//! checkpoints are renamed to `*.del` before deletion so that a kill half-way through a
//! deletion never leaves a half-empty directory under a checkpoint name. A checkpoint found
//! damaged (its files no longer match its manifest) is renamed to `step-00000123.damaged`:
//! neither loaded nor counted nor ever deleted, kept for the user to inspect.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::TrainError;
use crate::run_dir::RunDir;

const PREFIX: &str = "step-";
const TMP_SUFFIX: &str = ".tmp";
const DEL_SUFFIX: &str = ".del";
const DAMAGED_SUFFIX: &str = ".damaged";

/// Directory name of the checkpoint taken after `step` optimizer steps.
pub fn checkpoint_name(step: usize) -> String {
    format!("{PREFIX}{step:08}")
}

/// Parses a complete checkpoint's directory name; `.tmp` and `.del` leftovers give `None`.
fn parse_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Complete checkpoints of a run, oldest first, as `(step, directory)`.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>, TrainError> {
    let dir = RunDir::new(run_dir).checkpoints_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(&dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
        let Some(step) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        if entry.path().is_dir() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint of a run, if any.
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<(usize, PathBuf)>, TrainError> {
    Ok(list_checkpoints(run_dir)?.pop())
}

/// Writes `bytes` to `path` and fsyncs the file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut file = File::create(path).map_err(|e| TrainError::io(path, e))?;
    file.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    file.sync_all().map_err(|e| TrainError::io(path, e))
}

/// Replaces `path` atomically: writes a sibling temporary file, fsyncs it, renames it over.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    // Directories can be opened read-only and fsynced on Unix; elsewhere this is best effort.
    match File::open(dir) {
        Ok(handle) => {
            let _ = handle.sync_all();
            Ok(())
        }
        Err(e) => Err(TrainError::io(dir, e)),
    }
}

/// Writes the checkpoint of `step`: `write` fills a fresh temporary directory, which is then
/// fsynced and renamed into place. Returns the final directory.
pub(crate) fn write_checkpoint_dir(
    run_dir: &Path,
    step: usize,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let layout = RunDir::new(run_dir);
    let root = layout.checkpoints_dir();
    std::fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let name = checkpoint_name(step);
    let tmp = root.join(format!("{name}{TMP_SUFFIX}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    write(&tmp)?;
    sync_dir(&tmp)?;
    let final_dir = layout.checkpoint_dir(step);
    if final_dir.exists() {
        // Same step saved again (e.g. stop right after a resume): retire the old copy first.
        retire(&root, &final_dir, &name)?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_dir(&root)?;
    Ok(final_dir)
}

fn retire(root: &Path, dir: &Path, name: &str) -> Result<(), TrainError> {
    let del = root.join(format!("{name}{DEL_SUFFIX}"));
    if del.exists() {
        std::fs::remove_dir_all(&del).map_err(|e| TrainError::io(&del, e))?;
    }
    std::fs::rename(dir, &del).map_err(|e| TrainError::io(dir, e))?;
    sync_dir(root)?;
    std::fs::remove_dir_all(&del).map_err(|e| TrainError::io(&del, e))
}

/// Renames the damaged checkpoint `dir` to `step-N.damaged` (`.damaged-2`, ... when taken),
/// out of the way of loading, counting and pruning. Returns the new path. Only call while
/// holding the run lock.
pub(crate) fn quarantine(dir: &Path) -> Result<PathBuf, TrainError> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mut target = parent.join(format!("{name}{DAMAGED_SUFFIX}"));
    let mut n = 2;
    while target.exists() {
        target = parent.join(format!("{name}{DAMAGED_SUFFIX}-{n}"));
        n += 1;
    }
    std::fs::rename(dir, &target).map_err(|e| TrainError::io(dir, e))?;
    sync_dir(parent)?;
    Ok(target)
}

/// Keeps the newest `keep` intact checkpoints (at least one) and removes the older ones and
/// any `.tmp` / `.del` leftovers. Every checkpoint is verified against its manifest first
/// (each file read once): a damaged one is quarantined, never deleted, and does not count
/// towards `keep`. Returns the quarantined ones as (old path, new path, why). Only call while
/// holding the run lock.
pub(crate) fn prune_checkpoints(
    run_dir: &Path,
    keep: usize,
) -> Result<Vec<(PathBuf, PathBuf, TrainError)>, TrainError> {
    let root = RunDir::new(run_dir).checkpoints_dir();
    let mut intact = Vec::new();
    let mut damaged = Vec::new();
    for (step, dir) in list_checkpoints(run_dir)? {
        match super::files::verify_checkpoint(&dir) {
            Ok(()) => intact.push((step, dir)),
            Err(why) => {
                let moved = quarantine(&dir)?;
                tracing::warn!(
                    checkpoint = %dir.display(),
                    moved_to = %moved.display(),
                    "damaged checkpoint kept aside: {why}"
                );
                damaged.push((dir, moved, why));
            }
        }
    }
    let excess = intact.len().saturating_sub(keep.max(1));
    for (step, dir) in intact.into_iter().take(excess) {
        retire(&root, &dir, &checkpoint_name(step))?;
    }
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(damaged);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && (name.ends_with(TMP_SUFFIX) || name.ends_with(DEL_SUFFIX)) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        }
    }
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_step(run: &Path, step: usize) -> PathBuf {
        write_checkpoint_dir(run, step, |dir| write_synced(&dir.join("a.txt"), b"x")).unwrap()
    }

    #[test]
    fn names_sort_and_leftovers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        assert!(latest_checkpoint(run).unwrap().is_none());
        for step in [3, 12, 7] {
            write_step(run, step);
        }
        std::fs::create_dir_all(run.join("checkpoints/step-00000099.tmp")).unwrap();
        std::fs::create_dir_all(run.join("checkpoints/step-00000098.del")).unwrap();
        std::fs::create_dir_all(run.join("checkpoints/other")).unwrap();
        let steps: Vec<usize> = list_checkpoints(run).unwrap().iter().map(|c| c.0).collect();
        assert_eq!(steps, vec![3, 7, 12]);
        let (step, path) = latest_checkpoint(run).unwrap().unwrap();
        assert_eq!(step, 12);
        assert!(path.ends_with("step-00000012"));
        assert_eq!(std::fs::read(path.join("a.txt")).unwrap(), b"x");
    }

    #[test]
    fn prune_keeps_the_newest_k_and_cleans_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        for step in 1..=5 {
            write_step(run, step);
        }
        std::fs::create_dir_all(run.join("checkpoints/step-00000009.tmp")).unwrap();
        prune_checkpoints(run, 2).unwrap();
        let steps: Vec<usize> = list_checkpoints(run).unwrap().iter().map(|c| c.0).collect();
        assert_eq!(steps, vec![4, 5]);
        assert!(!run.join("checkpoints/step-00000009.tmp").exists());
        // saving the same step again replaces it whole
        write_checkpoint_dir(run, 5, |dir| write_synced(&dir.join("b.txt"), b"y")).unwrap();
        let latest = latest_checkpoint(run).unwrap().unwrap().1;
        assert!(latest.join("b.txt").exists() && !latest.join("a.txt").exists());
    }

    #[test]
    fn prune_keeps_damaged_checkpoints_aside_and_counts_only_intact_ones() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        for step in 1..=4 {
            write_checkpoint_dir(run, step, |d| {
                let files: [(&str, &[u8]); 1] = [("a.txt", b"xyz")];
                write_synced(&d.join("a.txt"), b"xyz")?;
                write_synced(
                    &d.join(super::super::files::MANIFEST_FILE),
                    &super::super::files::manifest_json(&files)?,
                )
            })
            .unwrap();
        }
        // the newest truncated, the oldest zero-filled
        std::fs::write(run.join("checkpoints/step-00000004/a.txt"), b"xy").unwrap();
        std::fs::write(run.join("checkpoints/step-00000001/a.txt"), [0u8; 3]).unwrap();
        let damaged = prune_checkpoints(run, 1).unwrap();
        assert_eq!(damaged.len(), 2);
        let steps: Vec<usize> = list_checkpoints(run).unwrap().iter().map(|c| c.0).collect();
        assert_eq!(
            steps,
            vec![3],
            "one intact checkpoint kept, the older intact one pruned"
        );
        for name in ["step-00000004.damaged", "step-00000001.damaged"] {
            assert!(
                run.join("checkpoints").join(name).join("a.txt").is_file(),
                "{name}"
            );
        }
        // pruning again deletes none of them
        write_step(run, 5);
        prune_checkpoints(run, 1).unwrap();
        assert!(run.join("checkpoints/step-00000004.damaged").is_dir());
        assert!(run.join("checkpoints/step-00000001.damaged").is_dir());
    }

    #[test]
    fn a_failing_writer_leaves_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let result = write_checkpoint_dir(dir.path(), 1, |_| {
            Err(TrainError::invalid("test", "simulated failure"))
        });
        assert!(result.is_err());
        assert!(latest_checkpoint(dir.path()).unwrap().is_none());
    }

    #[test]
    fn replace_file_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        replace_file(&path, b"first").unwrap();
        replace_file(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
