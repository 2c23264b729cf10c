//! The two raw sockets virtual addresses need, non-blocking under tokio:
//! a packet socket bound to one interface and one EtherType (ARP frames,
//! and IPv6 frames for duplicate address detection), and an ICMPv6 socket
//! bound to one interface (neighbour advertisements). Both need
//! CAP_NET_RAW; `libc` is the whole of the system interface here.

use std::io;
use std::mem::{ManuallyDrop, size_of, zeroed};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// EtherType of ARP.
pub(crate) const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;

/// An `AF_PACKET` socket of one interface and one EtherType: frames go out
/// as written (Ethernet header included), and only that interface's frames
/// of that type come in.
pub(crate) struct PacketSocket {
    /// Taken out only in `drop`.
    fd: ManuallyDrop<AsyncFd<OwnedFd>>,
}

impl Drop for PacketSocket {
    /// Closing a packet socket waits for an RCU grace period in the kernel
    /// (`synchronize_net` in `packet_release`, about 14 ms here:
    /// docs/benchmarks.md), so it is closed on the blocking pool, not on
    /// the async worker that dropped it.
    fn drop(&mut self) {
        // SAFETY: `fd` is taken once, here, and never used again.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) }.into_inner();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop(fd));
        }
    }
}

/// Whether a received frame was sent by this host (a packet socket sees
/// its own outgoing frames too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Incoming,
    Outgoing,
}

impl PacketSocket {
    /// Open and bind. The socket is made with protocol 0, which receives
    /// nothing, and bound to the interface and EtherType after: no frame
    /// of another interface slips in between.
    pub(crate) fn open(ifindex: u32, ethertype: u16) -> io::Result<PacketSocket> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let address = link_address(ifindex, ethertype)?;
        // SAFETY: `address` is a valid sockaddr_ll of the size given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket {
            fd: ManuallyDrop::new(register(fd)?),
        })
    }

    /// Send one whole frame on the interface.
    pub(crate) async fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |fd| {
                // SAFETY: the buffer is valid for its length.
                let sent =
                    unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else if sent as usize != frame.len() {
                    Err(io::Error::other(format!(
                        "sent {sent} of {} bytes",
                        frame.len()
                    )))
                } else {
                    Ok(())
                }
            })
            .await
    }

    /// Receive one frame into `buf` (cut to its length): its length and
    /// whether it was this host's own.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Direction)> {
        self.fd
            .async_io(Interest::READABLE, |fd| {
                // SAFETY: a zeroed sockaddr_ll is valid; recvfrom writes at
                // most `len` bytes of it and at most `buf.len()` of data.
                let mut from: libc::sockaddr_ll = unsafe { zeroed() };
                let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let got = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&raw mut from).cast(),
                        &mut len,
                    )
                };
                if got < 0 {
                    return Err(io::Error::last_os_error());
                }
                let direction = if from.sll_pkttype == libc::PACKET_OUTGOING {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                Ok((got as usize, direction))
            })
            .await
    }
}

fn link_address(ifindex: u32, ethertype: u16) -> io::Result<libc::sockaddr_ll> {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ethertype.to_be();
    address.sll_ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::other(format!("interface index {ifindex} out of range")))?;
    Ok(address)
}

/// A raw ICMPv6 socket that sends on one interface only, with hop limit
/// 255 (neighbour discovery messages with any other are dropped by their
/// receivers, RFC 4861 7.1.2), from a given source address. The kernel
/// computes the ICMPv6 checksum.
pub(crate) struct Icmp6Socket {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
}

impl Icmp6Socket {
    /// Open, bind to `interface` and to `source` (an address this host
    /// holds on it), and set the hop limits.
    pub(crate) fn open(interface: &str, ifindex: u32, source: Ipv6Addr) -> io::Result<Icmp6Socket> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMPV6,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_option(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_bytes(),
        )?;
        let hops: libc::c_int = 255;
        let hops = hops.to_ne_bytes();
        set_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops)?;
        set_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &hops)?;
        let index = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::other(format!("interface index {ifindex} out of range")))?;
        set_option(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &index.to_ne_bytes(),
        )?;
        let local = sockaddr_in6(source, 0);
        // SAFETY: `local` is a valid sockaddr_in6 of the size given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const local).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Icmp6Socket {
            fd: register(fd)?,
            ifindex,
        })
    }

    /// Send one ICMPv6 message (checksum left zero: the kernel fills it)
    /// to `to` on the socket's interface.
    pub(crate) async fn send_to(&self, message: &[u8], to: Ipv6Addr) -> io::Result<()> {
        let destination = sockaddr_in6(to, self.ifindex);
        self.fd
            .async_io(Interest::WRITABLE, |fd| {
                // SAFETY: buffer and address are valid for their lengths.
                let sent = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        message.as_ptr().cast(),
                        message.len(),
                        0,
                        (&raw const destination).cast(),
                        size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            })
            .await
    }
}

/// A socket registered with the tokio reactor, owned by its `AsyncFd`.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns the descriptor from here on and closes
    // it when dropped; nothing else holds, replaces or closes it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

fn sockaddr_in6(address: Ipv6Addr, scope_id: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = address.octets();
    sa.sin6_scope_id = scope_id;
    sa
}

fn set_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is valid for its length, which is what is passed.
    let done = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if done < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
