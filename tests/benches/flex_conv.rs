//! Time of each 3x3 convolution of a preset's U-Net (`mnist`, or `cifar10` when given as the
//! argument) on the CPU backend, forward and both gradients, batch 32: milliseconds (the best
//! of five runs of ten calls) and GFLOP/s, then the totals weighted by how often a training
//! step runs each shape. `scripts/bench/torch_conv.py` prints the same table for PyTorch.
//!
//! `cargo bench -p diffusion-tests --bench flex_conv [-- cifar10] [--cold]` (threads:
//! `RAYON_NUM_THREADS`; `--cold` evicts the caches before each call).

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::{Distribution, Tensor};

const BATCH: usize = 32;

/// `(c_in, c_out, height = width, stride, calls per training step)` of the `mnist` net's 3x3
/// convolutions, padding 1: every one a training step runs (counted by tracing one step; each
/// runs once forward and once per gradient), so that the weighted totals are what a step
/// spends in them.
const MNIST: [(usize, usize, usize, usize, usize); 14] = [
    (1, 16, 28, 1, 1),
    (16, 16, 28, 1, 4),
    (16, 16, 28, 2, 1),
    (16, 32, 14, 1, 1),
    (32, 32, 14, 1, 4),
    (32, 32, 14, 2, 1),
    (32, 32, 7, 1, 8),
    (64, 32, 7, 1, 2),
    (64, 32, 14, 1, 1),
    (48, 32, 14, 1, 1),
    (32, 32, 28, 1, 1),
    (48, 16, 28, 1, 1),
    (32, 16, 28, 1, 1),
    (16, 1, 28, 1, 1),
];

/// The same for the `cifar10` net (base 64, mults [1, 2, 2, 2], two blocks per level).
const CIFAR10: [(usize, usize, usize, usize, usize); 17] = [
    (3, 64, 32, 1, 1),
    (64, 64, 32, 1, 7),
    (64, 64, 32, 2, 1),
    (64, 128, 16, 1, 1),
    (128, 128, 16, 1, 7),
    (128, 128, 16, 2, 1),
    (128, 128, 8, 1, 8),
    (128, 128, 8, 2, 1),
    (128, 128, 4, 1, 11),
    (256, 128, 4, 1, 3),
    (256, 128, 8, 1, 3),
    (256, 128, 16, 1, 2),
    (192, 128, 16, 1, 1),
    (128, 128, 32, 1, 1),
    (192, 64, 32, 1, 1),
    (128, 64, 32, 1, 2),
    (64, 3, 32, 1, 1),
];

/// Seconds per call: the best of five runs of ten calls, after one warm-up call. With `cold`,
/// each call is timed alone after [`evict_caches`], as in a training step, where a layer's
/// input and weights were last touched several layers ago.
fn seconds(f: &dyn Fn(), cold: bool) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let mut total = 0.0;
            for _ in 0..10 {
                if cold {
                    evict_caches();
                }
                let call = Instant::now();
                f();
                total += call.elapsed().as_secs_f64();
            }
            total / 10.0
        })
        .fold(f64::MAX, f64::min)
}

/// Writes and reads 64 MiB on every thread of rayon's pool, more than the L2 and L3 caches
/// of the machines we measure on, so that the next call finds its operands in memory.
fn evict_caches() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SINK: AtomicU64 = AtomicU64::new(0);
    const BYTES: usize = 64 << 20;
    rayon::broadcast(|ctx| {
        let mut buf = vec![ctx.index() as u8; BYTES / ctx.num_threads()];
        for (i, b) in buf.iter_mut().enumerate().step_by(64) {
            *b = b.wrapping_add(i as u8);
        }
        let sum = buf.iter().step_by(64).map(|&b| b as u64).sum::<u64>();
        SINK.fetch_add(sum, Ordering::Relaxed);
    });
}

fn primitive(t: Tensor<Flex, 4>) -> FloatTensor<Flex> {
    t.into_primitive().tensor()
}

fn main() {
    let device = Default::default();
    let random =
        |shape: [usize; 4]| Tensor::<Flex, 4>::random(shape, Distribution::Default, &device);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cold = args.iter().any(|a| a == "--cold");
    let preset = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_else(|| "mnist".into());
    let shapes: &[(usize, usize, usize, usize, usize)] = match preset.as_str() {
        "mnist" => &MNIST,
        "cifar10" => &CIFAR10,
        other => {
            eprintln!("error: unknown preset `{other}`: expected mnist or cifar10");
            std::process::exit(2);
        }
    };
    println!(
        "{preset}, threads: {}, batch {BATCH}{}",
        rayon::current_num_threads(),
        if cold {
            ", caches evicted before each call"
        } else {
            ""
        }
    );
    let (mut totals, mut per_step) = ([0.0f64; 3], [0.0f64; 3]);
    for &(c_in, c_out, size, stride, calls) in shapes {
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
            seconds(
                &|| {
                    let _ = conv2d(x.clone(), w.clone(), Some(bias.clone()), options.clone());
                },
                cold,
            ),
            seconds(
                &|| {
                    let _ = Flex::conv2d_x_backward(
                        xp.clone(),
                        wp.clone(),
                        grad.clone(),
                        options.clone(),
                    );
                },
                cold,
            ),
            seconds(
                &|| {
                    let _ = Flex::conv2d_weight_backward(
                        xp.clone(),
                        wp.clone(),
                        grad.clone(),
                        options.clone(),
                    );
                },
                cold,
            ),
        ];
        let cells: Vec<String> = times
            .iter()
            .map(|t| format!("{:6.2} ms {:6.1} GF/s", t * 1e3, flops / t / 1e9))
            .collect();
        println!(
            "{c_in:3} -> {c_out:3}, {size:2}x{size:2}, stride {stride}, x{calls:2}: forward {} | input grad {} | weight grad {}",
            cells[0], cells[1], cells[2]
        );
        totals.iter_mut().zip(times).for_each(|(t, s)| *t += s);
        per_step
            .iter_mut()
            .zip(times)
            .for_each(|(t, s)| *t += calls as f64 * s);
    }
    println!(
        "total: forward {:.2} ms, input grad {:.2} ms, weight grad {:.2} ms",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3
    );
    println!(
        "per training step (each shape times its calls): forward {:.2} ms, input grad {:.2} ms, weight grad {:.2} ms, all {:.2} ms",
        per_step[0] * 1e3,
        per_step[1] * 1e3,
        per_step[2] * 1e3,
        per_step.iter().sum::<f64>() * 1e3
    );
}
