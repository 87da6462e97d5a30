//! The datasets `fetch-data` knows: where to get each file and its SHA-256.
//!
//! Sources of the checksums (none is guessed):
//! - MNIST `.gz`: the values torchvision (prototype datasets) and tensorflow-datasets pin for
//!   these URLs; the torchvision MD5s (f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...) name
//!   the same files. Raw (decompressed) IDX values: published by several independent projects
//!   that verify the decompressed files; they agree with each other.
//! - Fashion-MNIST `.gz`: the values torchvision pins, for the files whose MD5s Zalando
//!   publishes in its README (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...). Raw values:
//!   computed here from Debian's `dataset-fashion-mnist` package (which recompresses the files,
//!   so its `.gz` bytes differ from Zalando's) and matching values published independently.
//! - CIFAR-10 binary tarball: the value tensorflow-datasets and torchvision-ruby pin, for the
//!   170,052,171-byte file at the Toronto URL.
//! - pytorch-fid's Inception weights (`inception-fid`, not a dataset but fetched the same way):
//!   the value genforce's Hammer pins for this URL (`_MODEL_URL_SHA256['tf_inception_v3']` in
//!   `models/inception_model.py`, e.g. in snap-research/discoscene), which projects checking
//!   the file before use repeat; its first 8 hex digits are the `6726825d` of the file name,
//!   the prefix torch hub's `check_hash` verifies, so the full value is at least as strict.

/// One file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, as on the servers (`train-images-idx3-ubyte.gz`).
    pub name: String,
    /// Full URLs to try in order (primary first).
    pub urls: Vec<String>,
    /// SHA-256 of the file as published.
    pub sha256: String,
    /// For gzip files: the decompressed file's name and SHA-256. A mirror that recompressed the
    /// file (Debian does) or ships it uncompressed is accepted when the content matches.
    pub raw: Option<RawContent>,
}

/// The decompressed content of a `.gz` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawContent {
    /// File name without `.gz`.
    pub name: String,
    /// SHA-256 of the decompressed bytes.
    pub sha256: String,
}

/// What to do with a verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpack {
    /// Keep the file as downloaded (IDX `.gz`: the reader decompresses it).
    Keep,
    /// A `.tar.gz` holding one top-level directory: unpack it and drop the archive.
    TarGz {
        /// The directory the archive contains (`cifar-10-batches-bin`).
        top_dir: String,
        /// Files that must exist in it afterwards.
        expect: Vec<String>,
    },
}

/// A dataset: its folder name under the data directory and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// The `--dataset` name, also its folder under the data directory.
    pub name: String,
    /// Files to fetch.
    pub files: Vec<RemoteFile>,
    /// What to do with them once verified.
    pub unpack: Unpack,
}

/// Primary and fallback hosts of MNIST. The original host (yann.lecun.com) is often down or
/// refuses scripted downloads, so it comes last; the first is the S3 mirror torchvision uses.
const MNIST_BASES: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Zalando's canonical bucket (plain http only), then the files in its GitHub repository.
const FASHION_BASES: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
];

const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// pytorch-fid's FID Inception weights: the TensorFlow graph `inception-2015-12-05` ported to
/// PyTorch (1008 classes), read by `diffusion_eval::inception::FidInception::load`.
const INCEPTION_FID_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
const INCEPTION_FID_URL: &str = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";
const INCEPTION_FID_SHA256: &str =
    "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2";

/// `(stem, gz sha256, raw sha256)` of the four MNIST files.
const MNIST_FILES: [(&str, &str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// `(stem, gz sha256, raw sha256)` of the four Fashion-MNIST files.
const FASHION_FILES: [(&str, &str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        "train-labels-idx1-ubyte",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        "t10k-images-idx3-ubyte",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

fn idx_files(bases: &[&str], files: &[(&str, &str, &str)]) -> Vec<RemoteFile> {
    files
        .iter()
        .map(|(stem, gz, raw)| {
            let name = format!("{stem}.gz");
            RemoteFile {
                urls: bases.iter().map(|b| format!("{b}{name}")).collect(),
                name,
                sha256: gz.to_string(),
                raw: Some(RawContent {
                    name: stem.to_string(),
                    sha256: raw.to_string(),
                }),
            }
        })
        .collect()
}

/// Every dataset `fetch-data` can fetch, in the order `--dataset all` fetches them.
pub fn builtin_datasets() -> Vec<DatasetSpec> {
    vec![
        DatasetSpec {
            name: "mnist".into(),
            files: idx_files(&MNIST_BASES, &MNIST_FILES),
            unpack: Unpack::Keep,
        },
        DatasetSpec {
            name: "fashion-mnist".into(),
            files: idx_files(&FASHION_BASES, &FASHION_FILES),
            unpack: Unpack::Keep,
        },
        DatasetSpec {
            name: "cifar10".into(),
            files: vec![RemoteFile {
                name: "cifar-10-binary.tar.gz".into(),
                urls: vec![CIFAR10_URL.into()],
                sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd".into(),
                raw: None,
            }],
            unpack: Unpack::TarGz {
                top_dir: "cifar-10-batches-bin".into(),
                expect: [
                    "data_batch_1.bin",
                    "data_batch_2.bin",
                    "data_batch_3.bin",
                    "data_batch_4.bin",
                    "data_batch_5.bin",
                    "test_batch.bin",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            },
        },
        DatasetSpec {
            name: "inception-fid".into(),
            files: vec![RemoteFile {
                name: INCEPTION_FID_FILE.into(),
                urls: vec![INCEPTION_FID_URL.into()],
                sha256: INCEPTION_FID_SHA256.into(),
                raw: None,
            }],
            unpack: Unpack::Keep,
        },
    ]
}

/// Resolves a `--dataset` value: one name, or `all`. Errors name the known datasets.
pub fn select(name: &str, table: &[DatasetSpec]) -> anyhow::Result<Vec<DatasetSpec>> {
    if name == "all" {
        return Ok(table.to_vec());
    }
    match table.iter().find(|d| d.name == name) {
        Some(d) => Ok(vec![d.clone()]),
        None => {
            let known: Vec<&str> = table.iter().map(|d| d.name.as_str()).collect();
            anyhow::bail!(
                "unknown dataset `{name}`: known datasets are {}, all",
                known.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checksum_is_64_lowercase_hex_and_unique() {
        let mut all = Vec::new();
        for d in builtin_datasets() {
            for f in &d.files {
                all.push(f.sha256.clone());
                all.extend(f.raw.iter().map(|r| r.sha256.clone()));
                assert!(!f.urls.is_empty(), "{} has no URL", f.name);
                assert!(f.urls.iter().all(|u| u.ends_with(&f.name)), "{:?}", f.urls);
            }
        }
        for s in &all {
            assert_eq!(s.len(), 64, "{s}");
            assert!(s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{s}");
        }
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len(), "a checksum is listed twice");
    }

    #[test]
    fn select_resolves_names_and_lists_known_ones_on_error() {
        let table = builtin_datasets();
        assert_eq!(select("all", &table).unwrap().len(), 4);
        assert_eq!(select("cifar10", &table).unwrap()[0].name, "cifar10");
        let err = select("imagenet", &table).unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown dataset `imagenet`: known datasets are mnist, fashion-mnist, cifar10, \
             inception-fid, all"
        );
    }

    #[test]
    fn inception_checksum_starts_with_the_prefix_in_its_name() {
        // torch hub names checkpoints `<stem>-<first 8 hex digits of the SHA-256>.pth`.
        let table = builtin_datasets();
        let file = &select("inception-fid", &table).unwrap()[0].files[0];
        let prefix = file
            .name
            .trim_end_matches(".pth")
            .rsplit('-')
            .next()
            .unwrap();
        assert_eq!(prefix, "6726825d");
        assert!(file.sha256.starts_with(prefix), "{}", file.sha256);
    }
}
