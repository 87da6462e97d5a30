//! The one error type of the data module.

use std::path::PathBuf;

/// Everything that can go wrong while locating, reading or checking a dataset.
///
/// Every variant names the file (or directory) involved, so a message alone tells the user
/// where to look.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset directory or one of its files is missing.
    #[error("dataset not found in {}: run `cargo xtask fetch-data --dataset {name}`", dir.display())]
    DatasetNotFound {
        /// The `fetch-data` name of the dataset (`mnist`, `fashion-mnist`, `cifar10`).
        name: String,
        /// The directory that was searched.
        dir: PathBuf,
    },
    /// An image folder does not exist or holds no images.
    #[error("image folder {}: {problem}", path.display())]
    FolderNotFound {
        /// The folder given in the config.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An operating-system error while reading.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file was read but its content is not what the format requires.
    #[error("{}: {problem}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong, in words (bad magic, truncated, ...).
        problem: String,
    },
    /// An image of an image folder could not be decoded.
    #[error("cannot decode image {}: {problem}", path.display())]
    Image {
        /// The offending image.
        path: PathBuf,
        /// The decoder's message.
        problem: String,
    },
    /// A configuration value is out of its allowed range.
    #[error("invalid data config: `{field}` {problem}")]
    InvalidConfig {
        /// The config field, as spelled in the JSON.
        field: &'static str,
        /// What is allowed.
        problem: String,
    },
}

impl DataError {
    /// Builds a [`DataError::Format`] for `path`.
    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// Builds a [`DataError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`DataError::InvalidConfig`].
    pub(crate) fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_names_dir_and_the_fetch_command() {
        let err = DataError::DatasetNotFound {
            name: "cifar10".into(),
            dir: PathBuf::from("data/cifar10"),
        };
        assert_eq!(
            err.to_string(),
            "dataset not found in data/cifar10: run `cargo xtask fetch-data --dataset cifar10`"
        );
    }

    #[test]
    fn config_message_names_the_field() {
        let err = DataError::config("pad_to", "must be at least 28, got 20");
        assert!(err.to_string().contains("`pad_to`"), "{err}");
        assert!(err.to_string().contains("at least 28"), "{err}");
    }
}
