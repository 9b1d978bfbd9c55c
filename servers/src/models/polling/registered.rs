//! A socket registered with a `polling::Poller`, deleted from it when the guard drops.
//!
//! `Poller::add` is `unsafe` because the poller must forget a socket before the socket is
//! closed: on epoll a registration outlives its descriptor number while any duplicate keeps
//! the socket open, and keeps reporting events under the old key. Owning the socket inside
//! the guard makes "delete, then close" hold on every path out of the loop (`?`, an error
//! return, a panic's unwinding), not only on its normal end. This is the one place in the
//! `polling` model that needs `unsafe`; the guard does nothing else (no I/O of its own beyond
//! passing reads and writes through).
#![allow(unsafe_code)] // Poller::add: the one unsafe call of the polling model, with its SAFETY line

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Deref;

use polling::{AsRawSource, AsSource, Event, Poller};

use crate::conn::Socket;

/// `source`, registered with `poller` for as long as this guard lives.
pub(crate) struct Registered<'p, S>
where
    for<'a> &'a S: AsRawSource + AsSource,
{
    poller: &'p Poller,
    source: S,
}

impl<'p, S> Registered<'p, S>
where
    for<'a> &'a S: AsRawSource + AsSource,
{
    /// Adds `source` to `poller` with `interest` (oneshot); on failure the source is dropped.
    pub(crate) fn new(poller: &'p Poller, source: S, interest: Event) -> io::Result<Self> {
        // SAFETY: the source moves into the guard below and is dropped only with it; the
        // guard's Drop deletes it from the poller first (fields drop after `drop` returns), and
        // a guard that is leaked never closes the source either. On error nothing was added.
        unsafe { poller.add(&source, interest)? };
        Ok(Self { poller, source })
    }

    /// Re-arms the oneshot registration with `interest`.
    pub(crate) fn modify(&self, interest: Event) -> io::Result<()> {
        self.poller.modify(&self.source, interest)
    }
}

impl<S> Drop for Registered<'_, S>
where
    for<'a> &'a S: AsRawSource + AsSource,
{
    fn drop(&mut self) {
        let _ = self.poller.delete(&self.source);
    }
}

impl<S> Deref for Registered<'_, S>
where
    for<'a> &'a S: AsRawSource + AsSource,
{
    type Target = S;

    fn deref(&self) -> &S {
        &self.source
    }
}

impl Read for Registered<'_, TcpStream> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.source.read(buf)
    }
}

impl Write for Registered<'_, TcpStream> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.source.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.source.flush()
    }
}

impl Socket for Registered<'_, TcpStream> {
    fn shutdown_write(&self) -> io::Result<()> {
        self.source.shutdown(Shutdown::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polling::Events;
    use std::net::TcpListener;
    use std::time::Duration;

    /// Whether a wait of up to `timeout` reports `key`.
    fn reports(poller: &Poller, key: usize, timeout: Duration) -> bool {
        let mut events = Events::new();
        poller.wait(&mut events, Some(timeout)).unwrap();
        events.iter().any(|ev| ev.key == key)
    }

    #[test]
    fn dropping_the_guard_deletes_the_registration() {
        let poller = Poller::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        // A duplicate keeps the socket open after the guard's copy is closed: an epoll
        // registration that was never deleted would go on reporting under key 7.
        let duplicate = listener.try_clone().unwrap();
        let _client = TcpStream::connect(duplicate.local_addr().unwrap()).unwrap();

        let guard = Registered::new(&poller, listener, Event::readable(7)).unwrap();
        assert!(
            reports(&poller, 7, Duration::from_secs(5)),
            "registered: a pending connection is reported"
        );
        guard.modify(Event::readable(7)).unwrap(); // armed again, connection still pending
        drop(guard);
        assert!(
            !reports(&poller, 7, Duration::from_millis(200)),
            "after the guard dropped, the poller no longer watches the socket"
        );
        // The socket itself is fine: the duplicate still accepts the pending connection.
        assert!(duplicate.accept().is_ok());
    }
}
