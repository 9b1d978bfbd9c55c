//! `HOST:PORT` on the command line → every address it resolves to, tried in the resolver's
//! order: `load` connects to the first that accepts, `serve --listen` binds the first that can
//! be bound here. This is what `TcpStream::connect("localhost:7700")` and curl do, and why
//! `localhost` works on a machine whose hosts file lists `::1` before `127.0.0.1`.
//!
//! Deliberately not a resolver of its own (the OS's, through `ToSocketAddrs`) and not a
//! connection pool: `load` hands the one address it settled on to the generator.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::anyhow;

/// Every address `spec` resolves to, in the resolver's order; `flag` names where it came from.
pub fn resolve(flag: &str, spec: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| {
            anyhow!("{flag} {spec}: cannot resolve ({e}); give HOST:PORT, e.g. 127.0.0.1:7700")
        })?
        .collect();
    if addrs.is_empty() {
        return Err(anyhow!(
            "{flag} {spec}: resolves to no address; give HOST:PORT, e.g. 127.0.0.1:7700"
        ));
    }
    Ok(addrs)
}

/// The addresses tried, each with why it failed, in the order tried.
pub struct Tried<E>(pub Vec<(SocketAddr, E)>);

impl<E: fmt::Display> fmt::Display for Tried<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (addr, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{addr} ({e})")?;
        }
        Ok(())
    }
}

/// Calls `attempt` on each address in order and returns the first success. A failure for
/// which `go_on` says false ends the search at once (it would be the same, or wrong to step
/// past, at the next address); otherwise every address is tried and every failure returned.
pub fn first_ok<T, E>(
    addrs: &[SocketAddr],
    mut attempt: impl FnMut(SocketAddr) -> Result<T, E>,
    go_on: impl Fn(&E) -> bool,
) -> Result<T, Tried<E>> {
    let mut tried = Vec::new();
    for &addr in addrs {
        match attempt(addr) {
            Ok(t) => return Ok(t),
            Err(e) => {
                let stop = !go_on(&e);
                tried.push((addr, e));
                if stop {
                    break;
                }
            }
        }
    }
    Err(Tried(tried))
}

/// Why a connect failed, in a few words (the OS's text for anything unusual).
pub struct ConnectError(pub io::Error);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind() {
            io::ErrorKind::ConnectionRefused => f.write_str("refused"),
            io::ErrorKind::TimedOut => f.write_str("no answer within --timeout"),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// The first address that accepts a TCP connection within `timeout`, or every failure. The
/// probe is one real connection, closed at once: the server counts it as accepted.
pub fn first_accepting(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<SocketAddr, Tried<ConnectError>> {
    first_ok(
        addrs,
        |a| {
            TcpStream::connect_timeout(&a, timeout)
                .map(|_| a)
                .map_err(ConnectError)
        },
        |_| true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A loopback port nothing listens on (bound, then released).
    fn refusing() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn the_first_address_that_accepts_is_used_after_one_that_refuses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let addrs = [refusing(), open];
        let got = first_accepting(&addrs, Duration::from_secs(5));
        assert_eq!(got.ok(), Some(open));
    }

    #[test]
    fn when_every_address_fails_each_is_named_in_order() {
        let addrs = [refusing(), refusing()];
        let e = first_accepting(&addrs, Duration::from_secs(5))
            .expect_err("nothing listens")
            .to_string();
        assert_eq!(e, format!("{} (refused), {} (refused)", addrs[0], addrs[1]));
    }

    #[test]
    fn a_stub_sees_every_address_in_order_and_a_final_error_stops_the_search() {
        let addrs: Vec<SocketAddr> = ["[::1]:7", "127.0.0.1:7", "10.0.0.1:7"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let mut seen = Vec::new();
        let got = first_ok(
            &addrs,
            |a| {
                seen.push(a);
                if a.is_ipv6() { Err("refused") } else { Ok(a) }
            },
            |_| true,
        );
        assert_eq!(got.ok(), Some(addrs[1]));
        assert_eq!(seen, addrs[..2]);

        let e =
            first_ok(&addrs, |_| Err::<(), _>("in use"), |e| *e != "in use").expect_err("stops");
        assert_eq!(e.0.len(), 1, "the search ends at a final error");
    }

    #[test]
    fn unresolvable_names_the_flag_and_the_form() {
        let e = resolve("ADDR", "no-port").unwrap_err().to_string();
        assert!(e.starts_with("ADDR no-port: cannot resolve"), "{e}");
        assert!(e.ends_with("give HOST:PORT, e.g. 127.0.0.1:7700"), "{e}");
    }
}
