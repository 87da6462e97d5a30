//! End-to-end reader tests through the public API, on files written here byte by byte in the
//! official formats (CIFAR-10 cannot be downloaded on CI machines).

use std::path::Path;

use burn::data::dataset::Dataset;
use diffusion_train::data::{DataConfig, DataError, DatasetSource, Split};

type B = burn::backend::Flex;

/// One CIFAR-10 record: label, then the red, green and blue 32x32 planes.
fn record(label: u8, rgb: [u8; 3], marker: u8) -> Vec<u8> {
    let mut out = vec![label];
    for value in rgb {
        out.extend(std::iter::repeat_n(value, 1024));
    }
    out[1] = marker; // top-left red pixel, to see orientation
    out
}

fn write_cifar(root: &Path, files: &[&str], records_per_file: usize) {
    let dir = root.join("cifar10/cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for (f, name) in files.iter().enumerate() {
        let bytes: Vec<u8> = (0..records_per_file)
            .flat_map(|r| record(((f + r) % 10) as u8, [200, 100, 0], f as u8))
            .collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn cifar_config(root: &Path) -> DataConfig {
    DataConfig::new()
        .with_dataset(DatasetSource::Cifar10)
        .with_data_dir(Some(root.to_string_lossy().into_owned()))
}

const TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

#[test]
fn cifar_files_in_the_official_layout_load_as_rgb_chw() {
    let root = tempfile::tempdir().unwrap();
    write_cifar(root.path(), &TRAIN, 3);
    write_cifar(root.path(), &["test_batch.bin"], 4);
    let train = cifar_config(root.path()).load_dataset().unwrap();
    assert_eq!(train.len(), 15);
    assert_eq!(
        (train.channels(), train.height(), train.width()),
        (3, 32, 32)
    );
    let item = train.get(3).unwrap(); // first record of data_batch_2
    assert_eq!(item.label, 1);
    assert_eq!(item.pixels[0], 1, "marker at the top-left of the red plane");
    assert_eq!(item.pixels[1], 200);
    assert_eq!(item.pixels[1024], 100, "green plane second");
    assert_eq!(item.pixels[2048], 0, "blue plane third");

    let test = cifar_config(root.path())
        .with_split(Split::Test)
        .load_dataset()
        .unwrap();
    assert_eq!(test.len(), 4);

    // Through the batcher: channel order survives, values are in [-1, 1].
    let config = cifar_config(root.path()).with_random_flip(Some(false));
    let batcher = config.batcher(&train, 0);
    let items = (0..2).map(|i| train.get(i).unwrap()).collect();
    let batch = batcher.batch_with_rng::<B, _>(items, &mut rand::rng(), &Default::default());
    assert_eq!(batch.images.dims(), [2, 3, 32, 32]);
    let v: Vec<f32> = batch.images.into_data().to_vec().unwrap();
    assert!((v[1] - (200.0 / 127.5 - 1.0)).abs() < 1e-6);
    assert!((v[1024 + 1] - (100.0 / 127.5 - 1.0)).abs() < 1e-6);
    assert_eq!(v[2048 + 1], -1.0);
}

#[test]
fn cifar_truncated_batch_names_the_file() {
    let root = tempfile::tempdir().unwrap();
    write_cifar(root.path(), &TRAIN, 2);
    let victim = root
        .path()
        .join("cifar10/cifar-10-batches-bin/data_batch_4.bin");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 1]).unwrap();
    let err = cifar_config(root.path()).load_dataset().unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_4.bin") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn cifar_missing_batch_points_to_fetch_data() {
    let root = tempfile::tempdir().unwrap();
    write_cifar(root.path(), &TRAIN[..4], 1);
    let err = cifar_config(root.path())
        .load_dataset()
        .unwrap_err()
        .to_string();
    let expected_dir = root.path().join("cifar10");
    assert_eq!(
        err,
        format!(
            "dataset not found in {}: run `cargo xtask fetch-data --dataset cifar10`",
            expected_dir.display()
        )
    );
}

#[test]
fn fashion_mnist_from_debian_loads_when_installed() {
    let debian = Path::new("/usr/share/datasets/fashion-mnist");
    if !debian.is_dir() {
        // CI installs the package (.ci/run), so there this test must run, not skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI=true but /usr/share/datasets/fashion-mnist is missing: apt-get install dataset-fashion-mnist"
        );
        eprintln!("skipped: the Debian package dataset-fashion-mnist is not installed");
        return;
    }
    // The Debian folder has the same file names as `data/fashion-mnist/`.
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(debian, root.path().join("fashion-mnist")).unwrap();
    let config = DataConfig::new()
        .with_dataset(DatasetSource::FashionMnist)
        .with_split(Split::Test)
        .with_data_dir(Some(root.path().to_string_lossy().into_owned()));
    let ds = config.load_dataset().unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!((ds.channels(), ds.height(), ds.width()), (1, 28, 28));
    assert_eq!(ds.class_names()[9], "Ankle boot");
    // Each class has exactly 1000 test images.
    let mut counts = [0usize; 10];
    ds.labels().iter().for_each(|&l| counts[l] += 1);
    assert_eq!(counts, [1000; 10]);
}
