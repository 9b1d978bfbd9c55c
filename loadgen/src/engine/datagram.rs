//! UDP load, the sans-IO half: the request datagram's wire format ([`encode`], [`verify`]) and
//! one socket's [`Ledger`] of what it sent and what became of each datagram (answered, lost,
//! duplicated, reordered, late).
//!
//! Wire format (ARCHITECTURE.md, "UDP load"): bytes 0..4 the connection id (`u32`,
//! little-endian, unique over the run's sockets), 4..12 the sequence number (`u64`,
//! little-endian, from 0 per socket, +1 per datagram), then payload to the datagram's length.
//! The length and the payload bytes are a pure function of (seed, connection id, sequence), so
//! the generator stores neither: it regenerates them to check an echo. No send timestamp
//! travels: the ledger keeps each outstanding datagram's times, keyed by its sequence number.
//!
//! Deliberately no I/O and no clock: the UDP worker ([`super::udp`]) sends, receives, reads the
//! time and tells the ledger what happened when.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::workload::{SizeRange, UDP_HEADER};

/// The connection id of a start-up probe datagram: no load socket has it.
pub(super) const PROBE_ID: u32 = u32::MAX;

/// The generator of one datagram's length and payload bytes.
fn rng_of(seed: u64, conn: u32, seq: u64) -> Rng {
    let mix = (u64::from(conn) << 40) ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Rng::new(seed ^ mix ^ 0xDA7A_6EA4)
}

/// The length of datagram `seq` of connection `conn`: `size`, or drawn from `range`.
fn length(rng: &mut Rng, size: usize, range: Option<SizeRange>) -> usize {
    match range {
        Some(r) => rng.range(r.min, r.max),
        None => size,
    }
}

/// Write datagram `seq` of connection `conn` into `buf` (at least the largest size long) and
/// return its length: the header, then the payload that (`seed`, `conn`, `seq`) determine.
pub(super) fn encode(
    buf: &mut [u8],
    seed: u64,
    conn: u32,
    seq: u64,
    size: usize,
    range: Option<SizeRange>,
) -> usize {
    let mut rng = rng_of(seed, conn, seq);
    let len = length(&mut rng, size, range).max(UDP_HEADER);
    buf[..4].copy_from_slice(&conn.to_le_bytes());
    buf[4..UDP_HEADER].copy_from_slice(&seq.to_le_bytes());
    rng.fill(&mut buf[UDP_HEADER..len]);
    len
}

/// The connection id and sequence number a datagram carries, or `None` if it is shorter than
/// the header.
pub(super) fn header(d: &[u8]) -> Option<(u32, u64)> {
    let conn = u32::from_le_bytes(d.get(..4)?.try_into().ok()?);
    let seq = u64::from_le_bytes(d.get(4..UDP_HEADER)?.try_into().ok()?);
    Some((conn, seq))
}

/// Whether `echo` is exactly datagram `seq` of connection `conn` as [`encode`] made it: same
/// length, same bytes. Regenerates the payload 8 bytes at a time; allocates nothing.
pub(super) fn verify(
    echo: &[u8],
    seed: u64,
    conn: u32,
    seq: u64,
    size: usize,
    range: Option<SizeRange>,
) -> bool {
    let mut rng = rng_of(seed, conn, seq);
    let len = length(&mut rng, size, range).max(UDP_HEADER);
    if echo.len() != len || header(echo) != Some((conn, seq)) {
        return false;
    }
    // The same chunking as `Rng::fill`: whole 8-byte words, then a prefix of one more.
    let body = &echo[UDP_HEADER..];
    let mut chunks = body.chunks_exact(8);
    for c in &mut chunks {
        if c != rng.next_u64().to_le_bytes() {
            return false;
        }
    }
    let rest = chunks.remainder();
    rest == &rng.next_u64().to_le_bytes()[..rest.len()]
}

/// One datagram still in the ledger's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sent {
    /// Immediately before the `send` call (closed loop's latency start; the timeout's start).
    pub(super) sent: Instant,
    /// Open loop: its intended send time (the corrected latency's start).
    pub(super) intended: Option<Instant>,
    /// Sent in the measured window: its fate is counted.
    pub(super) measured: bool,
    /// Answered or counted lost: only waiting to leave the window's front.
    settled: bool,
}

/// What one arriving echo was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Echo {
    /// The first echo of an outstanding datagram, within its timeout. `reordered`: an echo of a
    /// higher sequence number arrived on this socket before it.
    Answered { sent: Sent, reordered: bool },
    /// Another echo of a datagram already answered; `measured`: that datagram was.
    Duplicate { measured: bool },
    /// The first echo of a datagram already counted lost (or found past its timeout now, when
    /// it is counted lost and late at once: `now_lost`).
    Late { measured: bool, now_lost: bool },
    /// A sequence number this socket never sent.
    Unknown,
}

// What the history remembers of each datagram ever sent, one byte each.
const OUTSTANDING: u8 = 0;
const ANSWERED: u8 = 1;
const LOST: u8 = 2;
/// OR-ed into the state: the datagram was sent in the measured window.
const MEASURED: u8 = 0x80;

/// One socket's datagrams: the window of those not yet settled (with their send times), and the
/// fate of every datagram it ever sent (one byte each), so any later echo, however late or
/// repeated, is classified exactly.
///
/// Memory: one byte per datagram sent (10 MB for 100,000 datagrams/s over 100 s), plus the
/// window (32 bytes per datagram sent within the last `timeout`, at most).
#[derive(Debug)]
pub(super) struct Ledger {
    /// Sequence number of `window[0]`.
    base: u64,
    window: VecDeque<Sent>,
    history: Vec<u8>,
    /// Outstanding (sent, neither answered nor lost).
    outstanding: usize,
    /// Highest sequence number whose first echo has arrived.
    highest: Option<u64>,
}

impl Ledger {
    /// An empty ledger with room for `window` outstanding datagrams and `history` sent ones
    /// before it allocates.
    pub(super) fn with_capacity(window: usize, history: usize) -> Self {
        Self {
            base: 0,
            window: VecDeque::with_capacity(window),
            history: Vec::with_capacity(history),
            outstanding: 0,
            highest: None,
        }
    }

    /// The sequence number the next datagram gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.history.len() as u64
    }

    /// Datagrams sent and neither answered nor lost.
    pub(super) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// When the newest datagram still in the window was sent (`None` when the window is empty).
    pub(super) fn last_sent(&self) -> Option<Instant> {
        self.window.back().map(|s| s.sent)
    }

    /// Measured datagrams outstanding (the run's `in_flight` when it ends).
    pub(super) fn outstanding_measured(&self) -> u64 {
        self.window
            .iter()
            .filter(|s| !s.settled && s.measured)
            .count() as u64
    }

    /// Datagram [`Ledger::next_seq`] went out at `sent`.
    pub(super) fn sent(&mut self, sent: Instant, intended: Option<Instant>, measured: bool) {
        self.history
            .push(OUTSTANDING | if measured { MEASURED } else { 0 });
        self.window.push_back(Sent {
            sent,
            intended,
            measured,
            settled: false,
        });
        self.outstanding += 1;
    }

    /// An echo of `seq` arrived at `now`; an outstanding datagram older than `timeout` is lost
    /// (and this echo late), whether or not [`Ledger::expire`] has seen it yet.
    pub(super) fn echo(&mut self, seq: u64, now: Instant, timeout: Duration) -> Echo {
        let Some(&state) = self.history.get(seq as usize) else {
            return Echo::Unknown;
        };
        let measured = state & MEASURED != 0;
        match state & !MEASURED {
            ANSWERED => return Echo::Duplicate { measured },
            LOST => {
                self.history[seq as usize] = ANSWERED | (state & MEASURED);
                self.first_echo(seq);
                return Echo::Late {
                    measured,
                    now_lost: false,
                };
            }
            _ => {}
        }
        // Outstanding: it is in the window (everything before `base` is settled).
        let i = (seq - self.base) as usize;
        let sent = self.window[i];
        self.window[i].settled = true;
        self.outstanding -= 1;
        self.history[seq as usize] = ANSWERED | (state & MEASURED);
        let reordered = self.first_echo(seq);
        self.trim();
        if now.saturating_duration_since(sent.sent) > timeout {
            return Echo::Late {
                measured,
                now_lost: true,
            };
        }
        Echo::Answered { sent, reordered }
    }

    /// Note the first echo of `seq`; whether a higher one came first.
    fn first_echo(&mut self, seq: u64) -> bool {
        let reordered = self.highest.is_some_and(|h| h > seq);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        reordered
    }

    /// Count as lost every outstanding datagram sent more than `timeout` before `now`; returns
    /// how many (all, and measured ones). The window is in send order, so this stops at the
    /// first one still within its timeout.
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) -> (usize, u64) {
        let (mut lost, mut measured) = (0, 0);
        for (i, s) in self.window.iter_mut().enumerate() {
            if now.saturating_duration_since(s.sent) <= timeout {
                break;
            }
            if !s.settled {
                s.settled = true;
                let seq = self.base as usize + i;
                self.history[seq] = LOST | (self.history[seq] & MEASURED);
                lost += 1;
                measured += u64::from(s.measured);
            }
        }
        self.outstanding -= lost;
        self.trim();
        (lost, measured)
    }

    /// Drop settled datagrams from the window's front.
    fn trim(&mut self) {
        while self.window.front().is_some_and(|s| s.settled) {
            self.window.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_verifies_and_any_change_is_caught() {
        let mut buf = vec![0u8; 2048];
        let range = Some(SizeRange { min: 12, max: 1500 });
        for seq in 0..200u64 {
            let len = encode(&mut buf, 7, 3, seq, 64, range);
            assert!((12..=1500).contains(&len));
            assert_eq!(header(&buf[..len]), Some((3, seq)));
            assert!(verify(&buf[..len], 7, 3, seq, 64, range));
            // Another seed, connection or sequence, a flipped byte, a cut: all caught.
            assert!(!verify(&buf[..len], 8, 3, seq, 64, range));
            assert!(!verify(&buf[..len], 7, 4, seq, 64, range));
            assert!(!verify(&buf[..len], 7, 3, seq + 1, 64, range));
            if len > 12 {
                buf[len - 1] ^= 1;
                assert!(!verify(&buf[..len], 7, 3, seq, 64, range));
                buf[len - 1] ^= 1;
                assert!(!verify(&buf[..len - 1], 7, 3, seq, 64, range));
            }
        }
        assert_eq!(encode(&mut buf, 1, 0, 0, 12, None), 12);
        assert!(verify(&buf[..12], 1, 0, 0, 12, None));
        assert_eq!(header(&buf[..11]), None);
    }

    fn ms(t: Instant, m: u64) -> Instant {
        t + Duration::from_millis(m)
    }

    #[test]
    fn every_fate_of_a_datagram_is_told_apart() {
        let t = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut l = Ledger::with_capacity(4, 4);
        for i in 0..5 {
            l.sent(ms(t, i), None, true);
        }
        assert_eq!((l.next_seq(), l.outstanding()), (5, 5));
        // 1 before 0: 0 is reordered.
        assert!(matches!(
            l.echo(1, ms(t, 10), timeout),
            Echo::Answered {
                reordered: false,
                ..
            }
        ));
        assert!(matches!(
            l.echo(0, ms(t, 11), timeout),
            Echo::Answered {
                reordered: true,
                ..
            }
        ));
        assert_eq!(
            l.echo(1, ms(t, 12), timeout),
            Echo::Duplicate { measured: true }
        );
        // 2 times out; its echo afterwards is late, a second one a duplicate.
        assert_eq!(l.expire(ms(t, 103), timeout), (1, 1));
        assert_eq!(
            l.echo(2, ms(t, 104), timeout),
            Echo::Late {
                measured: true,
                now_lost: false
            }
        );
        assert_eq!(
            l.echo(2, ms(t, 105), timeout),
            Echo::Duplicate { measured: true }
        );
        // 3 answered past its timeout before any expiry scan: lost and late at once.
        assert_eq!(
            l.echo(3, ms(t, 200), timeout),
            Echo::Late {
                measured: true,
                now_lost: true
            }
        );
        assert_eq!(l.echo(9, ms(t, 200), timeout), Echo::Unknown);
        assert_eq!(l.outstanding(), 1);
        assert_eq!(l.outstanding_measured(), 1);
        assert_eq!(l.expire(ms(t, 300), timeout), (1, 1));
        assert_eq!(l.outstanding(), 0);
        assert!(l.window.is_empty(), "settled datagrams leave the window");
    }

    #[test]
    fn warm_up_datagrams_are_tracked_but_not_measured() {
        let t = Instant::now();
        let timeout = Duration::from_millis(10);
        let mut l = Ledger::with_capacity(1, 1);
        l.sent(t, None, false);
        l.sent(t, None, false);
        assert_eq!(l.outstanding_measured(), 0);
        assert!(matches!(
            l.echo(0, t, timeout),
            Echo::Answered { sent, .. } if !sent.measured
        ));
        assert_eq!(l.echo(0, t, timeout), Echo::Duplicate { measured: false });
        assert_eq!(l.expire(ms(t, 20), timeout), (1, 0));
    }
}
