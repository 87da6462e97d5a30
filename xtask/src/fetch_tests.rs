//! Tests of `fetch_dataset` against a local HTTP server and local mirrors; no internet.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};

use super::*;
use crate::table::RawContent;
use crate::test_server::{Reply, TestServer};

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A fake IDX-like payload; large enough that a cut lands mid-body.
fn payload(seed: u8) -> Vec<u8> {
    (0..50_000u32)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 7) as u8)
        .collect()
}

fn gz_file(name: &str, raw: &[u8], urls: Vec<String>) -> RemoteFile {
    RemoteFile {
        name: format!("{name}.gz"),
        urls,
        sha256: sha(&gzip(raw, 6)),
        raw: Some(RawContent {
            name: name.into(),
            sha256: sha(raw),
        }),
    }
}

fn options(data_dir: &Path, mirror: Option<Mirror>) -> FetchOptions {
    FetchOptions {
        data_dir: data_dir.to_path_buf(),
        mirror,
        force: false,
        timeout: Duration::from_secs(5),
        env_proxy: false,
        verbose: false,
    }
}

fn spec(files: Vec<RemoteFile>) -> DatasetSpec {
    DatasetSpec {
        name: "toy".into(),
        files,
        unpack: Unpack::Keep,
    }
}

/// Names in the dataset folder (sorted), to check that nothing half-written is left.
fn listing(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn server(routes: &[(&str, Reply)]) -> TestServer {
    TestServer::start(
        routes
            .iter()
            .map(|(p, r)| (p.to_string(), r.clone()))
            .collect::<HashMap<_, _>>(),
    )
}

#[test]
fn happy_path_places_files_writes_marker_and_second_run_does_nothing() {
    let (a, b) = (payload(3), payload(5));
    let srv = server(&[
        ("/a.gz", Reply::Body(gzip(&a, 6))),
        ("/b.gz", Reply::Body(gzip(&b, 6))),
    ]);
    let spec = spec(vec![
        gz_file("a", &a, vec![srv.url("/a.gz")]),
        gz_file("b", &b, vec![srv.url("/b.gz")]),
    ]);
    let data = tempfile::tempdir().unwrap();
    let mut opts = options(data.path(), None);

    assert_eq!(fetch_dataset(&spec, &opts).unwrap(), Outcome::Fetched);
    let dir = data.path().join("toy");
    assert_eq!(listing(&dir), [MARKER, "a.gz", "b.gz"]);
    assert_eq!(std::fs::read(dir.join("a.gz")).unwrap(), gzip(&a, 6));
    let marker = std::fs::read_to_string(dir.join(MARKER)).unwrap();
    assert!(marker.contains(&spec.files[1].sha256), "{marker}");

    assert_eq!(
        fetch_dataset(&spec, &opts).unwrap(),
        Outcome::AlreadyPresent
    );
    assert_eq!(
        srv.hits("/a.gz"),
        1,
        "a complete folder is not downloaded again"
    );

    opts.force = true;
    assert_eq!(fetch_dataset(&spec, &opts).unwrap(), Outcome::Fetched);
    assert_eq!(srv.hits("/a.gz"), 2);
    assert_eq!(listing(&dir), [MARKER, "a.gz", "b.gz"]);
}

#[test]
fn missing_output_file_triggers_a_new_fetch() {
    let a = payload(3);
    let srv = server(&[("/a.gz", Reply::Body(gzip(&a, 6)))]);
    let spec = spec(vec![gz_file("a", &a, vec![srv.url("/a.gz")])]);
    let data = tempfile::tempdir().unwrap();
    let opts = options(data.path(), None);
    fetch_dataset(&spec, &opts).unwrap();
    std::fs::remove_file(data.path().join("toy/a.gz")).unwrap();
    assert_eq!(fetch_dataset(&spec, &opts).unwrap(), Outcome::Fetched);
    assert_eq!(srv.hits("/a.gz"), 2);
}

#[test]
fn corrupted_file_is_a_checksum_error_and_leaves_nothing() {
    let a = payload(3);
    let mut bad = gzip(&a, 6);
    bad[100] ^= 0x55;
    let srv = server(&[("/a.gz", Reply::Body(bad.clone()))]);
    let spec = spec(vec![gz_file("a", &a, vec![srv.url("/a.gz")])]);
    let data = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        fetch_dataset(&spec, &options(data.path(), None)).unwrap_err()
    );
    assert!(err.contains("checksum mismatch for a.gz"), "{err}");
    assert!(
        err.contains(&format!("expected sha256 {}", spec.files[0].sha256)),
        "{err}"
    );
    assert!(err.contains(&format!("got {}", sha(&bad))), "{err}");
    assert!(err.contains("the file was removed"), "{err}");
    assert!(
        listing(&data.path().join("toy")).is_empty(),
        "nothing left behind"
    );
}

#[test]
fn http_404_names_the_url_and_suggests_a_mirror() {
    let a = payload(3);
    let srv = server(&[]);
    let spec = spec(vec![gz_file("a", &a, vec![srv.url("/a.gz")])]);
    let data = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        fetch_dataset(&spec, &options(data.path(), None)).unwrap_err()
    );
    assert!(
        err.contains(&format!("{}: HTTP 404", srv.url("/a.gz"))),
        "{err}"
    );
    assert!(err.contains("--mirror"), "{err}");
    assert!(
        !data.path().join("toy").exists(),
        "the empty folder is removed again"
    );
}

#[test]
fn connection_cut_mid_file_is_reported_and_cleaned_up() {
    let a = payload(3);
    let body = gzip(&a, 0); // stored, so the body is long
    let after = body.len() / 2;
    let srv = server(&[(
        "/a.gz",
        Reply::Cut {
            body: body.clone(),
            after,
        },
    )]);
    let spec = spec(vec![gz_file("a", &a, vec![srv.url("/a.gz")])]);
    let data = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        fetch_dataset(&spec, &options(data.path(), None)).unwrap_err()
    );
    assert!(err.contains("connection dropped after"), "{err}");
    assert!(err.contains(&format!("of {} bytes", body.len())), "{err}");
    assert!(listing(&data.path().join("toy")).is_empty());
}

#[test]
fn unreachable_host_names_the_url_and_suggests_a_mirror() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/a.gz");
    let spec = spec(vec![gz_file("a", &payload(1), vec![url.clone()])]);
    let data = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        fetch_dataset(&spec, &options(data.path(), None)).unwrap_err()
    );
    assert!(err.contains(&format!("{url}: cannot connect")), "{err}");
    assert!(err.contains("--mirror DIR|URL"), "{err}");
}

#[test]
fn fallback_url_is_used_when_the_primary_fails() {
    let a = payload(7);
    let srv = server(&[
        ("/primary/a.gz", Reply::Status(503)),
        ("/fallback/a.gz", Reply::Body(gzip(&a, 6))),
    ]);
    let urls = vec![srv.url("/primary/a.gz"), srv.url("/fallback/a.gz")];
    let spec = spec(vec![gz_file("a", &a, urls)]);
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        fetch_dataset(&spec, &options(data.path(), None)).unwrap(),
        Outcome::Fetched
    );
    assert_eq!(
        (srv.hits("/primary/a.gz"), srv.hits("/fallback/a.gz")),
        (1, 1)
    );
}

#[test]
fn mirror_url_replaces_the_table_urls() {
    let a = payload(9);
    let srv = server(&[("/m/a.gz", Reply::Body(gzip(&a, 6)))]);
    let spec = spec(vec![gz_file(
        "a",
        &a,
        vec!["http://127.0.0.1:9/never".into()],
    )]);
    let data = tempfile::tempdir().unwrap();
    let mirror = Mirror::parse(&format!("{}/m/", srv.base));
    assert!(matches!(mirror, Mirror::Url(_)));
    fetch_dataset(&spec, &options(data.path(), Some(mirror))).unwrap();
    assert!(data.path().join("toy/a.gz").is_file());
}

#[test]
fn mirror_dir_accepts_recompressed_and_uncompressed_copies_by_content() {
    let (a, b) = (payload(2), payload(4));
    let mirror = tempfile::tempdir().unwrap();
    // Recompressed: other gzip bytes, same content (what Debian ships).
    let recompressed = gzip(&a, 9);
    assert_ne!(sha(&recompressed), sha(&gzip(&a, 6)));
    std::fs::write(mirror.path().join("a.gz"), &recompressed).unwrap();
    std::fs::write(mirror.path().join("b"), &b).unwrap(); // uncompressed only
    let spec = spec(vec![gz_file("a", &a, vec![]), gz_file("b", &b, vec![])]);
    let data = tempfile::tempdir().unwrap();
    let opts = options(
        data.path(),
        Some(Mirror::parse(&mirror.path().to_string_lossy())),
    );
    fetch_dataset(&spec, &opts).unwrap();
    let dir = data.path().join("toy");
    assert_eq!(listing(&dir), [MARKER, "a.gz", "b"]);
    assert_eq!(std::fs::read(dir.join("a.gz")).unwrap(), recompressed);

    // Other content under the right name is still refused.
    std::fs::write(mirror.path().join("a.gz"), gzip(&b, 6)).unwrap();
    let mut opts = opts;
    opts.force = true;
    let err = format!("{:#}", fetch_dataset(&spec, &opts).unwrap_err());
    assert!(
        err.contains("checksum mismatch for a.gz") && err.contains("decompressed"),
        "{err}"
    );
}

#[test]
fn mirror_dir_without_the_file_says_where_it_looked() {
    let mirror = tempfile::tempdir().unwrap();
    let spec = spec(vec![gz_file("a", &payload(1), vec![])]);
    let data = tempfile::tempdir().unwrap();
    let opts = options(data.path(), Some(Mirror::Dir(mirror.path().to_path_buf())));
    let err = format!("{:#}", fetch_dataset(&spec, &opts).unwrap_err());
    assert!(
        err.contains("a.gz not found in mirror directory") && err.contains("a.gz, a"),
        "{err}"
    );
}

fn tar_gz(top: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{top}/{name}"), *content)
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn tarball_is_unpacked_into_place_and_not_kept() {
    let archive = tar_gz("batches", &[("one.bin", b"111"), ("two.bin", b"22")]);
    let srv = server(&[("/t.tar.gz", Reply::Body(archive.clone()))]);
    let spec = DatasetSpec {
        name: "toy".into(),
        files: vec![RemoteFile {
            name: "t.tar.gz".into(),
            urls: vec![srv.url("/t.tar.gz")],
            sha256: sha(&archive),
            raw: None,
        }],
        unpack: Unpack::TarGz {
            top_dir: "batches".into(),
            expect: vec!["one.bin".into(), "two.bin".into()],
        },
    };
    let data = tempfile::tempdir().unwrap();
    let mut opts = options(data.path(), None);
    fetch_dataset(&spec, &opts).unwrap();
    let dir = data.path().join("toy");
    assert_eq!(listing(&dir), [MARKER, "batches"]);
    assert_eq!(std::fs::read(dir.join("batches/one.bin")).unwrap(), b"111");
    assert_eq!(
        fetch_dataset(&spec, &opts).unwrap(),
        Outcome::AlreadyPresent
    );
    opts.force = true;
    fetch_dataset(&spec, &opts).unwrap();
    assert_eq!(
        listing(&dir),
        [MARKER, "batches"],
        "the old copy is replaced, not kept"
    );

    // An archive without the expected files is refused and leaves no partial folder.
    let wrong = tar_gz("batches", &[("one.bin", b"111")]);
    let srv = server(&[("/t.tar.gz", Reply::Body(wrong.clone()))]);
    let mut spec = spec;
    spec.name = "other".into();
    spec.files[0].urls = vec![srv.url("/t.tar.gz")];
    spec.files[0].sha256 = sha(&wrong);
    let err = format!("{:#}", fetch_dataset(&spec, &opts).unwrap_err());
    assert!(err.contains("no batches/two.bin"), "{err}");
    assert!(listing(&data.path().join("other")).is_empty());
}

#[test]
fn debian_fashion_mnist_passes_the_real_table() {
    let debian = Path::new("/usr/share/datasets/fashion-mnist");
    if !debian.is_dir() {
        // CI installs the package (.ci/run), so there this test must run, not skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI=true but /usr/share/datasets/fashion-mnist is missing: apt-get install dataset-fashion-mnist"
        );
        eprintln!("skipped: install the Debian package dataset-fashion-mnist to run this test");
        return;
    }
    let table = crate::table::builtin_datasets();
    let fashion = table.iter().find(|d| d.name == "fashion-mnist").unwrap();
    let data = tempfile::tempdir().unwrap();
    let opts = options(data.path(), Some(Mirror::Dir(debian.to_path_buf())));
    assert_eq!(fetch_dataset(fashion, &opts).unwrap(), Outcome::Fetched);
    assert_eq!(listing(&data.path().join("fashion-mnist")).len(), 5);
}

/// The `inception-fid` entry of the real table, its URLs replaced by `urls`.
fn inception_spec(urls: Vec<String>) -> DatasetSpec {
    let table = crate::table::builtin_datasets();
    let mut spec = crate::table::select("inception-fid", &table)
        .unwrap()
        .remove(0);
    spec.files[0].urls = urls;
    spec
}

const INCEPTION_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";

#[test]
fn inception_weights_are_kept_as_downloaded_under_their_name() {
    // A stand-in for the 95 MB file: the real table entry with this fixture's checksum.
    let weights = payload(11);
    let path = format!("/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}");
    let srv = server(&[(path.as_str(), Reply::Body(weights.clone()))]);
    let mut spec = inception_spec(vec![srv.url(&path)]);
    spec.files[0].sha256 = sha(&weights);
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        fetch_dataset(&spec, &options(data.path(), None)).unwrap(),
        Outcome::Fetched
    );
    let dir = data.path().join("inception-fid");
    assert_eq!(listing(&dir), [MARKER, INCEPTION_FILE]);
    assert_eq!(std::fs::read(dir.join(INCEPTION_FILE)).unwrap(), weights);
    assert_eq!(
        fetch_dataset(&spec, &options(data.path(), None)).unwrap(),
        Outcome::AlreadyPresent
    );
}

#[test]
fn inception_weights_other_than_the_official_file_are_refused() {
    let srv = server(&[(
        &format!("/m/{INCEPTION_FILE}") as &str,
        Reply::Body(payload(13)),
    )]);
    let spec = inception_spec(vec!["http://127.0.0.1:9/never".into()]);
    let data = tempfile::tempdir().unwrap();
    let mirror = Mirror::parse(&srv.url("/m"));
    let err = format!(
        "{:#}",
        fetch_dataset(&spec, &options(data.path(), Some(mirror))).unwrap_err()
    );
    assert_eq!(srv.hits(&format!("/m/{INCEPTION_FILE}")), 1);
    assert!(
        err.contains(&format!("checksum mismatch for {INCEPTION_FILE}"))
            && err.contains(
                "expected sha256 6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
            ),
        "{err}"
    );
    assert!(listing(&data.path().join("inception-fid")).is_empty());
}
