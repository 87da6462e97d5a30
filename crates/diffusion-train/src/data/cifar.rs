//! CIFAR-10 binary batches (<https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! Each file is a sequence of records: one label byte (0..=9) then 3072 pixel bytes, the red,
//! green and blue 32x32 planes in that order (CHW). The official files hold 10,000 records each;
//! any positive number is accepted so tests can write small ones.

use std::path::{Path, PathBuf};

use super::DataError;

/// Side of a CIFAR image.
pub const CIFAR_SIDE: usize = 32;
/// Channels of a CIFAR image.
pub const CIFAR_CHANNELS: usize = 3;
/// Number of CIFAR-10 classes.
pub const CIFAR_CLASSES: usize = 10;
/// Bytes of one image.
pub const CIFAR_IMAGE_BYTES: usize = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE;
/// Bytes of one record (label + image).
pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;

/// File names of the training batches.
pub const CIFAR_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// File name of the test batch.
pub const CIFAR_TEST_FILES: [&str; 1] = ["test_batch.bin"];

/// Records of one or more CIFAR-10 batch files.
#[derive(Debug, Clone, Default)]
pub struct CifarRecords {
    /// `len * 3072` pixel bytes, CHW per image.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<usize>,
}

/// Parses the bytes of one batch file and appends its records to `out`.
///
/// `path` only names the source in errors. Never panics.
pub fn parse_cifar_batch(
    bytes: &[u8],
    path: &Path,
    out: &mut CifarRecords,
) -> Result<(), DataError> {
    if bytes.is_empty() {
        return Err(DataError::format(path, "empty CIFAR-10 batch file"));
    }
    if !bytes.len().is_multiple_of(CIFAR_RECORD_BYTES) {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {} bytes is not a whole number of {CIFAR_RECORD_BYTES}-byte records \
                 ({} full records and {} bytes left over)",
                bytes.len(),
                bytes.len() / CIFAR_RECORD_BYTES,
                bytes.len() % CIFAR_RECORD_BYTES
            ),
        ));
    }
    let records = bytes.len() / CIFAR_RECORD_BYTES;
    // Validate every label before touching `out`, so an error leaves it unchanged.
    for (index, record) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        if usize::from(record[0]) >= CIFAR_CLASSES {
            return Err(DataError::format(
                path,
                format!(
                    "label {} of record {index} is out of range 0..{CIFAR_CLASSES}",
                    record[0]
                ),
            ));
        }
    }
    out.pixels.reserve(records * CIFAR_IMAGE_BYTES);
    out.labels.reserve(records);
    for record in bytes.chunks_exact(CIFAR_RECORD_BYTES) {
        out.labels.push(usize::from(record[0]));
        out.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// Reads the named batch files from `dir`, in order.
pub fn read_cifar_batches(dir: &Path, files: &[&str]) -> Result<CifarRecords, DataError> {
    let mut out = CifarRecords::default();
    for name in files {
        let path: PathBuf = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        parse_cifar_batch(&bytes, &path, &mut out)?;
    }
    Ok(out)
}

/// Serialises images and labels as a CIFAR-10 batch file; the inverse of [`parse_cifar_batch`].
///
/// `pixels` holds `labels.len()` CHW images of 3072 bytes. Used by tests and tools.
pub fn encode_cifar_batch(pixels: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * CIFAR_RECORD_BYTES);
    for (label, image) in labels.iter().zip(pixels.chunks_exact(CIFAR_IMAGE_BYTES)) {
        out.push(*label);
        out.extend_from_slice(image);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u8) -> Vec<u8> {
        (0..CIFAR_IMAGE_BYTES)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect()
    }

    #[test]
    fn records_round_trip_with_labels_and_chw_planes() {
        let pixels = [image(3), image(5)].concat();
        let bytes = encode_cifar_batch(&pixels, &[7, 2]);
        assert_eq!(bytes.len(), 2 * CIFAR_RECORD_BYTES);
        let mut out = CifarRecords::default();
        parse_cifar_batch(&bytes, Path::new("b.bin"), &mut out).unwrap();
        assert_eq!(out.labels, vec![7, 2]);
        assert_eq!(out.pixels, pixels);
        // The red plane of image 1 starts right after its label byte.
        assert_eq!(bytes[CIFAR_RECORD_BYTES + 1], pixels[CIFAR_IMAGE_BYTES]);
    }

    #[test]
    fn truncated_file_is_named_and_leaves_output_untouched() {
        let bytes = encode_cifar_batch(&image(1), &[1]);
        let mut out = CifarRecords::default();
        let err = parse_cifar_batch(&bytes[..3000], Path::new("b.bin"), &mut out).unwrap_err();
        assert!(err.to_string().contains("b.bin") && err.to_string().contains("truncated"));
        assert!(out.labels.is_empty() && out.pixels.is_empty());
    }

    #[test]
    fn label_out_of_range_names_the_record() {
        let bytes = encode_cifar_batch(&[image(1), image(2)].concat(), &[1, 10]);
        let mut out = CifarRecords::default();
        let err = parse_cifar_batch(&bytes, Path::new("b.bin"), &mut out).unwrap_err();
        assert!(err.to_string().contains("label 10 of record 1"), "{err}");
        assert!(out.labels.is_empty());
    }

    #[test]
    fn empty_file_is_an_error() {
        let mut out = CifarRecords::default();
        assert!(parse_cifar_batch(&[], Path::new("b.bin"), &mut out).is_err());
    }

    #[test]
    fn batches_are_read_in_order_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.bin"),
            encode_cifar_batch(&image(1), &[4]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.bin"),
            encode_cifar_batch(&image(2), &[6]),
        )
        .unwrap();
        let recs = read_cifar_batches(dir.path(), &["b.bin", "a.bin"]).unwrap();
        assert_eq!(recs.labels, vec![6, 4]);
        let err = read_cifar_batches(dir.path(), &["a.bin", "c.bin"]).unwrap_err();
        assert!(err.to_string().contains("c.bin"), "{err}");
    }
}
