//! Which checkpoint of a run to load: the newest readable one, falling back past damaged ones,
//! or one step the user named.

use std::path::{Path, PathBuf};

use super::store::list_checkpoints;
use crate::TrainError;

/// Which checkpoint of a run to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointChoice {
    /// The newest one that can be read; unreadable newer ones are passed over and reported.
    #[default]
    NewestReadable,
    /// The checkpoint of this step, with no fallback.
    Step(usize),
}

/// A checkpoint passed over because it could not be read.
#[derive(Debug)]
pub struct SkippedCheckpoint {
    /// Its step.
    pub step: usize,
    /// Its directory.
    pub dir: PathBuf,
    /// Why it could not be read.
    pub error: TrainError,
}

/// What [`pick_checkpoint`] loaded.
#[derive(Debug)]
pub struct Picked<T> {
    /// What `load` returned.
    pub value: T,
    /// The checkpoint's step.
    pub step: usize,
    /// Its directory.
    pub dir: PathBuf,
    /// Newer checkpoints passed over, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// Loads the checkpoint of `run_dir` that `choice` names with `load`. `Ok(None)` when the run
/// has no checkpoint at all. With [`CheckpointChoice::NewestReadable`], a checkpoint that
/// `load` finds unreadable ([`TrainError::CorruptCheckpoint`]) is passed over for the next
/// older one; any other error (a config that does not fit, an I/O failure) is returned as is,
/// and so is every error of a named step.
pub fn pick_checkpoint<T>(
    run_dir: &Path,
    choice: CheckpointChoice,
    mut load: impl FnMut(&Path) -> Result<T, TrainError>,
) -> Result<Option<Picked<T>>, TrainError> {
    let checkpoints = list_checkpoints(run_dir)?;
    if let CheckpointChoice::Step(step) = choice {
        let Some((_, dir)) = checkpoints.iter().find(|(s, _)| *s == step) else {
            return Err(TrainError::CheckpointNotFound {
                run_dir: run_dir.to_path_buf(),
                step,
                kept: checkpoints.iter().map(|(s, _)| *s).collect(),
            });
        };
        let value = load(dir)?;
        return Ok(Some(Picked {
            value,
            step,
            dir: dir.clone(),
            skipped: Vec::new(),
        }));
    }
    let total = checkpoints.len();
    let mut skipped = Vec::new();
    for (step, dir) in checkpoints.into_iter().rev() {
        match load(&dir) {
            Ok(value) => {
                return Ok(Some(Picked {
                    value,
                    step,
                    dir,
                    skipped,
                }));
            }
            Err(error @ TrainError::CorruptCheckpoint { .. }) => {
                skipped.push(SkippedCheckpoint { step, dir, error })
            }
            Err(other) => return Err(other),
        }
    }
    match skipped.into_iter().next() {
        None => Ok(None),
        Some(newest) => Err(TrainError::NoReadableCheckpoint {
            run_dir: run_dir.to_path_buf(),
            count: total,
            newest: Box::new(newest.error),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::{write_checkpoint_dir, write_synced};

    fn run_with_steps(steps: &[usize]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for &step in steps {
            write_checkpoint_dir(dir.path(), step, |d| write_synced(&d.join("a"), b"x")).unwrap();
        }
        dir
    }

    fn unreadable_above(limit: usize) -> impl FnMut(&Path) -> Result<usize, TrainError> {
        move |dir: &Path| {
            let step: usize = dir
                .to_str()
                .unwrap()
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if step > limit {
                Err(TrainError::CorruptCheckpoint {
                    path: dir.to_path_buf(),
                    message: "damaged".into(),
                })
            } else {
                Ok(step)
            }
        }
    }

    #[test]
    fn falls_back_past_unreadable_checkpoints_newest_first() {
        let run = run_with_steps(&[2, 4, 6, 8]);
        let picked = pick_checkpoint(
            run.path(),
            CheckpointChoice::NewestReadable,
            unreadable_above(4),
        )
        .unwrap()
        .unwrap();
        assert_eq!((picked.value, picked.step), (4, 4));
        let skipped: Vec<usize> = picked.skipped.iter().map(|s| s.step).collect();
        assert_eq!(skipped, vec![8, 6]);
        assert!(picked.dir.ends_with("step-00000004"));
    }

    #[test]
    fn a_named_step_never_falls_back() {
        let run = run_with_steps(&[2, 4]);
        let err = pick_checkpoint(run.path(), CheckpointChoice::Step(4), unreadable_above(2))
            .unwrap_err();
        assert!(matches!(err, TrainError::CorruptCheckpoint { .. }), "{err}");
        let picked = pick_checkpoint(run.path(), CheckpointChoice::Step(2), unreadable_above(2))
            .unwrap()
            .unwrap();
        assert_eq!(picked.step, 2);
        let err = pick_checkpoint(run.path(), CheckpointChoice::Step(3), unreadable_above(9))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no checkpoint of step 3") && err.contains("2, 4"),
            "{err}"
        );
    }

    #[test]
    fn nothing_readable_and_nothing_at_all_are_told_apart() {
        let empty = tempfile::tempdir().unwrap();
        let none = pick_checkpoint(
            empty.path(),
            CheckpointChoice::NewestReadable,
            unreadable_above(0),
        );
        assert!(none.unwrap().is_none());
        let run = run_with_steps(&[2, 4]);
        let err = pick_checkpoint(
            run.path(),
            CheckpointChoice::NewestReadable,
            unreadable_above(0),
        )
        .unwrap_err();
        assert!(
            matches!(err, TrainError::NoReadableCheckpoint { count: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn other_errors_are_not_passed_over() {
        let run = run_with_steps(&[2, 4]);
        let err = pick_checkpoint(
            run.path(),
            CheckpointChoice::NewestReadable,
            |dir: &Path| {
                Err::<(), _>(TrainError::ArchitectureMismatch {
                    path: dir.to_path_buf(),
                    message: "other net".into(),
                })
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, TrainError::ArchitectureMismatch { .. }),
            "{err}"
        );
    }
}
