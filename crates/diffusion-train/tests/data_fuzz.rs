//! Property tests of the IDX and CIFAR-10 parsers: arbitrary and mutated bytes never panic,
//! and whatever they accept is self-consistent. (cargo-fuzz needs nightly; this runs on stable.)

use std::io::Write;
use std::path::Path;

use diffusion_train::data::cifar::{CIFAR_RECORD_BYTES, CifarRecords, parse_cifar_batch};
use diffusion_train::data::idx::{encode_idx, idx_pair_from_arrays, parse_idx};
use flate2::{Compression, write::GzEncoder};
use proptest::prelude::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A valid small IDX file: 1 to 3 dimensions of 0..6 each.
fn valid_idx() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u32..6, 1..=3).prop_flat_map(|dims| {
        let len = dims.iter().product::<u32>() as usize;
        prop::collection::vec(any::<u8>(), len).prop_map(move |data| encode_idx(&dims, &data))
    })
}

/// Applies byte edits, a truncation and an extension to `base`.
fn mutate(mut base: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>, tail: &[u8]) -> Vec<u8> {
    for &(at, value) in edits {
        if !base.is_empty() {
            // Every other edit hits the first 24 bytes, where the headers are.
            let span = if at % 2 == 0 {
                base.len().min(24)
            } else {
                base.len()
            };
            let i = (at / 2) % span;
            base[i] = value;
        }
    }
    if let Some(cut) = cut {
        base.truncate(cut % (base.len() + 1));
    }
    base.extend_from_slice(tail);
    base
}

fn check_idx(bytes: &[u8]) {
    if let Ok(array) = parse_idx(bytes, Path::new("fuzz.idx")) {
        let expected: usize = array.dims.iter().product();
        assert_eq!(
            array.data.len(),
            expected,
            "accepted data must fill its dims"
        );
    }
}

proptest! {
    // 256 cases each by default; `PROPTEST_CASES=100000` for a longer hunt.

    #[test]
    fn idx_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_idx(&bytes);
        // Also behind a gzip magic, so the decompressor sees garbage.
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&bytes);
        check_idx(&gz);
    }

    #[test]
    fn idx_mutated_files_never_panic(
        base in valid_idx(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<usize>()),
        tail in prop::collection::vec(any::<u8>(), 0..3),
        compress in any::<bool>(),
    ) {
        let unmutated = if compress { gzip(&base) } else { base.clone() };
        prop_assert!(parse_idx(&unmutated, Path::new("ok.idx")).is_ok());
        // Mutate the bytes on disk: raw IDX, or the compressed stream itself.
        check_idx(&mutate(unmutated, &edits, cut, &tail));
        // And the content under a valid gzip wrapper.
        check_idx(&gzip(&mutate(base, &edits, cut, &tail)));
    }

    #[test]
    fn idx_pairs_of_any_shape_never_panic(images in valid_idx(), labels in valid_idx(), classes in 0usize..12) {
        let p = Path::new("x");
        let images = parse_idx(&images, p).unwrap();
        let labels = parse_idx(&labels, p).unwrap();
        if let Ok(pair) = idx_pair_from_arrays(images, p, labels, p, classes) {
            prop_assert_eq!(pair.pixels.len(), pair.labels.len() * pair.rows * pair.cols);
            prop_assert!(pair.labels.iter().all(|&l| l < classes));
        }
    }

    #[test]
    fn cifar_arbitrary_and_mutated_bytes_never_panic(
        records in 0usize..3,
        seed in any::<u8>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<usize>()),
        tail in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let base: Vec<u8> = (0..records * CIFAR_RECORD_BYTES)
            .map(|i| if i % CIFAR_RECORD_BYTES == 0 { seed % 10 } else { (i as u8) ^ seed })
            .collect();
        let bytes = mutate(base, &edits, cut, &tail);
        let mut out = CifarRecords::default();
        match parse_cifar_batch(&bytes, Path::new("fuzz.bin"), &mut out) {
            Ok(()) => {
                prop_assert_eq!(out.labels.len() * CIFAR_RECORD_BYTES, bytes.len());
                prop_assert_eq!(out.pixels.len(), out.labels.len() * (CIFAR_RECORD_BYTES - 1));
                prop_assert!(out.labels.iter().all(|&l| l < 10));
            }
            Err(_) => prop_assert!(out.labels.is_empty() && out.pixels.is_empty()),
        }
    }
}

/// Regression inputs: shapes that once looked risky, kept as fixed cases.
#[test]
fn idx_regressions() {
    let p = Path::new("r.idx");
    // Gzip magic alone, and a gzip header cut short.
    assert!(parse_idx(&[0x1f, 0x8b], p).is_err());
    assert!(parse_idx(&gzip(&encode_idx(&[2], &[1, 2]))[..12], p).is_err());
    // 255 dimensions of size 0: valid header, zero elements; must not over-allocate.
    let zeros = encode_idx(&[0; 255], &[]);
    assert_eq!(parse_idx(&zeros, p).unwrap().data.len(), 0);
    // Dimensions whose product overflows usize.
    assert!(parse_idx(&encode_idx(&[u32::MAX; 3], &[]), p).is_err());
    // Empty input.
    assert!(parse_idx(&[], p).is_err());
}
