//! The one error type of the crate: invalid configurations and invalid inputs.

use thiserror::Error;

/// Why a network could not be built or run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NetError {
    /// A configuration field holds a value the network cannot be built with.
    #[error("invalid network config: `{field}` {message}")]
    InvalidConfig {
        /// Name of the offending field, as spelled in the JSON config.
        field: &'static str,
        /// What is wrong and which values are allowed.
        message: String,
    },
    /// `UNetConfig::preset` was asked for a name it does not know.
    #[error("unknown network preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The name that was asked for.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A class label outside `0..=num_classes` (`num_classes` is the null class).
    #[error("class label {label} out of range: allowed 0..={max} ({max} is the null class)")]
    LabelOutOfRange {
        /// The offending label.
        label: i64,
        /// The largest allowed label (the null class id).
        max: usize,
    },
    /// Labels were given to a network built without `num_classes`.
    #[error("labels were given but the network is unconditional (`num_classes` is not set)")]
    UnexpectedLabels,
    /// A diffusers state dict does not fit the network.
    #[error("cannot load diffusers weights: {0}")]
    Import(String),
    /// A diffusers config option this crate cannot build or express.
    #[error("cannot map diffusers option `{option}`: {message}")]
    DiffusersOption {
        /// The option, as spelled in diffusers' `config.json`.
        option: String,
        /// Its value and what is supported instead.
        message: String,
    },
    /// An input tensor does not have the shape the network expects.
    #[error("invalid input shape: {0}")]
    Shape(String),
}

impl NetError {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_message_names_the_field() {
        let err = NetError::config("dropout", "must lie in [0, 1), got 1.5");
        let msg = err.to_string();
        assert!(msg.contains("`dropout`"), "{msg}");
        assert!(msg.contains("[0, 1)"), "{msg}");
    }

    #[test]
    fn label_error_mentions_null_class() {
        let msg = NetError::LabelOutOfRange { label: 12, max: 10 }.to_string();
        assert!(msg.contains("0..=10") && msg.contains("null"), "{msg}");
    }
}
