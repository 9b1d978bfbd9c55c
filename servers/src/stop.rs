//! The stop handle: one flag plus the wake-ups that make every loop notice it promptly.
//!
//! Loops do not poll the flag on a timer; each registers a waker (an eventfd, a mio `Waker`, a
//! loopback datagram, a cancellation token) that [`Stop::stop`] calls once. It is not a signal
//! handler: the binary turns SIGINT/SIGTERM/Ctrl-C into a call to [`Stop::stop`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Waker = Box<dyn Fn() + Send + Sync>;

/// A cloneable stop request shared by a server's loops and whoever wants to end it.
#[derive(Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    stopped: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Stop {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every loop to stop and wakes them. Idempotent; safe from any thread.
    pub fn stop(&self) {
        let wakers = self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if !self.inner.stopped.swap(true, Ordering::SeqCst) {
            for wake in wakers.iter() {
                wake();
            }
        }
    }

    /// Whether [`stop`](Self::stop) has been called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Registers a wake-up; runs it at once if the stop already happened, so a loop that
    /// registers late still wakes.
    pub(crate) fn on_stop(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.stopped.load(Ordering::SeqCst) {
            wake();
        } else {
            wakers.push(Box::new(wake));
        }
    }
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn wakers_run_once_and_late_registrations_run_immediately() {
        let stop = Stop::new();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        stop.on_stop(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        stop.stop();
        stop.stop();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let c = count.clone();
        stop.on_stop(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(stop.is_stopped());
    }
}
