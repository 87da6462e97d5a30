//! Stop requests from signals. SIGINT (Ctrl-C), SIGTERM (`docker stop`, systemd, Kubernetes,
//! SLURM preemption, `timeout`) and SIGHUP (a closed terminal) all ask the trainer to finish
//! its step, save a checkpoint and exit 0. Signals that arrive within [`GRACE`] of the first
//! are the same request: GNU `timeout` and a terminal's Ctrl-C deliver one to the process and
//! one to its process group, microseconds apart. A signal after that quits at once, without
//! saving, with the shell's status for it: 128 + its number (130 for SIGINT, 143 for SIGTERM,
//! 129 for SIGHUP).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::signal_name;

/// Signals closer than this to the first one are one request.
pub const GRACE: Duration = Duration::from_secs(1);

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The first request: finish the step, save, exit 0.
    Stop,
    /// Part of the first request (within [`GRACE`]).
    Same,
    /// A second request: exit at once with this status.
    QuitNow(i32),
}

/// The signals seen so far.
#[derive(Debug, Default)]
pub struct StopRequests {
    first: Option<Instant>,
}

impl StopRequests {
    /// What `signal`, arriving at `now`, asks for.
    pub fn on_signal(&mut self, signal: i32, now: Instant) -> Action {
        match self.first {
            None => {
                self.first = Some(now);
                Action::Stop
            }
            Some(first) if now.saturating_duration_since(first) < GRACE => Action::Same,
            Some(_) => Action::QuitNow(128 + signal),
        }
    }
}

/// Sets `stop` on the first SIGINT, SIGTERM or SIGHUP, and exits on a second request.
pub fn install(stop: Arc<AtomicBool>) -> Result<()> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut requests = StopRequests::default();
            for signal in signals.forever() {
                let name = signal_name(signal).unwrap_or("a signal");
                match requests.on_signal(signal, Instant::now()) {
                    Action::Stop => {
                        stop.store(true, Ordering::SeqCst);
                        note(&format!(
                            "\nstopping on {name}: finishing the step and saving a checkpoint \
                             (Ctrl-C again, a second or more later, quits at once without saving)"
                        ));
                    }
                    Action::Same => {}
                    Action::QuitNow(status) => {
                        note(&format!("\n{name} again: quitting without saving"));
                        std::process::exit(status);
                    }
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Writes a line to standard error, ignoring failures (after SIGHUP the terminal may be gone).
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_together_are_one_request_and_a_later_one_quits() {
        let start = Instant::now();
        let mut requests = StopRequests::default();
        assert_eq!(requests.on_signal(SIGINT, start), Action::Stop);
        assert_eq!(
            requests.on_signal(SIGINT, start + Duration::from_micros(5)),
            Action::Same
        );
        assert_eq!(
            requests.on_signal(SIGTERM, start + GRACE - Duration::from_millis(1)),
            Action::Same
        );
        assert_eq!(
            requests.on_signal(SIGINT, start + GRACE),
            Action::QuitNow(130)
        );
        assert_eq!(
            requests.on_signal(SIGTERM, start + 3 * GRACE),
            Action::QuitNow(143)
        );
    }

    #[test]
    fn any_of_the_three_signals_starts_a_request() {
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            let mut requests = StopRequests::default();
            assert_eq!(requests.on_signal(signal, Instant::now()), Action::Stop);
        }
    }
}
