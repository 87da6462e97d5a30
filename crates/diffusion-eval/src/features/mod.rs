//! [`Features`]: a matrix of feature vectors, one row per image, and its file cache
//! ([`Features::save`], [`Features::load`]; the format is in [`cache`]).

pub mod cache;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::EvalError;

/// Feature vectors of `len()` images, `dim()` values each, row-major, in f32 (what the
/// extractors produce); statistics over them are computed in f64 (see [`crate::stats`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    dim: usize,
    data: Vec<f32>,
}

impl Features {
    /// An empty matrix of `dim`-dimensional rows.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
        }
    }

    /// Wraps row-major `data`; its length must be a multiple of `dim` (and `dim` non-zero).
    pub fn from_rows(dim: usize, data: Vec<f32>) -> Result<Self, EvalError> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(EvalError::Shape(format!(
                "{} feature values do not form rows of {dim}",
                data.len()
            )));
        }
        Ok(Self { dim, data })
    }

    /// Appends the rows of a `[n, dim]` tensor.
    pub fn push_tensor<B: Backend>(&mut self, rows: Tensor<B, 2>) -> Result<(), EvalError> {
        let [_, dim] = rows.dims();
        if dim != self.dim {
            return Err(EvalError::Shape(format!(
                "features of dimension {dim} appended to a matrix of dimension {}",
                self.dim
            )));
        }
        let data = rows.into_data().convert::<f32>();
        self.data.extend(data.iter::<f32>());
        Ok(())
    }

    /// Appends the rows of `other` (same dimension).
    pub fn extend(&mut self, other: &Features) -> Result<(), EvalError> {
        if other.dim != self.dim {
            return Err(EvalError::Shape(format!(
                "features of dimension {} appended to a matrix of dimension {}",
                other.dim, self.dim
            )));
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// The number of rows (images).
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The length of each row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// The first `n` rows (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Features {
        let n = n.min(self.len());
        Self {
            dim: self.dim,
            data: self.data[..n * self.dim].to_vec(),
        }
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_shapes() {
        let f = Features::from_rows(2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!((f.len(), f.dim()), (3, 2));
        assert_eq!(f.row(1), &[3.0, 4.0]);
        assert_eq!(f.head(2).as_slice(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(f.rows().count(), 3);
        assert!(Features::from_rows(4, vec![0.0; 6]).is_err());
        assert!(Features::from_rows(0, vec![]).is_err());
    }

    #[test]
    fn push_tensor_checks_the_dimension() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let mut f = Features::new(3);
        let t = Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device);
        f.push_tensor(t).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f.row(1), &[4.0, 5.0, 6.0]);
        let wrong = Tensor::<B, 2>::zeros([1, 2], &device);
        assert!(f.push_tensor(wrong).is_err());
    }
}
