//! Per-image preprocessing on u8 pixels: bilinear resize, zero padding, scaling to [-1, 1] and
//! horizontal flips.
//!
//! Resize and padding stay in u8 so a dataset can apply them lazily in `get` without holding a
//! second, larger copy of the data. Padding with 0 is black, i.e. -1 after scaling.

/// Geometry of an image stored as `channels` planes of `height x width` bytes (CHW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Number of planes: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// Bytes of one image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The deterministic part of preprocessing: optional square resize, then optional padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transform {
    /// Resize to `size x size` with bilinear interpolation.
    pub resize: Option<usize>,
    /// Pad with black to `pad_to x pad_to`, centred (extra row/column at the bottom/right).
    pub pad_to: Option<usize>,
}

impl Transform {
    /// Shape of an image of shape `input` after this transform.
    ///
    /// Assumes `pad_to` is at least the (resized) size, which the config validation ensures.
    pub fn output_shape(&self, input: ImageShape) -> ImageShape {
        let mut shape = input;
        if let Some(size) = self.resize {
            shape.height = size;
            shape.width = size;
        }
        if let Some(size) = self.pad_to {
            shape.height = shape.height.max(size);
            shape.width = shape.width.max(size);
        }
        shape
    }

    /// Whether the transform leaves images unchanged.
    pub fn is_identity(&self, input: ImageShape) -> bool {
        self.output_shape(input) == input
    }

    /// Applies the transform to one CHW image of shape `input`.
    pub fn apply(&self, pixels: &[u8], input: ImageShape) -> Vec<u8> {
        let mut shape = input;
        let mut out: Vec<u8> = pixels.to_vec();
        if let Some(size) = self.resize
            && (size != shape.height || size != shape.width)
        {
            out = resize_bilinear(&out, shape, size, size);
            shape.height = size;
            shape.width = size;
        }
        if let Some(size) = self.pad_to
            && (size > shape.height || size > shape.width)
        {
            out = pad_centered(&out, shape, size.max(shape.height), size.max(shape.width));
        }
        out
    }
}

/// Resizes a CHW u8 image with bilinear interpolation.
///
/// Uses half-pixel centres and edge clamping, as PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)` and torchvision's `Resize` without
/// antialiasing do, so a 32 -> 64 upscale matches the reference pipelines.
pub fn resize_bilinear(pixels: &[u8], input: ImageShape, out_h: usize, out_w: usize) -> Vec<u8> {
    let ImageShape {
        channels,
        height,
        width,
    } = input;
    let mut out = vec![0u8; channels * out_h * out_w];
    if height == 0 || width == 0 {
        return out;
    }
    let taps = |out_len: usize, in_len: usize| -> Vec<(usize, usize, f32)> {
        let scale = in_len as f32 / out_len as f32;
        (0..out_len)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let lo = (src.floor() as usize).min(in_len - 1);
                let hi = (lo + 1).min(in_len - 1);
                (lo, hi, src - lo as f32)
            })
            .collect()
    };
    let rows = taps(out_h, height);
    let cols = taps(out_w, width);
    // Separable: interpolate along each source row first, then between rows. Same arithmetic
    // as the 2-D formula, in fewer operations.
    let mut horizontal = vec![0f32; height * out_w];
    for c in 0..channels {
        let plane = &pixels[c * height * width..(c + 1) * height * width];
        for (src_row, dst_row) in plane
            .chunks_exact(width)
            .zip(horizontal.chunks_exact_mut(out_w))
        {
            for (dst, &(x0, x1, fx)) in dst_row.iter_mut().zip(&cols) {
                *dst = f32::from(src_row[x0]) * (1.0 - fx) + f32::from(src_row[x1]) * fx;
            }
        }
        let out_plane = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (dst_row, &(y0, y1, fy)) in out_plane.chunks_exact_mut(out_w).zip(&rows) {
            let top = &horizontal[y0 * out_w..(y0 + 1) * out_w];
            let bottom = &horizontal[y1 * out_w..(y1 + 1) * out_w];
            for ((dst, &t), &b) in dst_row.iter_mut().zip(top).zip(bottom) {
                // A convex combination of bytes lies in [0, 255]; adding 0.5 and truncating
                // rounds like `f32::round` there, without its libm call.
                *dst = (t * (1.0 - fy) + b * fy + 0.5) as u8;
            }
        }
    }
    out
}

/// Pads a CHW u8 image with zeros to `out_h x out_w`, centred.
pub fn pad_centered(pixels: &[u8], input: ImageShape, out_h: usize, out_w: usize) -> Vec<u8> {
    let ImageShape {
        channels,
        height,
        width,
    } = input;
    let top = (out_h - height) / 2;
    let left = (out_w - width) / 2;
    let mut out = vec![0u8; channels * out_h * out_w];
    for c in 0..channels {
        for y in 0..height {
            let src = &pixels[(c * height + y) * width..(c * height + y + 1) * width];
            let start = (c * out_h + top + y) * out_w + left;
            out[start..start + width].copy_from_slice(src);
        }
    }
    out
}

/// Maps a pixel from [0, 255] to [-1, 1].
pub fn scale_to_unit(value: u8) -> f32 {
    f32::from(value) / 127.5 - 1.0
}

/// Mirrors a CHW image of `f32` left to right, in place.
pub fn flip_horizontal(values: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    for row in values.chunks_exact_mut(width) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(h: usize, w: usize) -> ImageShape {
        ImageShape {
            channels: 1,
            height: h,
            width: w,
        }
    }

    #[test]
    fn scaling_maps_the_ends_and_midpoint() {
        assert_eq!(scale_to_unit(0), -1.0);
        assert_eq!(scale_to_unit(255), 1.0);
        assert!(scale_to_unit(128).abs() < 0.01);
    }

    #[test]
    fn padding_centres_the_image_in_black() {
        let img: Vec<u8> = (1..=4).collect(); // 2x2
        let out = pad_centered(&img, gray(2, 2), 4, 4);
        #[rustfmt::skip]
        let expected = vec![
            0, 0, 0, 0,
            0, 1, 2, 0,
            0, 3, 4, 0,
            0, 0, 0, 0,
        ];
        assert_eq!(out, expected);
        // 28 -> 32 puts two black rows above and below.
        let out = pad_centered(&[255; 28 * 28], gray(28, 28), 32, 32);
        assert_eq!(out[..2 * 32], [0; 64]);
        assert_eq!(out[2 * 32 + 2], 255);
        assert_eq!(out.iter().filter(|&&v| v == 255).count(), 28 * 28);
    }

    #[test]
    fn bilinear_upscale_matches_half_pixel_reference() {
        // 1x2 -> 1x4 along the width: PyTorch gives [a, 0.75a+0.25b, 0.25a+0.75b, b].
        let out = resize_bilinear(&[0, 200], gray(1, 2), 1, 4);
        assert_eq!(out, vec![0, 50, 150, 200]);
    }

    #[test]
    fn bilinear_keeps_constant_images_and_identity_sizes() {
        let img = vec![77u8; 3 * 5 * 7];
        let shape = ImageShape {
            channels: 3,
            height: 5,
            width: 7,
        };
        assert!(resize_bilinear(&img, shape, 9, 4).iter().all(|&v| v == 77));
        let ramp: Vec<u8> = (0..35).collect();
        assert_eq!(resize_bilinear(&ramp, gray(5, 7), 5, 7), ramp);
    }

    /// The textbook 2-D formula, one output pixel at a time.
    fn reference(pixels: &[u8], s: ImageShape, out_h: usize, out_w: usize) -> Vec<u8> {
        let src = |o: usize, out_len: usize, in_len: usize| {
            let x = ((o as f32 + 0.5) * in_len as f32 / out_len as f32 - 0.5).max(0.0);
            let lo = (x.floor() as usize).min(in_len - 1);
            (lo, (lo + 1).min(in_len - 1), x - lo as f32)
        };
        let mut out = Vec::new();
        for c in 0..s.channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let (y0, y1, fy) = src(oy, out_h, s.height);
                    let (x0, x1, fx) = src(ox, out_w, s.width);
                    let at =
                        |y: usize, x: usize| f32::from(pixels[(c * s.height + y) * s.width + x]);
                    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                    out.push((top * (1.0 - fy) + bottom * fy).round() as u8);
                }
            }
        }
        out
    }

    #[test]
    fn separable_resize_equals_the_2d_formula() {
        let shape = ImageShape {
            channels: 3,
            height: 5,
            width: 7,
        };
        let img: Vec<u8> = (0..shape.len()).map(|i| (i * 37 % 251) as u8).collect();
        for (h, w) in [(13, 3), (2, 11), (5, 7), (64, 64), (1, 1)] {
            assert_eq!(
                resize_bilinear(&img, shape, h, w),
                reference(&img, shape, h, w),
                "{h}x{w}"
            );
        }
    }

    #[test]
    fn bilinear_downscale_by_two_averages_pairs() {
        let out = resize_bilinear(&[10, 30, 50, 70], gray(1, 4), 1, 2);
        assert_eq!(out, vec![20, 60]);
    }

    #[test]
    fn channels_are_resized_independently() {
        let img = [vec![0u8; 4], vec![255u8; 4]].concat();
        let shape = ImageShape {
            channels: 2,
            height: 2,
            width: 2,
        };
        let out = resize_bilinear(&img, shape, 3, 3);
        assert!(out[..9].iter().all(|&v| v == 0));
        assert!(out[9..].iter().all(|&v| v == 255));
    }

    #[test]
    fn transform_resizes_then_pads() {
        let t = Transform {
            resize: Some(4),
            pad_to: Some(6),
        };
        let out_shape = t.output_shape(gray(2, 2));
        assert_eq!(out_shape, gray(6, 6));
        let out = t.apply(&[9, 9, 9, 9], gray(2, 2));
        assert_eq!(out.len(), 36);
        assert_eq!(out.iter().filter(|&&v| v == 9).count(), 16);
        assert!(Transform::default().is_identity(gray(3, 3)));
        assert!(!t.is_identity(gray(2, 2)));
    }

    #[test]
    fn flip_reverses_each_row() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        flip_horizontal(&mut v, 3);
        assert_eq!(v, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    }
}
