//! Image folders: PNG/JPEG files, one subfolder per class.
//!
//! Class names are the subfolder names, sorted, and labels are their indices. A folder with
//! images and no subfolders is one class. Files other than PNG/JPEG (by extension) and hidden
//! entries are not images and are ignored; an image that does not decode is an error.

use std::path::{Path, PathBuf};

use super::DataError;
use super::dataset::ImageDataset;
use super::transform::{ImageShape, resize_bilinear};

/// What to produce from an image folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderOptions {
    /// Convert to one luma channel instead of RGB.
    pub grayscale: bool,
    /// Resize every image to `size x size`; without it all images must share one size.
    pub resize: Option<usize>,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Sorted visible entries of `dir`, split into (subdirectories, image files).
fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut dirs = Vec::new();
    let mut images = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            dirs.push(path);
        } else if is_image(&path) {
            images.push(path);
        }
    }
    dirs.sort();
    images.sort();
    Ok((dirs, images))
}

/// Decodes one image to CHW bytes with 1 or 3 channels.
fn decode(path: &Path, grayscale: bool) -> Result<(Vec<u8>, ImageShape), DataError> {
    let image_err = |problem: String| DataError::Image {
        path: path.to_path_buf(),
        problem,
    };
    let image = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| image_err(e.to_string()))?;
    Ok(image_to_chw(&image, grayscale))
}

/// The pixels of `image` as planar `[channels, height, width]` bytes: one grey channel when
/// `grayscale`, else RGB (any other colour type is converted).
pub fn image_to_chw(image: &image::DynamicImage, grayscale: bool) -> (Vec<u8>, ImageShape) {
    let (width, height) = (image.width() as usize, image.height() as usize);
    if grayscale {
        let shape = ImageShape {
            channels: 1,
            height,
            width,
        };
        return (image.to_luma8().into_raw(), shape);
    }
    let hwc = image.to_rgb8().into_raw();
    let plane = height * width;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    let shape = ImageShape {
        channels: 3,
        height,
        width,
    };
    (chw, shape)
}

/// Loads every image under `root` (see the module docs for the layout).
pub fn load_image_folder(root: &Path, options: FolderOptions) -> Result<ImageDataset, DataError> {
    let not_found = |problem: &str| DataError::FolderNotFound {
        path: root.to_path_buf(),
        problem: problem.to_string(),
    };
    if !root.is_dir() {
        return Err(not_found("does not exist or is not a directory"));
    }
    let (class_dirs, root_images) = list(root)?;
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    let class_names: Vec<String>;
    if class_dirs.is_empty() {
        class_names = vec![
            root.file_name()
                .map_or_else(|| "images".into(), |n| n.to_string_lossy().into_owned()),
        ];
        files.extend(root_images.into_iter().map(|p| (p, 0)));
    } else {
        if let Some(stray) = root_images.first() {
            return Err(DataError::format(
                stray,
                "image next to class subfolders: move it into a class folder",
            ));
        }
        class_names = class_dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        for (label, dir) in class_dirs.iter().enumerate() {
            let (_, images) = list(dir)?;
            if images.is_empty() {
                return Err(DataError::FolderNotFound {
                    path: dir.clone(),
                    problem: "class folder holds no PNG or JPEG images".into(),
                });
            }
            files.extend(images.into_iter().map(|p| (p, label)));
        }
    }
    if files.is_empty() {
        return Err(not_found("holds no PNG or JPEG images"));
    }

    let mut pixels = Vec::new();
    let mut labels = Vec::with_capacity(files.len());
    let mut common: Option<(ImageShape, &Path)> = None;
    for (path, label) in &files {
        let (mut image, mut shape) = decode(path, options.grayscale)?;
        if let Some(size) = options.resize
            && (shape.height != size || shape.width != size)
        {
            image = resize_bilinear(&image, shape, size, size);
            shape.height = size;
            shape.width = size;
        }
        match common {
            None => common = Some((shape, path)),
            Some((first, first_path)) if first != shape => {
                return Err(DataError::format(
                    path,
                    format!(
                        "is {}x{} but {} is {}x{}: set `image_size` to resize all images",
                        shape.width,
                        shape.height,
                        first_path.display(),
                        first.width,
                        first.height
                    ),
                ));
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(&image);
        labels.push(*label);
    }
    let Some((shape, _)) = common else {
        return Err(not_found("holds no PNG or JPEG images"));
    };
    ImageDataset::from_raw(pixels, labels, shape, class_names.len())?.with_class_names(class_names)
}

#[cfg(test)]
mod tests {
    use burn::data::dataset::Dataset;
    use image::{Rgb, RgbImage};

    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, color: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(w, h, Rgb(color)).save(path).unwrap();
    }

    const RGB: FolderOptions = FolderOptions {
        grayscale: false,
        resize: None,
    };

    #[test]
    fn classes_are_sorted_subfolders_and_pixels_are_chw() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("zebra/1.png"), 3, 2, [10, 20, 30]);
        write_png(&dir.path().join("ant/a.png"), 3, 2, [1, 2, 3]);
        write_png(&dir.path().join("ant/b.PNG"), 3, 2, [4, 5, 6]);
        std::fs::write(dir.path().join("ant/notes.txt"), "not an image").unwrap();
        let ds = load_image_folder(dir.path(), RGB).unwrap();
        assert_eq!(ds.class_names(), ["ant", "zebra"]);
        assert_eq!(ds.labels(), [0, 0, 1]);
        assert_eq!((ds.channels(), ds.height(), ds.width()), (3, 2, 3));
        let item = ds.get(2).unwrap();
        assert_eq!(item.pixels[..6], [10; 6], "red plane first");
        assert_eq!(item.pixels[6..12], [20; 6]);
        assert_eq!(item.pixels[12..], [30; 6]);
    }

    #[test]
    fn grayscale_and_resize_options_apply() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 4, 4, [200, 200, 200]);
        write_png(&dir.path().join("b.jpg"), 8, 6, [200, 200, 200]);
        let err = load_image_folder(dir.path(), RGB).unwrap_err().to_string();
        assert!(err.contains("b.jpg") && err.contains("image_size"), "{err}");
        let opts = FolderOptions {
            grayscale: true,
            resize: Some(5),
        };
        let ds = load_image_folder(dir.path(), opts).unwrap();
        assert_eq!(
            (ds.len(), ds.channels(), ds.height(), ds.width()),
            (2, 1, 5, 5)
        );
        assert_eq!(ds.num_classes(), 1);
        // JPEG is lossy; a flat gray stays close to 200.
        assert!(
            ds.get(1)
                .unwrap()
                .pixels
                .iter()
                .all(|&v| v.abs_diff(200) <= 3)
        );
    }

    #[test]
    fn unreadable_image_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("c/ok.png"), 2, 2, [0, 0, 0]);
        std::fs::write(dir.path().join("c/broken.png"), b"\x89PNG not really").unwrap();
        let err = load_image_folder(dir.path(), RGB).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }), "{err}");
        assert!(err.to_string().contains("broken.png"), "{err}");
    }

    #[test]
    fn missing_empty_and_mixed_layouts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_image_folder(&dir.path().join("nope"), RGB).unwrap_err();
        assert!(
            matches!(missing, DataError::FolderNotFound { .. }),
            "{missing}"
        );
        let empty = load_image_folder(dir.path(), RGB).unwrap_err();
        assert!(empty.to_string().contains("no PNG or JPEG"), "{empty}");
        std::fs::create_dir(dir.path().join("empty_class")).unwrap();
        write_png(&dir.path().join("full/x.png"), 2, 2, [0, 0, 0]);
        let err = load_image_folder(dir.path(), RGB).unwrap_err().to_string();
        assert!(err.contains("empty_class"), "{err}");
        std::fs::remove_dir(dir.path().join("empty_class")).unwrap();
        write_png(&dir.path().join("stray.png"), 2, 2, [0, 0, 0]);
        let err = load_image_folder(dir.path(), RGB).unwrap_err().to_string();
        assert!(err.contains("stray.png"), "{err}");
    }
}
