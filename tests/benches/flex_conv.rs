//! Time of each 3x3 convolution of a preset's U-Net (`mnist`, or `cifar10` when given as the
//! argument) on the CPU backend, forward and both gradients, batch 32: milliseconds (the best
//! of five runs of ten calls) and GFLOP/s. `scripts/bench/torch_conv.py` prints the same
//! table for PyTorch.
//!
//! `cargo bench -p diffusion-tests --bench flex_conv [-- cifar10]` (threads:
//! `RAYON_NUM_THREADS`).

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::{Distribution, Tensor};

const BATCH: usize = 32;

/// `(c_in, c_out, height = width, stride)` of the `mnist` net's 3x3 convolutions, padding 1.
const MNIST: [(usize, usize, usize, usize); 10] = [
    (1, 16, 28, 1),
    (16, 16, 28, 1),
    (16, 16, 28, 2),
    (16, 32, 14, 1),
    (32, 32, 14, 1),
    (32, 32, 7, 1),
    (64, 32, 7, 1),
    (64, 32, 14, 1),
    (48, 16, 28, 1),
    (32, 16, 28, 1),
];

/// The same for the `cifar10` net (base 64, mults [1, 2, 2, 2], two blocks per level).
const CIFAR10: [(usize, usize, usize, usize); 17] = [
    (3, 64, 32, 1),
    (64, 64, 32, 1),
    (64, 64, 32, 2),
    (64, 128, 16, 1),
    (128, 128, 16, 1),
    (128, 128, 16, 2),
    (128, 128, 8, 1),
    (128, 128, 8, 2),
    (128, 128, 4, 1),
    (256, 128, 4, 1),
    (256, 128, 8, 1),
    (256, 128, 16, 1),
    (192, 128, 16, 1),
    (128, 128, 32, 1),
    (192, 64, 32, 1),
    (128, 64, 32, 1),
    (64, 3, 32, 1),
];

/// Seconds per call: the best of five runs of ten calls, after one warm-up call.
fn seconds(f: &dyn Fn()) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..10 {
                f();
            }
            start.elapsed().as_secs_f64() / 10.0
        })
        .fold(f64::MAX, f64::min)
}

fn primitive(t: Tensor<Flex, 4>) -> FloatTensor<Flex> {
    t.into_primitive().tensor()
}

fn main() {
    let device = Default::default();
    let random =
        |shape: [usize; 4]| Tensor::<Flex, 4>::random(shape, Distribution::Default, &device);
    let preset = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "mnist".into());
    let shapes: &[(usize, usize, usize, usize)] = match preset.as_str() {
        "mnist" => &MNIST,
        "cifar10" => &CIFAR10,
        other => {
            eprintln!("error: unknown preset `{other}`: expected mnist or cifar10");
            std::process::exit(2);
        }
    };
    println!(
        "{preset}, threads: {}, batch {BATCH}",
        rayon::current_num_threads()
    );
    let mut totals = [0.0f64; 3];
    for &(c_in, c_out, size, stride) in shapes {
        let out = (size + 2 - 3) / stride + 1;
        let flops = 2.0 * (BATCH * c_out * out * out * c_in * 9) as f64;
        let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
        let (x, w) = (
            random([BATCH, c_in, size, size]),
            random([c_out, c_in, 3, 3]),
        );
        let bias = Tensor::<Flex, 1>::random([c_out], Distribution::Default, &device);
        let grad = primitive(random([BATCH, c_out, out, out]));
        let (xp, wp) = (primitive(x.clone()), primitive(w.clone()));
        let times = [
            seconds(&|| {
                let _ = conv2d(x.clone(), w.clone(), Some(bias.clone()), options.clone());
            }),
            seconds(&|| {
                let _ =
                    Flex::conv2d_x_backward(xp.clone(), wp.clone(), grad.clone(), options.clone());
            }),
            seconds(&|| {
                let _ = Flex::conv2d_weight_backward(
                    xp.clone(),
                    wp.clone(),
                    grad.clone(),
                    options.clone(),
                );
            }),
        ];
        let cells: Vec<String> = times
            .iter()
            .map(|t| format!("{:6.2} ms {:6.1} GF/s", t * 1e3, flops / t / 1e9))
            .collect();
        println!(
            "{c_in:3} -> {c_out:3}, {size:2}x{size:2}, stride {stride}: forward {} | input grad {} | weight grad {}",
            cells[0], cells[1], cells[2]
        );
        totals.iter_mut().zip(times).for_each(|(t, s)| *t += s);
    }
    println!(
        "total: forward {:.2} ms, input grad {:.2} ms, weight grad {:.2} ms",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3
    );
}
