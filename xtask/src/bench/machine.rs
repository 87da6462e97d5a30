//! What the benchmark says about the machine: the CPU model, and whether something else is
//! keeping the CPUs busy (which makes every figure, and PyTorch's OpenMP threads above all,
//! slow and noisy).

use std::time::Duration;

/// The CPU model from `/proc/cpuinfo`, or `unknown CPU`.
pub fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into())
}

fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

/// Logical CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The fraction of CPU time, over all CPUs, that was not idle during `window`; `None` where
/// `/proc/stat` cannot be read.
pub fn busy_fraction(window: Duration) -> Option<f64> {
    let read = || parse_cpu_times(&std::fs::read_to_string("/proc/stat").ok()?);
    let (busy0, total0) = read()?;
    std::thread::sleep(window);
    let (busy1, total1) = read()?;
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    Some(busy1.saturating_sub(busy0) as f64 / total as f64)
}

/// `(busy, total)` jiffies from the aggregate `cpu` line of `/proc/stat` (idle and iowait
/// count as idle).
fn parse_cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
    let total: u64 = fields.iter().take(8).sum();
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn cpu_times_from_proc_stat() {
        let stat = "cpu  100 20 30 400 50 0 5 5 7 0\ncpu0 50 10 15 200 25 0 2 3 0 0\n";
        // busy: user + nice + system + irq + softirq + steal = 160; idle + iowait = 450.
        assert_eq!(parse_cpu_times(stat), Some((160, 610)));
        assert_eq!(parse_cpu_times("intr 1 2 3\n"), None);
    }
}
