//! Linux: `recvmsg` with the `SO_RXQ_OVFL` control message, the socket's exact count of the
//! datagrams the kernel dropped because its receive buffer was full.
#![allow(unsafe_code)] // recvmsg(2) and its control buffer: the FFI edge, each with its SAFETY line

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;

use std::net::UdpSocket;

use socket2::{SockAddr, SockRef};

use super::{DropReader, Received};

/// The kernel's drops are counted here.
pub(crate) const COUNTS_DROPS: bool = true;
/// Linux grants twice the buffer size asked (its bookkeeping share included), so half of what
/// `SO_RCVBUF`/`SO_SNDBUF` read back is what was granted of the request (socket(7)).
pub(crate) const GRANT_SHARE: usize = 2;
/// How they are counted, for the stats' settings.
pub(crate) const DROPS_SOURCE: &str = "SO_RXQ_OVFL, and /proc/net/udp drops when stats are read";

/// Room for one `SO_RXQ_OVFL` message (a header and a u32), generously aligned.
const CONTROL: usize = 64;

/// Asks the kernel to attach the socket's drop count to every datagram it delivers.
pub(crate) fn enable_drop_count(sock: &SockRef<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int that outlives the call, and its size is passed with it.
    syscall!(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// One `recvmsg`: the datagram into `buf`, its sender, and the drop count if attached (the
/// kernel attaches it only once the count is non-zero).
pub(crate) fn recv(sock: SockRef<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = [0u64; CONTROL / 8];
    let mut len = 0usize;
    let mut control_len = 0usize;
    // SAFETY: `try_init` hands a zeroed sockaddr_storage and its length for the call to fill.
    let ((), from) = unsafe {
        SockAddr::try_init(|storage, storage_len| {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = MaybeUninit::zeroed().assume_init();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *storage_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = CONTROL as _;
            // SAFETY (the call): every pointer in `msg` (name, iovec, buffer, control) points
            // at memory that is live and writable for the lengths given, for this call only.
            let n = syscall!(libc::recvmsg(sock.as_raw_fd(), &mut msg, 0))?;
            *storage_len = msg.msg_namelen;
            len = n as usize;
            #[allow(clippy::unnecessary_cast)] // socklen_t on some libcs
            {
                control_len = msg.msg_controllen as usize;
            }
            Ok(())
        })?
    };
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("recvmsg: the sender is not an IP address"))?;
    let bytes: Vec<u8> = control
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(control_len.min(CONTROL))
        .collect();
    Ok(Received {
        len,
        from,
        drops: control_drops(&bytes),
    })
}

/// A reading of the socket's drop count now, for the stats: `SO_RXQ_OVFL` arrives only with a
/// datagram, so drops after the last one a socket received would be missed; `/proc/net/udp`
/// (and `udp6`) lists the same counter (`sk_drops`, its `drops` column) for every socket,
/// found by the socket's inode. The reader holds a duplicate of the socket so the row exists
/// One `sendto` with `MSG_DONTWAIT`: a full send buffer fails it with `EAGAIN` even on a
/// blocking socket (the `blocking` model's), so every model drops and counts the echo instead
/// of one of them waiting while its receive buffer overflows.
pub(crate) fn send_to(
    sock: SockRef<'_>,
    buf: &[u8],
    to: std::net::SocketAddr,
) -> io::Result<usize> {
    sock.send_to_with_flags(buf, &SockAddr::from(to), libc::MSG_DONTWAIT)
}

/// until the stats are taken (it closes with the server).
pub(crate) fn drop_reader(socket: &UdpSocket) -> io::Result<Option<DropReader>> {
    let dup = socket.try_clone()?;
    Ok(Some(Box::new(move || {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", dup.as_raw_fd())).ok()?;
        let inode = link
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .to_owned();
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find_map(|table| drops_of(&table, &inode))
    })))
}

/// The `drops` column of the row of `/proc/net/udp` whose inode is `inode`.
fn drops_of(table: &str, inode: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(9) == Some(&inode)).then(|| cols.last()?.parse().ok())?
    })
}

/// The `SO_RXQ_OVFL` count in a control buffer (as `recvmsg` or io_uring's
/// `io_uring_recvmsg_out` return it), read without pointer casts: each message is a
/// `cmsghdr` {len: size_t, level: int, type: int}, its data aligned to `size_t` after it.
pub(crate) fn control_drops(control: &[u8]) -> Option<u32> {
    const WORD: usize = size_of::<usize>();
    let header = size_of::<libc::cmsghdr>();
    let mut at = 0;
    while at + header <= control.len() {
        let word = |i: usize| control.get(i..i + WORD);
        let int = |i: usize| -> Option<i32> {
            Some(i32::from_ne_bytes(control.get(i..i + 4)?.try_into().ok()?))
        };
        let len = usize::from_ne_bytes(word(at)?.try_into().ok()?);
        let (level, kind) = (int(at + WORD)?, int(at + WORD + 4)?);
        if len < header {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL {
            let data = at + header.next_multiple_of(WORD);
            return Some(u32::from_ne_bytes(
                control.get(data..data + 4)?.try_into().ok()?,
            ));
        }
        at += len.next_multiple_of(WORD);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_rows_are_found_by_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                     \x20 309: 0100007F:8C76 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 15452486 2 000000007233c5d9 17\n";
        assert_eq!(drops_of(table, "15452486"), Some(17));
        assert_eq!(drops_of(table, "1545248"), None);
        // And for a live socket: found, and 0.
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let read = drop_reader(&s).unwrap().unwrap();
        assert_eq!(read(), Some(0));
    }

    /// The reason for the reader: drops after the last datagram a socket received reach no
    /// `SO_RXQ_OVFL` message, but `/proc/net/udp` counts them.
    #[test]
    fn drops_no_datagram_reports_are_read_from_proc() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        SockRef::from(&server).set_recv_buffer_size(1).unwrap(); // the kernel's minimum
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        const SENT: u64 = 200;
        for _ in 0..SENT {
            client
                .send_to(&[0u8; 512], server.local_addr().unwrap())
                .unwrap();
        }
        let read = drop_reader(&server).unwrap().unwrap();
        let dropped = read().unwrap();
        let mut queued = 0;
        let mut buf = [0u8; 1024];
        while server.recv(&mut buf).is_ok() {
            queued += 1;
        }
        assert!(dropped > 0, "a minimal buffer took all {SENT}");
        assert_eq!(queued + dropped, SENT, "queued {queued}, dropped {dropped}");
    }

    #[test]
    fn the_drop_count_is_found_among_other_messages() {
        let mut buf = Vec::new();
        let push = |buf: &mut Vec<u8>, level: i32, kind: i32, data: &[u8]| {
            let len = size_of::<libc::cmsghdr>() + data.len();
            buf.extend_from_slice(&len.to_ne_bytes());
            buf.extend_from_slice(&level.to_ne_bytes());
            buf.extend_from_slice(&kind.to_ne_bytes());
            buf.extend_from_slice(data);
            while buf.len() % 8 != 0 {
                buf.push(0);
            }
        };
        push(&mut buf, libc::SOL_IP, libc::IP_TTL, &64i32.to_ne_bytes());
        assert_eq!(control_drops(&buf), None);
        push(
            &mut buf,
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &7u32.to_ne_bytes(),
        );
        assert_eq!(control_drops(&buf), Some(7));
        assert_eq!(
            control_drops(&buf[..5]),
            None,
            "a cut buffer is not misread"
        );
    }
}
