//! trace(sqrtm(S1 S2)) at d = 2048 with faer and with nalgebra, timed and checked against
//! scipy's value (and the exact one where the case has it). Inputs come from `make_inputs.py`.
//!
//! Two formulations per library:
//! - `sym`: S1 = V diag(l) V^T, W = V diag(sqrt(max(l, 0))), M = W^T S2 W (symmetric, with the
//!   eigenvalues of S1 S2), trace = sum sqrt(max(eig(M), 0)). Two symmetric eigensolves and two
//!   products.
//! - `eig`: the eigenvalues of the non-symmetric product S1 S2, trace = sum Re sqrt(lambda)
//!   (principal branch): the trace of scipy's Schur-based sqrtm, term by term.
//!
//! Usage: `cargo run --release [-- [--skip-nalgebra-eig] [CASE...]]` (default: every case of
//! `data/reference.json`, every method).

use std::path::Path;
use std::time::Instant;

use faer::{Accum, Mat, Par, Side};
use nalgebra::DMatrix;
use serde_json::Value;

fn read_matrix(path: &Path, d: usize) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (run make_inputs.py)", path.display()));
    assert_eq!(bytes.len(), d * d * 8, "{}: wrong size", path.display());
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn faer_sym(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    let a = Mat::from_fn(d, d, |i, j| s1[i * d + j]);
    let b = Mat::from_fn(d, d, |i, j| s2[i * d + j]);
    let evd = a.self_adjoint_eigen(Side::Lower).expect("eigh(S1)");
    let (u, s) = (evd.U(), evd.S().column_vector());
    let w = Mat::from_fn(d, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    let mut bw = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(&mut bw, Accum::Replace, &b, &w, 1.0, Par::rayon(0));
    let mut m = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(&mut m, Accum::Replace, w.transpose(), &bw, 1.0, Par::rayon(0));
    let mu = m.self_adjoint_eigenvalues(Side::Lower).expect("eigvalsh(M)");
    mu.iter().map(|x| x.max(0.0).sqrt()).sum()
}

fn faer_eig(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    let a = Mat::from_fn(d, d, |i, j| s1[i * d + j]);
    let b = Mat::from_fn(d, d, |i, j| s2[i * d + j]);
    let mut p = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(&mut p, Accum::Replace, &a, &b, 1.0, Par::rayon(0));
    let lambda = p.eigenvalues().expect("eig(S1 S2)");
    lambda.iter().map(|z| z.sqrt().re).sum()
}

fn nalgebra_sym(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    // Symmetric, so row-major and column-major read the same.
    let a = DMatrix::from_column_slice(d, d, s1);
    let b = DMatrix::from_column_slice(d, d, s2);
    let evd = a.symmetric_eigen();
    let mut w = evd.eigenvectors;
    for (j, l) in evd.eigenvalues.iter().enumerate() {
        w.column_mut(j).scale_mut(l.max(0.0).sqrt());
    }
    let m = w.transpose() * (b * &w);
    let mu = m.symmetric_eigenvalues();
    mu.iter().map(|x| x.max(0.0).sqrt()).sum()
}

fn nalgebra_eig(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    let a = DMatrix::from_column_slice(d, d, s1);
    let b = DMatrix::from_column_slice(d, d, s2);
    let p = a * b;
    let lambda = p.complex_eigenvalues();
    lambda.iter().map(|z| z.sqrt().re).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let skip_nalgebra_eig = args.iter().any(|a| a == "--skip-nalgebra-eig");
    let only: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("reference.json")).expect("data/reference.json (run make_inputs.py)"),
    )
    .expect("reference.json");
    println!("threads: rayon {}", rayon_threads());
    println!(
        "{:<15} {:<13} {:>9} {:>24} {:>12} {:>12} {:>12}",
        "case", "method", "seconds", "trace", "rel vs scipy", "FD rel", "rel vs exact"
    );
    let cases = reference["cases"].as_object().expect("cases");
    for (name, case) in cases {
        if !only.is_empty() && !only.iter().any(|o| *o == name) {
            continue;
        }
        let d = case["d"].as_u64().unwrap() as usize;
        let s1 = read_matrix(&data.join(format!("{name}.s1.f64")), d);
        let s2 = read_matrix(&data.join(format!("{name}.s2.f64")), d);
        let scipy = case["scipy_trace"].as_f64().unwrap();
        let scipy_fd = case["scipy_fd"].as_f64().unwrap();
        let exact = case["exact_trace"].as_f64();
        println!(
            "{:<15} {:<13} {:>9.2} {:>24.16e} {:>12} {:>12} {:>12}",
            name,
            "scipy sqrtm",
            case["scipy_seconds"].as_f64().unwrap(),
            scipy,
            "-",
            "-",
            exact.map_or("-".into(), |e| format!("{:.2e}", (scipy - e).abs() / e)),
        );
        let mut methods: Vec<(&str, fn(&[f64], &[f64], usize) -> f64)> = vec![
            ("faer sym", faer_sym),
            ("faer eig", faer_eig),
            ("nalgebra sym", nalgebra_sym),
        ];
        if !skip_nalgebra_eig {
            methods.push(("nalgebra eig", nalgebra_eig));
        }
        for (method, f) in methods {
            let start = Instant::now();
            let trace = f(&s1, &s2, d);
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "{:<15} {:<13} {:>9.2} {:>24.16e} {:>12.2e} {:>12.2e} {:>12}",
                name,
                method,
                seconds,
                trace,
                (trace - scipy).abs() / scipy,
                2.0 * (trace - scipy).abs() / scipy_fd.abs(),
                exact.map_or("-".into(), |e| format!("{:.2e}", (trace - e).abs() / e)),
            );
        }
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
