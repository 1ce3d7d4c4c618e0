//! A cached thread pool: jobs run on an idle worker if there is one, else on a new thread.
//! Workers that stay idle for [`IDLE`] exit. The proxy runs every connection (and its reverse
//! direction) on it, so a short connection doesn't pay for two thread spawns.

use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle worker waits for a job before exiting.
const IDLE: Duration = Duration::from_secs(10);
/// Idle workers kept at most; others exit when done.
const MAX_IDLE: usize = 256;

struct Idle {
    next_id: u64,
    workers: Vec<(u64, Sender<Job>)>,
}

static IDLE_WORKERS: Mutex<Idle> = Mutex::new(Idle {
    next_id: 0,
    workers: Vec::new(),
});

fn idle() -> MutexGuard<'static, Idle> {
    kiln_oci::sync::lock(&IDLE_WORKERS)
}

/// Runs `job` on a pooled thread named `name` (the name of a new thread only).
pub(crate) fn spawn(name: &str, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let mut job: Job = Box::new(job);
    loop {
        let popped = idle().workers.pop();
        match popped {
            Some((_, tx)) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // The worker is gone (it only drops its receiver after leaving the idle list,
                // so this doesn't happen; handle it anyway).
                Err(mpsc::SendError(j)) => job = j,
            },
            None => {
                let (tx, rx) = mpsc::channel::<Job>();
                let id = {
                    let mut g = idle();
                    g.next_id += 1;
                    g.next_id
                };
                std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(move || worker(id, job, tx, rx))?;
                return Ok(());
            }
        }
    }
}

fn worker(id: u64, first: Job, tx: Sender<Job>, rx: Receiver<Job>) {
    first();
    loop {
        {
            let mut g = idle();
            if g.workers.len() >= MAX_IDLE {
                return;
            }
            g.workers.push((id, tx.clone()));
        }
        let job = match rx.recv_timeout(IDLE) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                let mut g = idle();
                if let Some(i) = g.workers.iter().position(|(w, _)| *w == id) {
                    g.workers.swap_remove(i);
                    return;
                }
                drop(g);
                // A dispatcher took us off the idle list: its job is on the way.
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_and_reuses_threads() {
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..200 {
            let d = Arc::clone(&done);
            spawn("pool-test", move || {
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) < 200 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(idle().workers.len() <= MAX_IDLE);
    }
}
