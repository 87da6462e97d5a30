//! pytorch-fid's Inception blocks A to E (`FIDInceptionA/C/E_1/E_2`, torchvision's B and D),
//! field names as in its state dict (`branch3x3dbl_2` is `Mixed_5b.branch3x3dbl_2.*`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, max_pool2d};

use super::conv::{BasicConv2d, Builder, ConvSpec};
use crate::EvalError;

/// `max_pool2d(3, stride 2)`, between the stem's convolutions and in blocks B and D.
pub(crate) fn max_pool_3x3_stride_2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], false)
}

/// pytorch-fid's patch of blocks A, C and E_1: TensorFlow's average pool leaves the padded
/// zeros out of the mean (`count_include_pad=False`).
fn avg_pool_3x3_same<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, [3, 3], [1, 1], [1, 1], false, false)
}

/// `FIDInceptionA` (`Mixed_5b`, `5c`, `5d`).
#[derive(Module, Debug)]
pub struct InceptionA<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch5x5_1: BasicConv2d<B>,
    branch5x5_2: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
}

impl<B: Backend> InceptionA<B> {
    pub(crate) fn build(
        b: &mut Builder<B>,
        prefix: &str,
        c_in: usize,
        pool_features: usize,
    ) -> Result<Self, EvalError> {
        let mut conv = |name: &str, spec| b.conv(&format!("{prefix}.{name}"), spec);
        Ok(Self {
            branch1x1: conv("branch1x1", ConvSpec::new(c_in, 64, [1, 1]))?,
            branch5x5_1: conv("branch5x5_1", ConvSpec::new(c_in, 48, [1, 1]))?,
            branch5x5_2: conv("branch5x5_2", ConvSpec::new(48, 64, [5, 5]).padding([2, 2]))?,
            branch3x3dbl_1: conv("branch3x3dbl_1", ConvSpec::new(c_in, 64, [1, 1]))?,
            branch3x3dbl_2: conv(
                "branch3x3dbl_2",
                ConvSpec::new(64, 96, [3, 3]).padding([1, 1]),
            )?,
            branch3x3dbl_3: conv(
                "branch3x3dbl_3",
                ConvSpec::new(96, 96, [3, 3]).padding([1, 1]),
            )?,
            branch_pool: conv("branch_pool", ConvSpec::new(c_in, pool_features, [1, 1]))?,
        })
    }

    /// # Shapes
    /// `[n, c_in, 35, 35]` to `[n, 224 + pool_features, 35, 35]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch1x1 = self.branch1x1.forward(x.clone());
        let branch5x5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let branch3x3dbl = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let branch_pool = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)
    }
}

/// torchvision's `InceptionB` (`Mixed_6a`, unpatched): the 35 to 17 reduction.
#[derive(Module, Debug)]
pub struct InceptionB<B: Backend> {
    branch3x3: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3: BasicConv2d<B>,
}

impl<B: Backend> InceptionB<B> {
    pub(crate) fn build(b: &mut Builder<B>, prefix: &str, c_in: usize) -> Result<Self, EvalError> {
        let mut conv = |name: &str, spec| b.conv(&format!("{prefix}.{name}"), spec);
        Ok(Self {
            branch3x3: conv("branch3x3", ConvSpec::new(c_in, 384, [3, 3]).stride(2))?,
            branch3x3dbl_1: conv("branch3x3dbl_1", ConvSpec::new(c_in, 64, [1, 1]))?,
            branch3x3dbl_2: conv(
                "branch3x3dbl_2",
                ConvSpec::new(64, 96, [3, 3]).padding([1, 1]),
            )?,
            branch3x3dbl_3: conv("branch3x3dbl_3", ConvSpec::new(96, 96, [3, 3]).stride(2))?,
        })
    }

    /// # Shapes
    /// `[n, 288, 35, 35]` to `[n, 768, 17, 17]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch3x3 = self.branch3x3.forward(x.clone());
        let branch3x3dbl = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let branch_pool = max_pool_3x3_stride_2(x);
        Tensor::cat(vec![branch3x3, branch3x3dbl, branch_pool], 1)
    }
}

/// `FIDInceptionC` (`Mixed_6b` to `6e`): factorized 7x7 convolutions.
#[derive(Module, Debug)]
pub struct InceptionC<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch7x7_1: BasicConv2d<B>,
    branch7x7_2: BasicConv2d<B>,
    branch7x7_3: BasicConv2d<B>,
    branch7x7dbl_1: BasicConv2d<B>,
    branch7x7dbl_2: BasicConv2d<B>,
    branch7x7dbl_3: BasicConv2d<B>,
    branch7x7dbl_4: BasicConv2d<B>,
    branch7x7dbl_5: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
}

impl<B: Backend> InceptionC<B> {
    pub(crate) fn build(
        b: &mut Builder<B>,
        prefix: &str,
        c_in: usize,
        c7: usize,
    ) -> Result<Self, EvalError> {
        let row = |c_in, c_out| ConvSpec::new(c_in, c_out, [1, 7]).padding([0, 3]);
        let col = |c_in, c_out| ConvSpec::new(c_in, c_out, [7, 1]).padding([3, 0]);
        let mut conv = |name: &str, spec| b.conv(&format!("{prefix}.{name}"), spec);
        Ok(Self {
            branch1x1: conv("branch1x1", ConvSpec::new(c_in, 192, [1, 1]))?,
            branch7x7_1: conv("branch7x7_1", ConvSpec::new(c_in, c7, [1, 1]))?,
            branch7x7_2: conv("branch7x7_2", row(c7, c7))?,
            branch7x7_3: conv("branch7x7_3", col(c7, 192))?,
            branch7x7dbl_1: conv("branch7x7dbl_1", ConvSpec::new(c_in, c7, [1, 1]))?,
            branch7x7dbl_2: conv("branch7x7dbl_2", col(c7, c7))?,
            branch7x7dbl_3: conv("branch7x7dbl_3", row(c7, c7))?,
            branch7x7dbl_4: conv("branch7x7dbl_4", col(c7, c7))?,
            branch7x7dbl_5: conv("branch7x7dbl_5", row(c7, 192))?,
            branch_pool: conv("branch_pool", ConvSpec::new(c_in, 192, [1, 1]))?,
        })
    }

    /// # Shapes
    /// `[n, 768, 17, 17]` to `[n, 768, 17, 17]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch1x1 = self.branch1x1.forward(x.clone());
        let branch7x7 = self.branch7x7_3.forward(
            self.branch7x7_2
                .forward(self.branch7x7_1.forward(x.clone())),
        );
        let mut branch7x7dbl = self.branch7x7dbl_1.forward(x.clone());
        for conv in [
            &self.branch7x7dbl_2,
            &self.branch7x7dbl_3,
            &self.branch7x7dbl_4,
            &self.branch7x7dbl_5,
        ] {
            branch7x7dbl = conv.forward(branch7x7dbl);
        }
        let branch_pool = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)
    }
}

/// torchvision's `InceptionD` (`Mixed_7a`, unpatched): the 17 to 8 reduction.
#[derive(Module, Debug)]
pub struct InceptionD<B: Backend> {
    branch3x3_1: BasicConv2d<B>,
    branch3x3_2: BasicConv2d<B>,
    branch7x7x3_1: BasicConv2d<B>,
    branch7x7x3_2: BasicConv2d<B>,
    branch7x7x3_3: BasicConv2d<B>,
    branch7x7x3_4: BasicConv2d<B>,
}

impl<B: Backend> InceptionD<B> {
    pub(crate) fn build(b: &mut Builder<B>, prefix: &str, c_in: usize) -> Result<Self, EvalError> {
        let mut conv = |name: &str, spec| b.conv(&format!("{prefix}.{name}"), spec);
        Ok(Self {
            branch3x3_1: conv("branch3x3_1", ConvSpec::new(c_in, 192, [1, 1]))?,
            branch3x3_2: conv("branch3x3_2", ConvSpec::new(192, 320, [3, 3]).stride(2))?,
            branch7x7x3_1: conv("branch7x7x3_1", ConvSpec::new(c_in, 192, [1, 1]))?,
            branch7x7x3_2: conv(
                "branch7x7x3_2",
                ConvSpec::new(192, 192, [1, 7]).padding([0, 3]),
            )?,
            branch7x7x3_3: conv(
                "branch7x7x3_3",
                ConvSpec::new(192, 192, [7, 1]).padding([3, 0]),
            )?,
            branch7x7x3_4: conv("branch7x7x3_4", ConvSpec::new(192, 192, [3, 3]).stride(2))?,
        })
    }

    /// # Shapes
    /// `[n, 768, 17, 17]` to `[n, 1280, 8, 8]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch3x3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let mut branch7x7x3 = self.branch7x7x3_1.forward(x.clone());
        for conv in [
            &self.branch7x7x3_2,
            &self.branch7x7x3_3,
            &self.branch7x7x3_4,
        ] {
            branch7x7x3 = conv.forward(branch7x7x3);
        }
        let branch_pool = max_pool_3x3_stride_2(x);
        Tensor::cat(vec![branch3x3, branch7x7x3, branch_pool], 1)
    }
}

/// The pooling of block E's pool branch, where pytorch-fid's two E blocks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolBranch {
    /// `FIDInceptionE_1` (`Mixed_7b`): average pool without the padded zeros.
    Average,
    /// `FIDInceptionE_2` (`Mixed_7c`): max pool, as in the TensorFlow graph (where it is likely
    /// a bug, pytorch-fid notes; FID numbers depend on it).
    Max,
}

/// `FIDInceptionE_1` / `FIDInceptionE_2` (`Mixed_7b`, `7c`): expanded 3x3 branches.
#[derive(Module, Debug)]
pub struct InceptionE<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch3x3_1: BasicConv2d<B>,
    branch3x3_2a: BasicConv2d<B>,
    branch3x3_2b: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3a: BasicConv2d<B>,
    branch3x3dbl_3b: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
    pool: PoolBranch,
}

impl<B: Backend> InceptionE<B> {
    pub(crate) fn build(
        b: &mut Builder<B>,
        prefix: &str,
        c_in: usize,
        pool: PoolBranch,
    ) -> Result<Self, EvalError> {
        let row = ConvSpec::new(384, 384, [1, 3]).padding([0, 1]);
        let col = ConvSpec::new(384, 384, [3, 1]).padding([1, 0]);
        let mut conv = |name: &str, spec| b.conv(&format!("{prefix}.{name}"), spec);
        Ok(Self {
            branch1x1: conv("branch1x1", ConvSpec::new(c_in, 320, [1, 1]))?,
            branch3x3_1: conv("branch3x3_1", ConvSpec::new(c_in, 384, [1, 1]))?,
            branch3x3_2a: conv("branch3x3_2a", row)?,
            branch3x3_2b: conv("branch3x3_2b", col)?,
            branch3x3dbl_1: conv("branch3x3dbl_1", ConvSpec::new(c_in, 448, [1, 1]))?,
            branch3x3dbl_2: conv(
                "branch3x3dbl_2",
                ConvSpec::new(448, 384, [3, 3]).padding([1, 1]),
            )?,
            branch3x3dbl_3a: conv("branch3x3dbl_3a", row)?,
            branch3x3dbl_3b: conv("branch3x3dbl_3b", col)?,
            branch_pool: conv("branch_pool", ConvSpec::new(c_in, 192, [1, 1]))?,
            pool,
        })
    }

    /// # Shapes
    /// `[n, c_in, 8, 8]` to `[n, 2048, 8, 8]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch1x1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let branch3x3a = self.branch3x3_2a.forward(b3.clone());
        let branch3x3b = self.branch3x3_2b.forward(b3);
        let d = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let branch3x3dbl_a = self.branch3x3dbl_3a.forward(d.clone());
        let branch3x3dbl_b = self.branch3x3dbl_3b.forward(d);
        let pooled = match self.pool {
            PoolBranch::Average => avg_pool_3x3_same(x),
            PoolBranch::Max => max_pool2d(x, [3, 3], [1, 1], [1, 1], [1, 1], false),
        };
        let branch_pool = self.branch_pool.forward(pooled);
        // torch.cat([branch1x1, cat([3x3_2a, 3x3_2b]), cat([dbl_3a, dbl_3b]), pool]) flattened.
        Tensor::cat(
            vec![
                branch1x1,
                branch3x3a,
                branch3x3b,
                branch3x3dbl_a,
                branch3x3dbl_b,
                branch_pool,
            ],
            1,
        )
    }
}
