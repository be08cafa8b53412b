//! Progress of a sampling run.

use super::Unit;

/// Progress over samples: a bar with samples/s and ETA on a terminal, one log line per unit
/// otherwise (batch jobs, SLURM logs).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: std::time::Instant,
    total: u64,
    done: std::cell::Cell<u64>,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} samples  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            indicatif::ProgressBar::new(total).with_style(style)
        });
        Progress {
            bar,
            start: std::time::Instant::now(),
            total,
            done: std::cell::Cell::new(0),
        }
    }

    pub fn unit_done(&self, unit: &Unit) {
        self.done.set(self.done.get() + unit.len() as u64);
        match &self.bar {
            Some(b) => {
                b.set_message(format!("unit {}", unit.index));
                b.inc(unit.len() as u64);
            }
            None => {
                let secs = self.start.elapsed().as_secs_f64();
                let rate = self.done.get() as f64 / secs.max(1e-9);
                let eta = (self.total - self.done.get()) as f64 / rate.max(1e-9);
                log::info!(
                    "unit {} (samples {}..{}) done: {}/{} samples, {rate:.2} samples/s, ETA {eta:.0} s",
                    unit.index,
                    unit.start,
                    unit.end,
                    self.done.get(),
                    self.total
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
