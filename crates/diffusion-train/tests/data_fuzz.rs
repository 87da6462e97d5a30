//! Property tests of the IDX and CIFAR-10 parsers: arbitrary and mutated bytes never panic,
//! and whatever they accept is self-consistent. (cargo-fuzz needs nightly; this runs on stable.)
//!
//! Cases are drawn from a seeded ChaCha stream, 256 per property (`FUZZ_CASES=100000` for a
//! longer hunt, `FUZZ_SEED=N` for other draws); a failure prints the case number and seed that
//! reproduce it. Not proptest: its `std` feature turns on regex-syntax's `default`, which would
//! make `cargo test --workspace` build regex, and with it all of burn, a second time next to the
//! binary's build (see the profile notes in the workspace Cargo.toml).

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;

use diffusion_train::data::cifar::{CIFAR_RECORD_BYTES, CifarRecords, parse_cifar_batch};
use diffusion_train::data::idx::{encode_idx, idx_pair_from_arrays, parse_idx};
use flate2::{Compression, write::GzEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `property` on `FUZZ_CASES` generators, each seeded from `FUZZ_SEED`, the property's
/// name and the case number, and names the failing case.
fn for_cases(name: &str, mut property: impl FnMut(&mut ChaCha8Rng)) {
    let cases = env_number("FUZZ_CASES", 256);
    let seed = env_number("FUZZ_SEED", 0);
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for case in 0..cases {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt);
        rng.set_stream(case);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| property(&mut rng))) {
            eprintln!("{name}: case {case} failed (FUZZ_SEED={seed})");
            resume_unwind(panic);
        }
    }
}

/// Random bytes, `len` of them.
fn bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

/// Random bytes, a random length in `0..max`.
fn some_bytes(rng: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..max);
    bytes(rng, len)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A valid small IDX file: 1 to 3 dimensions of 0..6 each.
fn valid_idx(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let rank = rng.random_range(1..=3);
    let dims: Vec<u32> = (0..rank).map(|_| rng.random_range(0..6)).collect();
    let len = dims.iter().product::<u32>() as usize;
    encode_idx(&dims, &bytes(rng, len))
}

/// Edits, a truncation and a tail for [`mutate`], random.
struct Mutation {
    edits: Vec<(usize, u8)>,
    cut: Option<usize>,
    tail: Vec<u8>,
}

impl Mutation {
    fn random(rng: &mut ChaCha8Rng, max_tail: usize) -> Self {
        let edits = (0..rng.random_range(0..4))
            .map(|_| (rng.random::<u64>() as usize, rng.random()))
            .collect();
        let cut = rng.random_bool(0.5).then(|| rng.random::<u64>() as usize);
        Self {
            edits,
            cut,
            tail: some_bytes(rng, max_tail),
        }
    }

    /// Applies the byte edits, the truncation and the extension to `base`.
    fn apply(&self, mut base: Vec<u8>) -> Vec<u8> {
        for &(at, value) in &self.edits {
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
        if let Some(cut) = self.cut {
            base.truncate(cut % (base.len() + 1));
        }
        base.extend_from_slice(&self.tail);
        base
    }
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

#[test]
fn idx_arbitrary_bytes_never_panic() {
    for_cases("idx_arbitrary_bytes_never_panic", |rng| {
        let bytes = some_bytes(rng, 200);
        check_idx(&bytes);
        // Also behind a gzip magic, so the decompressor sees garbage.
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&bytes);
        check_idx(&gz);
    });
}

#[test]
fn idx_mutated_files_never_panic() {
    for_cases("idx_mutated_files_never_panic", |rng| {
        let base = valid_idx(rng);
        let mutation = Mutation::random(rng, 3);
        let unmutated = if rng.random_bool(0.5) {
            gzip(&base)
        } else {
            base.clone()
        };
        assert!(parse_idx(&unmutated, Path::new("ok.idx")).is_ok());
        // Mutate the bytes on disk: raw IDX, or the compressed stream itself.
        check_idx(&mutation.apply(unmutated));
        // And the content under a valid gzip wrapper.
        check_idx(&gzip(&mutation.apply(base)));
    });
}

#[test]
fn idx_pairs_of_any_shape_never_panic() {
    for_cases("idx_pairs_of_any_shape_never_panic", |rng| {
        let p = Path::new("x");
        let images = parse_idx(&valid_idx(rng), p).unwrap();
        let labels = parse_idx(&valid_idx(rng), p).unwrap();
        let classes = rng.random_range(0usize..12);
        if let Ok(pair) = idx_pair_from_arrays(images, p, labels, p, classes) {
            assert_eq!(pair.pixels.len(), pair.labels.len() * pair.rows * pair.cols);
            assert!(pair.labels.iter().all(|&l| l < classes));
        }
    });
}

#[test]
fn cifar_arbitrary_and_mutated_bytes_never_panic() {
    for_cases("cifar_arbitrary_and_mutated_bytes_never_panic", |rng| {
        let records = rng.random_range(0usize..3);
        let seed: u8 = rng.random();
        let mutation = Mutation::random(rng, 4);
        let base: Vec<u8> = (0..records * CIFAR_RECORD_BYTES)
            .map(|i| {
                if i % CIFAR_RECORD_BYTES == 0 {
                    seed % 10
                } else {
                    (i as u8) ^ seed
                }
            })
            .collect();
        let bytes = mutation.apply(base);
        let mut out = CifarRecords::default();
        match parse_cifar_batch(&bytes, Path::new("fuzz.bin"), &mut out) {
            Ok(()) => {
                assert_eq!(out.labels.len() * CIFAR_RECORD_BYTES, bytes.len());
                assert_eq!(
                    out.pixels.len(),
                    out.labels.len() * (CIFAR_RECORD_BYTES - 1)
                );
                assert!(out.labels.iter().all(|&l| l < 10));
            }
            Err(_) => assert!(out.labels.is_empty() && out.pixels.is_empty()),
        }
    });
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
