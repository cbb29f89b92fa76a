//! A one-line progress bar on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The progress line.
pub(crate) struct Progress {
    enabled: bool,
    scenario: &'static str,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A progress line for `scenario`, silent when `quiet` or when stderr is not a terminal.
    pub(crate) fn new(scenario: &'static str, quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            scenario,
            last: None,
            drawn: false,
        }
    }

    /// Redraws (at most 10 times a second): `phase`, a bar when the fraction is known, `info`.
    pub(crate) fn draw(&mut self, phase: &str, frac: Option<f64>, info: &str) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now - l < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let bar = match frac {
            Some(f) => {
                let filled = (f.clamp(0.0, 1.0) * 30.0).round() as usize;
                format!("[{}{}] ", "#".repeat(filled), ".".repeat(30 - filled))
            }
            None => String::new(),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{} {phase:<10} {bar}{info}", self.scenario);
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
