//! Write-behind plumbing shared by every store that keeps counts in memory
//! and puts them on disk on a timer (quota counters here; meters, queues):
//! the flusher thread. Locks are taken with `levee_common::sync`, whose
//! poisoning policy every crate shares.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A thread that calls `flush` every `interval`, and once more when dropped.
#[derive(Debug)]
pub struct Flusher {
    /// Dropping it wakes the thread for its last flush.
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread. `flush` counts and logs its own failures; its data
    /// stays in memory for the next tick.
    pub fn start(
        name: &str,
        interval: Duration,
        flush: impl Fn() + Send + 'static,
    ) -> std::io::Result<Flusher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => flush(),
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        flush();
                        return;
                    }
                }
            })?;
        Ok(Flusher {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            // A panicked flusher has nothing left to report at drop time.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn flushes_on_a_timer_and_once_more_on_drop() {
        let n = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&n);
        let f = Flusher::start("test-flush", Duration::from_millis(20), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while n.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(n.load(Ordering::SeqCst) >= 2, "ticks");
        let before = n.load(Ordering::SeqCst);
        drop(f);
        assert!(n.load(Ordering::SeqCst) > before, "a last flush on drop");
    }
}
