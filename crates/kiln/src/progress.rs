//! Progress bars on a terminal; nothing when stderr is piped or with --json.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use kiln_image::Progress;

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

/// A progress sink suited to where stderr goes.
pub fn for_terminal(json: bool) -> Arc<dyn Progress> {
    if json || !std::io::stderr().is_terminal() {
        Arc::new(kiln_image::build::Quiet)
    } else {
        Arc::new(Bars {
            bar: Mutex::new(None),
        })
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => {
                let b = ProgressBar::new(t);
                if let Ok(s) = ProgressStyle::with_template(
                    "{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
                ) {
                    b.set_style(s.progress_chars("=> "));
                }
                b
            }
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(name.to_string());
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(bar);
        }
    }
    fn advance(&self, bytes: u64) {
        if let Ok(g) = self.bar.lock()
            && let Some(b) = g.as_ref()
        {
            b.inc(bytes);
        }
    }
    fn finish_phase(&self) {
        if let Ok(mut g) = self.bar.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
    }
}
