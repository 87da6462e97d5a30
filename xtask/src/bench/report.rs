//! The comparison table `cargo xtask bench` prints, and its Markdown row.

use super::results::Figures;

/// What the table's heading says about the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// Threads both implementations were given.
    pub threads: usize,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Training preset.
    pub preset: String,
    /// Images per step and per batch.
    pub batch_size: usize,
    /// Parameter count (the same for both).
    pub params: u64,
    /// DDIM steps per sampling batch.
    pub ddim_steps: usize,
    /// Rounds each implementation ran.
    pub rounds: usize,
}

/// The comparison table. `twin` is `Err(reason)` when the PyTorch column was skipped.
pub fn table(setting: &Setting, ours: &Figures, twin: Result<&Figures, &str>) -> String {
    let s = setting;
    let mut out = format!(
        "machine: {} ({} cores), {} threads, {}\n\
         preset {}, batch {}, {} parameters\n\
         ours: {}; PyTorch: {}\n\n",
        s.cpu,
        s.cores,
        s.threads,
        s.date,
        s.preset,
        s.batch_size,
        thousands(s.params),
        ours.implementation,
        twin.map_or_else(
            |why| format!("skipped ({why})"),
            |t| t.implementation.clone()
        ),
    );
    out.push_str(&format!(
        "{:<28}{:>10}{:>10}{:>14}\n",
        "", "ours", "PyTorch", "ours/PyTorch"
    ));
    let twin = twin.ok();
    let rows = [
        (
            "training images/s".to_string(),
            Some(ours.train),
            twin.map(|t| t.train),
            "higher is better",
        ),
        (
            format!("DDIM-{} sampling images/s", s.ddim_steps),
            Some(ours.sample),
            twin.map(|t| t.sample),
            "higher is better",
        ),
        (
            "peak RSS MiB".to_string(),
            ours.peak_rss_mib,
            twin.and_then(|t| t.peak_rss_mib),
            "lower is better",
        ),
    ];
    for (label, ours, theirs, better) in rows {
        out.push_str(&format!(
            "{label:<28}{:>10}{:>10}{:>14}  {better}\n",
            figure(ours),
            figure(theirs),
            ratio(ours, theirs)
        ));
    }
    out.push_str(&format!(
        "\nImages/s are medians over all measured steps pooled across rounds ({}: {} and {} \
         per implementation); peak RSS is the largest of the rounds.\n",
        count(s.rounds, "round"),
        count(ours.train_samples, "training step"),
        count(ours.sample_samples, "sampling batch"),
    ));
    out
}

/// A Markdown table header and one row, ready to paste into a results table.
pub fn markdown(setting: &Setting, ours: &Figures, twin: Option<&Figures>) -> String {
    let s = setting;
    let cell = |ours: Option<f64>, theirs: Option<f64>| match theirs {
        Some(_) => format!(
            "{} / {} ({})",
            figure(ours),
            figure(theirs),
            ratio(ours, theirs)
        ),
        None => figure(ours),
    };
    format!(
        "| date | machine | threads | preset | batch | params | train img/s ours / PyTorch (ratio) \
         | DDIM-{steps} img/s ours / PyTorch (ratio) | peak RSS MiB ours / PyTorch (ratio) |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {} | {} ({} cores) | {} | {} | {} | {} | {} | {} | {} |\n",
        s.date,
        s.cpu,
        s.cores,
        s.threads,
        s.preset,
        s.batch_size,
        thousands(s.params),
        cell(Some(ours.train), twin.map(|t| t.train)),
        cell(Some(ours.sample), twin.map(|t| t.sample)),
        cell(ours.peak_rss_mib, twin.and_then(|t| t.peak_rss_mib)),
        steps = s.ddim_steps,
    )
}

fn figure(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// `1 round`, `3 rounds`, `2 sampling batches`.
fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with("ch")) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(implementation: &str, train: f64, sample: f64, rss: Option<f64>) -> Figures {
        Figures {
            implementation: implementation.into(),
            train,
            sample,
            peak_rss_mib: rss,
            train_samples: 30,
            sample_samples: 6,
        }
    }

    fn setting() -> Setting {
        Setting {
            cpu: "AMD EPYC".into(),
            cores: 2,
            threads: 2,
            date: "2025-11-23".into(),
            preset: "mnist".into(),
            batch_size: 32,
            params: 268_017,
            ddim_steps: 50,
            rounds: 3,
        }
    }

    #[test]
    fn table_shows_figures_and_ratios() {
        let ours = figures("burn-diffusion (cpu)", 100.0, 10.0, Some(200.0));
        let torch = figures("pytorch 2.15.0", 200.0, 8.0, Some(800.0));
        let text = table(&setting(), &ours, Ok(&torch));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "machine: AMD EPYC (2 cores), 2 threads, 2025-11-23",
                "preset mnist, batch 32, 268,017 parameters",
                "ours: burn-diffusion (cpu); PyTorch: pytorch 2.15.0",
            ]
        );
        assert_eq!(
            lines[4..8],
            [
                "                                  ours   PyTorch  ours/PyTorch",
                "training images/s                100.0     200.0          0.50  higher is better",
                "DDIM-50 sampling images/s         10.0       8.0          1.25  higher is better",
                "peak RSS MiB                     200.0     800.0          0.25  lower is better",
            ]
        );
        assert!(
            text.contains(
                "medians over all measured steps pooled across rounds (3 rounds: 30 training steps \
                 and 6 sampling batches per implementation)"
            ),
            "{text}"
        );
    }

    #[test]
    fn table_without_pytorch_says_why() {
        let ours = figures("burn-diffusion (cpu)", 100.0, 10.0, None);
        let text = table(&setting(), &ours, Err("no module named torch"));
        assert!(
            text.contains("PyTorch: skipped (no module named torch)"),
            "{text}"
        );
        assert!(text.contains(
            "training images/s                100.0         -             -  higher is better"
        ));
        assert!(text.contains(
            "peak RSS MiB                         -         -             -  lower is better"
        ));
    }

    #[test]
    fn markdown_row_has_one_cell_per_header_cell() {
        let ours = figures("burn-diffusion (cpu)", 100.0, 10.0, Some(200.0));
        let torch = figures("pytorch 2.15.0", 200.0, 8.0, Some(800.0));
        let md = markdown(&setting(), &ours, Some(&torch));
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 3);
        let cells = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{md}");
        assert_eq!(
            lines[2],
            "| 2025-11-23 | AMD EPYC (2 cores) | 2 | mnist | 32 | 268,017 | 100.0 / 200.0 (0.50) \
             | 10.0 / 8.0 (1.25) | 200.0 / 800.0 (0.25) |"
        );
        let alone = markdown(&setting(), &ours, None);
        assert!(alone.ends_with("| 100.0 | 10.0 | 200.0 |\n"), "{alone}");
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1, "round"), "1 round");
        assert_eq!(count(3, "round"), "3 rounds");
        assert_eq!(count(1, "sampling batch"), "1 sampling batch");
        assert_eq!(count(2, "sampling batch"), "2 sampling batches");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(35_746_307), "35,746,307");
    }
}
