//! The fan-out message: a 24-byte header, then filler up to the message size.
//!
//! Header (little-endian): run id (u64, so a receiver ignores another run's datagrams on a
//! shared port or group), sequence number (u64, from 0: loss and membership spans are computed
//! from it), the sender's clock (u64 ns, [`super::sys::clock_ns`], read just before the send
//! call). Not a framing protocol: TCP receivers read exactly `size` bytes per message.

/// Bytes of header every message starts with; the smallest message size.
pub const HEADER: usize = 24;

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub run_id: u64,
    pub seq: u64,
    pub stamp_ns: u64,
}

/// Write `h` into the first [`HEADER`] bytes of `buf` (which must be at least that long).
pub fn encode(buf: &mut [u8], h: Header) {
    buf[0..8].copy_from_slice(&h.run_id.to_le_bytes());
    buf[8..16].copy_from_slice(&h.seq.to_le_bytes());
    buf[16..24].copy_from_slice(&h.stamp_ns.to_le_bytes());
}

/// The header of `buf`, or `None` if it is shorter than [`HEADER`].
pub fn decode(buf: &[u8]) -> Option<Header> {
    let word = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or([0; 8]));
    (buf.len() >= HEADER).then(|| Header {
        run_id: word(0),
        seq: word(8),
        stamp_ns: word(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_a_short_datagram_has_none() {
        let h = Header {
            run_id: 0xfeed,
            seq: 7,
            stamp_ns: u64::MAX - 1,
        };
        let mut buf = [0u8; 64];
        encode(&mut buf, h);
        assert_eq!(decode(&buf), Some(h));
        assert_eq!(decode(&buf[..HEADER - 1]), None);
    }
}
