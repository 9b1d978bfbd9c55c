//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the buffers multishot receives pick from.
//!
//! `uring-multishot`'s buffers: one ring of `count` buffers of `size` bytes shared by a loop's
//! connections. The kernel takes a
//! buffer for each receive it completes and names it in the completion (`cqueue::buffer_select`);
//! the loop reads the data there and hands the buffer back with [`BufRing::give_back`] only
//! once the send that echoed it completed. An empty ring makes a multishot receive end with
//! `ENOBUFS`; it must then be re-armed once buffers come back.
//!
//! Memory: the ring and the buffers belong to the kernel while registered. They are freed only
//! by [`BufRing::unregister`]; a ring dropped while registered is leaked (the kernel may still
//! write there), the rule `completion::Lent` follows for one buffer.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// A registered provided-buffer ring.
pub(crate) struct BufRing {
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    buffers: Box<[u8]>,
    size: usize,
    count: u16,
    /// Our copy of the tail: where the next returned buffer goes.
    tail: u16,
    bgid: u16,
    registered: bool,
}

impl BufRing {
    /// Allocates `count` (a power of two, at most 32768) buffers of `size` bytes, registers
    /// them as group `bgid` and provides every buffer.
    pub(crate) fn register(
        submitter: &Submitter<'_>,
        bgid: u16,
        count: u16,
        size: usize,
    ) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: count must be a power of two up to 32768, size 1..4 GiB",
            ));
        }
        // The kernel wants the ring page-aligned.
        let layout = Layout::from_size_align(count as usize * size_of::<BufRingEntry>(), 4096)
            .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size (count >= 1).
        let ptr = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        let entries =
            NonNull::new(ptr).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut ring = Self {
            entries,
            layout,
            buffers: vec![0; count as usize * size].into_boxed_slice(),
            size,
            count,
            tail: 0,
            bgid,
            registered: false,
        };
        // SAFETY: the ring memory (count entries, page-aligned) lives until `unregister`, or
        // forever if the ring is dropped while registered (see Drop).
        unsafe {
            submitter.register_buf_ring_with_flags(entries.as_ptr() as u64, count, bgid, 0)?;
        }
        ring.registered = true;
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// How many buffers the ring has.
    pub(crate) fn count(&self) -> usize {
        self.count as usize
    }

    /// The buffer group id receives name.
    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The `len` bytes a completion says the kernel received into buffer `bid`.
    pub(crate) fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.buffers[start..start + len.min(self.size)]
    }

    /// The address of buffer `bid`, for a send of its data (it stays out of the ring until
    /// [`give_back`](Self::give_back)).
    pub(crate) fn ptr(&self, bid: u16) -> *const u8 {
        self.data(bid, 0).as_ptr()
    }

    /// Returns buffer `bid` to the kernel: its data was sent (or dropped).
    pub(crate) fn give_back(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    fn push(&mut self, bid: u16) {
        let index = (self.tail & (self.count - 1)) as usize;
        let addr = self
            .buffers
            .as_mut_ptr()
            .wrapping_add(bid as usize * self.size);
        // SAFETY: `index < count`, inside the allocation; the kernel reads only entries between
        // its head and the published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed entries visible to the kernel (a release store of the tail).
    fn publish(&self) {
        // SAFETY: `entries` is the ring's first entry, initialised (zeroed); the tail field is a
        // u16 the kernel reads with acquire semantics, so an atomic store is the right access.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.as_ptr()).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the group; then the memory is ours again and is freed on drop. Call it only
    /// after every receive that could pick from this group has completed.
    pub(crate) fn unregister(mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        submitter.unregister_buf_ring(self.bgid)?;
        self.registered = false;
        Ok(())
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // The kernel may still write here: leak both allocations.
            std::mem::forget(std::mem::take(&mut self.buffers));
            return;
        }
        // SAFETY: allocated in `register` with this layout; the kernel no longer knows it.
        unsafe { dealloc(self.entries.as_ptr().cast(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{IoUring, cqueue, opcode, types};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// One completion: (result, more, buffer id).
    fn next(ring: &mut IoUring) -> (i32, bool, Option<u16>) {
        ring.submit_and_wait(1).unwrap();
        let c = ring.completion().next().expect("a completion");
        (
            c.result(),
            cqueue::more(c.flags()),
            cqueue::buffer_select(c.flags()),
        )
    }

    #[test]
    fn receives_pick_buffers_and_an_empty_ring_ends_the_multishot_until_one_comes_back() {
        let Ok(mut ring) = IoUring::new(8) else {
            eprintln!("skipped: no io_uring here");
            return;
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut bufs = BufRing::register(&ring.submitter(), 7, 2, 64).unwrap();
        let recv = opcode::RecvMulti::new(types::Fd(server.as_raw_fd()), bufs.bgid())
            .build()
            .user_data(1);
        // SAFETY: the receive uses only the registered buffer ring, which outlives it.
        unsafe { ring.submission().push(&recv).unwrap() };

        let mut held = Vec::new();
        for word in [&b"one"[..], b"two"] {
            client.write_all(word).unwrap();
            let (res, more, bid) = next(&mut ring);
            assert!(more, "the multishot goes on while buffers remain");
            let bid = bid.expect("a provided buffer");
            assert_eq!(bufs.data(bid, res as usize), word);
            held.push(bid);
        }
        // Both buffers held (their echoes unsent): the next arrival finds the ring empty.
        client.write_all(b"three").unwrap();
        let (res, more, _) = next(&mut ring);
        assert_eq!(
            (res, more),
            (-libc::ENOBUFS, false),
            "ENOBUFS ends the multishot"
        );
        // A buffer comes back; a re-armed receive gets the waiting bytes.
        bufs.give_back(held.pop().unwrap());
        // SAFETY: as above.
        unsafe { ring.submission().push(&recv).unwrap() };
        let (res, more, bid) = next(&mut ring);
        assert!(more);
        assert_eq!(bufs.data(bid.unwrap(), res as usize), b"three");
        // Even the end of file needs a buffer to be reported: give one back first.
        bufs.give_back(bid.unwrap());
        drop(client);
        let (res, more, _) = next(&mut ring);
        assert_eq!((res, more), (0, false), "EOF ends it");
        bufs.unregister(&ring.submitter()).unwrap();
    }

    #[test]
    fn a_count_that_is_not_a_power_of_two_is_refused() {
        let Ok(ring) = IoUring::new(8) else { return };
        assert!(BufRing::register(&ring.submitter(), 1, 3, 64).is_err());
    }
}
