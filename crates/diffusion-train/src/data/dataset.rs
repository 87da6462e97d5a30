//! The in-memory dataset every source is loaded into.

use burn::data::dataset::Dataset;

use super::DataError;
use super::transform::{ImageShape, Transform};

/// One image with its label, as the batcher consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    /// `channels * height * width` bytes, CHW, in [0, 255].
    pub pixels: Vec<u8>,
    /// Class index, below the dataset's `num_classes`.
    pub label: usize,
}

/// Images kept as u8 in one contiguous buffer, with labels and a lazy [`Transform`].
///
/// `get` applies the resize and padding on the fly, so the dataset holds only the source bytes
/// (CIFAR-10 at 64x64 would otherwise take four times the memory).
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pixels: Vec<u8>,
    labels: Vec<usize>,
    source_shape: ImageShape,
    transform: Transform,
    num_classes: usize,
    class_names: Vec<String>,
}

impl ImageDataset {
    /// Builds a dataset from CHW images laid end to end.
    ///
    /// Errors when `pixels` is not `labels.len()` whole images, when a label is not below
    /// `num_classes`, or when the shape is empty. Class names default to `"0"`, `"1"`, ...
    pub fn from_raw(
        pixels: Vec<u8>,
        labels: Vec<usize>,
        shape: ImageShape,
        num_classes: usize,
    ) -> Result<Self, DataError> {
        if shape.is_empty() || !matches!(shape.channels, 1 | 3) {
            return Err(DataError::config(
                "image shape",
                format!("needs 1 or 3 channels and a non-empty size, got {shape:?}"),
            ));
        }
        if pixels.len() != labels.len() * shape.len() {
            return Err(DataError::config(
                "pixels",
                format!(
                    "holds {} bytes, not {} images of {} bytes",
                    pixels.len(),
                    labels.len(),
                    shape.len()
                ),
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l >= num_classes) {
            return Err(DataError::config(
                "labels",
                format!("label {bad} is out of range 0..{num_classes}"),
            ));
        }
        Ok(Self {
            pixels,
            labels,
            source_shape: shape,
            transform: Transform::default(),
            num_classes,
            class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        })
    }

    /// Replaces the class names (one per class).
    pub fn with_class_names(mut self, names: Vec<String>) -> Result<Self, DataError> {
        if names.len() != self.num_classes {
            return Err(DataError::config(
                "class_names",
                format!("needs {} names, got {}", self.num_classes, names.len()),
            ));
        }
        self.class_names = names;
        Ok(self)
    }

    /// Sets the resize/padding applied by `get`; the output shape changes accordingly.
    ///
    /// Errors when padding would have to crop.
    pub fn with_transform(mut self, transform: Transform) -> Result<Self, DataError> {
        let resized = transform.resize.map_or(self.source_shape, |s| ImageShape {
            height: s,
            width: s,
            ..self.source_shape
        });
        if transform.resize == Some(0) {
            return Err(DataError::config("image_size", "must be at least 1, got 0"));
        }
        if let Some(pad) = transform.pad_to
            && (pad < resized.height || pad < resized.width)
        {
            return Err(DataError::config(
                "pad_to",
                format!(
                    "must be at least the image size {}x{}, got {pad}",
                    resized.height, resized.width
                ),
            ));
        }
        self.transform = transform;
        Ok(self)
    }

    /// Shape of the items returned by `get` (after resize and padding).
    pub fn shape(&self) -> ImageShape {
        self.transform.output_shape(self.source_shape)
    }

    /// Shape of the images as stored.
    pub fn source_shape(&self) -> ImageShape {
        self.source_shape
    }

    /// Channels of the items: 1 or 3.
    pub fn channels(&self) -> usize {
        self.shape().channels
    }

    /// Height of the items.
    pub fn height(&self) -> usize {
        self.shape().height
    }

    /// Width of the items.
    pub fn width(&self) -> usize {
        self.shape().width
    }

    /// Number of classes (labels are `0..num_classes`).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Human-readable class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// All labels, in dataset order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        let label = *self.labels.get(index)?;
        let size = self.source_shape.len();
        let raw = &self.pixels[index * size..(index + 1) * size];
        let pixels = if self.transform.is_identity(self.source_shape) {
            raw.to_vec()
        } else {
            self.transform.apply(raw, self.source_shape)
        };
        Some(ImageItem { pixels, label })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageDataset {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        ImageDataset::from_raw((0..12).collect(), vec![0, 1, 2], shape, 3).unwrap()
    }

    #[test]
    fn get_returns_each_image_with_its_label() {
        let ds = tiny();
        assert_eq!(ds.len(), 3);
        let item = ds.get(1).unwrap();
        assert_eq!(item.pixels, vec![4, 5, 6, 7]);
        assert_eq!(item.label, 1);
        assert!(ds.get(3).is_none());
    }

    #[test]
    fn transform_changes_shape_and_items() {
        let ds = tiny()
            .with_transform(Transform {
                resize: Some(3),
                pad_to: Some(5),
            })
            .unwrap();
        assert_eq!((ds.channels(), ds.height(), ds.width()), (1, 5, 5));
        assert_eq!(ds.get(0).unwrap().pixels.len(), 25);
        assert_eq!(ds.source_shape().height, 2);
    }

    #[test]
    fn padding_smaller_than_image_is_rejected_with_the_field() {
        let err = tiny()
            .with_transform(Transform {
                resize: Some(4),
                pad_to: Some(3),
            })
            .unwrap_err();
        assert!(err.to_string().contains("`pad_to`"), "{err}");
    }

    #[test]
    fn inconsistent_parts_are_rejected() {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        assert!(ImageDataset::from_raw(vec![0; 7], vec![0, 0], shape, 1).is_err());
        assert!(ImageDataset::from_raw(vec![0; 8], vec![0, 1], shape, 1).is_err());
        let two = ImageShape {
            channels: 2,
            ..shape
        };
        assert!(ImageDataset::from_raw(vec![0; 8], vec![0], two, 1).is_err());
        assert!(tiny().with_class_names(vec!["a".into()]).is_err());
        let named = tiny().with_class_names(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(named.unwrap().class_names()[2], "c");
    }
}
