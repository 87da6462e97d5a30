//! Class-label embedding with one extra "null" class for classifier-free guidance.
//!
//! Class ids `0..num_classes` are the real classes; id `num_classes` is the null class that
//! training feeds when it drops a label and that sampling feeds for the unconditional branch.
//! The embedding is added to the time embedding, as diffusers' `class_embedding`.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Configuration of [`LabelEmbedding`].
#[derive(Config, Debug)]
pub struct LabelEmbeddingConfig {
    /// Number of real classes; the table gets one more row for the null class.
    pub num_classes: usize,
    /// Width of the embedding (the time-embedding width).
    pub embed_dim: usize,
}

impl LabelEmbeddingConfig {
    /// Builds the table with N(0, 1) rows, as `torch.nn.Embedding`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LabelEmbedding<B> {
        let weight = Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .init([self.num_classes + 1, self.embed_dim], device);
        LabelEmbedding {
            weight,
            num_classes: self.num_classes,
        }
    }
}

/// Lookup table of `num_classes + 1` rows; the last row is the null class.
#[derive(Module, Debug)]
pub struct LabelEmbedding<B: Backend> {
    /// `[num_classes + 1, embed_dim]`, named `weight` like `nn.Embedding` for weight import.
    pub weight: Param<Tensor<B, 2>>,
    /// Number of real classes (also the id of the null class).
    pub num_classes: usize,
}

impl<B: Backend> LabelEmbedding<B> {
    /// The id of the null class.
    pub fn null_label(&self) -> usize {
        self.num_classes
    }

    /// Looks up class ids; they must lie in `0..=num_classes` (checked by
    /// [`crate::UNet::check_labels`], not here, to avoid a device sync per call).
    ///
    /// # Shapes
    /// - `labels`: `[batch]`
    /// - returns: `[batch, embed_dim]`
    pub fn forward(&self, labels: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let [batch] = labels.dims();
        let [_, dim] = self.weight.dims();
        // `select` along the rows is a gather whose backward scatters into the table.
        self.weight.val().select(0, labels).reshape([batch, dim])
    }

    /// Embeds the null class for a whole batch.
    ///
    /// # Shapes
    /// - returns: `[batch, embed_dim]`
    pub fn forward_null(&self, batch: usize, device: &B::Device) -> Tensor<B, 2> {
        let labels = Tensor::<B, 1, Int>::full([batch], self.null_label() as i64, device);
        self.forward(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;

    #[test]
    fn rows_are_looked_up_and_null_is_last() {
        let device = Default::default();
        let emb = LabelEmbeddingConfig::new(3, 5).init::<TestBackend>(&device);
        assert_eq!(emb.weight.dims(), [4, 5]);
        let table = emb.weight.val().into_data().to_vec::<f32>().unwrap();
        let labels = Tensor::<TestBackend, 1, Int>::from_data([2, 0, 3], &device);
        let out = emb.forward(labels).into_data().to_vec::<f32>().unwrap();
        for (b, row) in [2usize, 0, 3].iter().enumerate() {
            assert_eq!(out[b * 5..(b + 1) * 5], table[row * 5..(row + 1) * 5]);
        }
        let null = emb
            .forward_null(2, &device)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(null[..5], table[15..20]);
        assert_eq!(null[5..], table[15..20]);
    }
}
