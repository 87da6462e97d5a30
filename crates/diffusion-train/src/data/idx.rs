//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.
//!
//! Format (<http://yann.lecun.com/exdb/mnist/>): two zero bytes, a type code (`0x08` = u8, the
//! only one we accept), the number of dimensions `n`, then `n` big-endian `u32` sizes, then the
//! data in row-major order. Compression is detected by the gzip magic, not by the file name.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::DataError;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// IDX type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of the dimensions, outermost first (`[count, rows, cols]` for images).
    pub dims: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads an IDX file, decompressing it first when it starts with the gzip magic.
pub fn read_idx_file(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_idx(&bytes, path)
}

/// Parses the bytes of an IDX file (raw or gzip); `path` only names the source in errors.
///
/// Never panics and never allocates more than the input can fill: sizes announced by the
/// header are checked against the bytes actually present.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_idx_stream(MultiGzDecoder::new(bytes), path, true)
    } else {
        parse_idx_stream(bytes, path, false)
    }
}

fn parse_idx_stream(mut reader: impl Read, path: &Path, gzip: bool) -> Result<IdxArray, DataError> {
    let read_err = |e: std::io::Error| {
        if gzip {
            DataError::format(path, format!("corrupt gzip stream: {e}"))
        } else {
            DataError::io(path, e)
        }
    };

    let mut magic = [0u8; 4];
    read_header(&mut reader, &mut magic, path, read_err)?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::format(
            path,
            format!(
                "bad magic {:02x}{:02x}{:02x}{:02x}: not an IDX file (expected 0000 08 0n)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(DataError::format(
            path,
            format!("IDX type code 0x{:02x} is not u8 (0x08)", magic[2]),
        ));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(DataError::format(path, "IDX file with zero dimensions"));
    }

    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        let mut size = [0u8; 4];
        read_header(&mut reader, &mut size, path, read_err)?;
        dims.push(u32::from_be_bytes(size) as usize);
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, format!("dimensions {dims:?} overflow")))?;

    // Grow the buffer as bytes arrive instead of trusting the header with one big allocation.
    let mut data = Vec::new();
    (&mut reader)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() < expected {
        return Err(DataError::format(
            path,
            format!(
                "truncated: header {dims:?} announces {expected} data bytes, file has {}",
                data.len()
            ),
        ));
    }
    // Reading past the end also makes the gzip decoder check its CRC.
    let mut extra = [0u8; 1];
    let trailing = reader.read(&mut extra).map_err(read_err)?;
    if trailing != 0 {
        return Err(DataError::format(
            path,
            format!("trailing bytes after the {expected} data bytes announced by {dims:?}"),
        ));
    }
    Ok(IdxArray { dims, data })
}

fn read_header(
    reader: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    read_err: impl Fn(std::io::Error) -> DataError,
) -> Result<(), DataError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DataError::format(path, "truncated IDX header")
        } else {
            read_err(e)
        }
    })
}

/// Images and labels read from a pair of IDX files.
#[derive(Debug, Clone)]
pub struct IdxImages {
    /// `count * rows * cols` pixels, one image after the other.
    pub pixels: Vec<u8>,
    /// One label per image, each below `num_classes`.
    pub labels: Vec<usize>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// Reads an image file (3 dims) and a label file (1 dim) and checks that they agree and that
/// every label is below `num_classes`.
pub fn read_idx_pair(
    images_path: &Path,
    labels_path: &Path,
    num_classes: usize,
) -> Result<IdxImages, DataError> {
    let images = read_idx_file(images_path)?;
    let labels = read_idx_file(labels_path)?;
    idx_pair_from_arrays(images, images_path, labels, labels_path, num_classes)
}

/// Checks a parsed image/label pair; split out so the fuzz tests reach it without files.
pub fn idx_pair_from_arrays(
    images: IdxArray,
    images_path: &Path,
    labels: IdxArray,
    labels_path: &Path,
    num_classes: usize,
) -> Result<IdxImages, DataError> {
    let [count, rows, cols] = images.dims[..] else {
        return Err(DataError::format(
            images_path,
            format!(
                "expected 3 dimensions [count, rows, cols], found {:?}",
                images.dims
            ),
        ));
    };
    if rows == 0 || cols == 0 {
        return Err(DataError::format(
            images_path,
            format!("empty images of {rows}x{cols} pixels"),
        ));
    }
    let [label_count] = labels.dims[..] else {
        return Err(DataError::format(
            labels_path,
            format!("expected 1 dimension [count], found {:?}", labels.dims),
        ));
    };
    if label_count != count {
        return Err(DataError::format(
            labels_path,
            format!(
                "{label_count} labels for {count} images in {}",
                images_path.display()
            ),
        ));
    }
    if let Some((index, &bad)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= num_classes)
    {
        return Err(DataError::format(
            labels_path,
            format!("label {bad} at index {index} is out of range 0..{num_classes}"),
        ));
    }
    Ok(IdxImages {
        pixels: images.data,
        labels: labels.data.into_iter().map(usize::from).collect(),
        rows,
        cols,
    })
}

/// Finds `<dir>/<stem>.gz` or `<dir>/<stem>`, the compressed name first.
pub fn find_idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Serialises `dims` and `data` as a raw IDX u8 file; the inverse of [`parse_idx`].
///
/// Used by tests and tools that need to write small datasets.
pub fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn raw_and_gzip_parse_to_the_same_array() {
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let raw = encode_idx(&[2, 3, 4], &data);
        let a = parse_idx(&raw, p()).unwrap();
        let b = parse_idx(&gzip(&raw), p()).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        assert_eq!(a, b);
    }

    #[test]
    fn bad_magic_is_named() {
        let mut raw = encode_idx(&[1], &[7]);
        raw[0] = 1;
        let err = parse_idx(&raw, p()).unwrap_err().to_string();
        assert!(err.contains("bad magic") && err.contains("x.idx"), "{err}");
    }

    #[test]
    fn non_u8_type_is_rejected() {
        let mut raw = encode_idx(&[1], &[7]);
        raw[2] = 0x0d; // float
        let err = parse_idx(&raw, p()).unwrap_err().to_string();
        assert!(err.contains("type code 0x0d"), "{err}");
    }

    #[test]
    fn truncated_data_reports_both_sizes() {
        let raw = encode_idx(&[10, 2, 2], &[0; 39]);
        let err = parse_idx(&raw, p()).unwrap_err().to_string();
        assert!(
            err.contains("truncated") && err.contains("40") && err.contains("39"),
            "{err}"
        );
        let err = parse_idx(&gzip(&raw), p()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn truncated_header_and_trailing_bytes_are_errors() {
        let raw = encode_idx(&[3, 2], &[0; 6]);
        assert!(
            parse_idx(&raw[..9], p())
                .unwrap_err()
                .to_string()
                .contains("header")
        );
        let mut long = raw.clone();
        long.push(1);
        assert!(
            parse_idx(&long, p())
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
    }

    #[test]
    fn corrupt_gzip_is_a_format_error() {
        let mut gz = gzip(&encode_idx(&[4], &[1, 2, 3, 4]));
        let n = gz.len();
        gz[n - 6] ^= 0xff; // inside the CRC32 trailer
        let err = parse_idx(&gz, p()).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err}");
    }

    #[test]
    fn huge_announced_size_does_not_allocate_it() {
        // 4e9 * 4e9 overflows; 65535^2 fits but the data is absent.
        let raw = encode_idx(&[4_000_000_000, 4_000_000_000, 4_000_000_000], &[]);
        assert!(parse_idx(&raw, p()).is_err());
        let raw = encode_idx(&[65_535, 65_535], &[1, 2]);
        assert!(
            parse_idx(&raw, p())
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    fn arrays(count: u32, labels: &[u8]) -> (IdxArray, IdxArray) {
        let images = parse_idx(
            &encode_idx(&[count, 2, 2], &vec![9; 4 * count as usize]),
            p(),
        );
        let labels = parse_idx(&encode_idx(&[labels.len() as u32], labels), p());
        (images.unwrap(), labels.unwrap())
    }

    #[test]
    fn pair_checks_count_and_label_range() {
        let (i, l) = arrays(3, &[0, 1, 9]);
        let ok = idx_pair_from_arrays(i, p(), l, Path::new("l.idx"), 10).unwrap();
        assert_eq!((ok.rows, ok.cols, ok.labels), (2, 2, vec![0, 1, 9]));

        let (i, l) = arrays(3, &[0, 1]);
        let err = idx_pair_from_arrays(i, p(), l, Path::new("l.idx"), 10).unwrap_err();
        assert!(err.to_string().contains("2 labels for 3 images"), "{err}");

        let (i, l) = arrays(2, &[0, 10]);
        let err = idx_pair_from_arrays(i, p(), l, Path::new("l.idx"), 10).unwrap_err();
        assert!(err.to_string().contains("label 10 at index 1"), "{err}");
    }

    #[test]
    fn pair_rejects_wrong_ranks() {
        let (i, l) = arrays(2, &[0, 1]);
        let err = idx_pair_from_arrays(l.clone(), p(), i.clone(), p(), 10).unwrap_err();
        assert!(err.to_string().contains("3 dimensions"), "{err}");
        let err = idx_pair_from_arrays(i.clone(), p(), i, Path::new("l.idx"), 10).unwrap_err();
        assert!(err.to_string().contains("1 dimension"), "{err}");
    }

    #[test]
    fn find_prefers_gz_and_falls_back_to_raw() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_idx_file(dir.path(), "a"), None);
        std::fs::write(dir.path().join("a"), b"").unwrap();
        assert_eq!(find_idx_file(dir.path(), "a"), Some(dir.path().join("a")));
        std::fs::write(dir.path().join("a.gz"), b"").unwrap();
        assert_eq!(
            find_idx_file(dir.path(), "a"),
            Some(dir.path().join("a.gz"))
        );
    }
}
