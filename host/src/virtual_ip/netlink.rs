//! The node's interfaces and addresses through rtnetlink: look a link up,
//! list addresses, add one, remove one. Each `Netlink` is a socket of the
//! calling thread's network namespace, made for one operation.

use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use super::mac::MacAddr;

/// An rtnetlink connection: the handle requests go through and the task
/// that drives the socket, stopped when this is dropped.
pub(crate) struct Netlink {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// One interface, as far as virtual addresses care.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub mac: Option<MacAddr>,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// The carrier is there (`LOWER_UP`): a cable, a peer, a port up.
    pub carrier: bool,
}

/// One address on one interface, with the kernel's own message for it
/// (what a removal sends back).
#[derive(Debug, Clone)]
pub(crate) struct Assigned {
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
    message: AddressMessage,
}

impl Netlink {
    /// A connection in the calling thread's network namespace; its task
    /// runs on the current tokio runtime.
    pub(crate) fn open() -> io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        Ok(Netlink {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The interface called `name`, or `None` if there is none.
    pub(crate) async fn link(&self, name: &str) -> io::Result<Option<Link>> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(Some(message)) => Ok(Some(link_of(&message))),
            Ok(None) => Ok(None),
            Err(e) => match to_io(e) {
                e if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The name of the interface with index `index` (for errors); its
    /// number if it has gone meanwhile.
    pub(crate) async fn link_name(&self, index: u32) -> String {
        let found = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await;
        found
            .ok()
            .flatten()
            .and_then(|m| {
                m.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name),
                    _ => None,
                })
            })
            .unwrap_or_else(|| format!("#{index}"))
    }

    /// Every address of every interface of the namespace holding `address`.
    pub(crate) async fn holders(&self, address: IpAddr) -> io::Result<Vec<Assigned>> {
        let mut found = Vec::new();
        let mut dump = self.handle.address().get().execute();
        while let Some(message) = dump.try_next().await.map_err(to_io)? {
            if let Some(assigned) = assigned_of(message)
                && assigned.address == address
            {
                found.push(assigned);
            }
        }
        Ok(found)
    }

    /// Add `address/prefix_len` to interface `index`. IPv6 addresses are
    /// added with `IFA_F_NODAD`: the caller probed the network itself, and
    /// the address is usable (and can be announced from) at once.
    pub(crate) async fn add(&self, index: u32, address: IpAddr, prefix_len: u8) -> io::Result<()> {
        let mut request = self.handle.address().add(index, address, prefix_len);
        if address.is_ipv6() {
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(to_io)
    }

    /// Remove one address, as the kernel listed it.
    pub(crate) async fn remove(&self, assigned: &Assigned) -> io::Result<()> {
        self.handle
            .address()
            .del(assigned.message.clone())
            .execute()
            .await
            .map_err(to_io)
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let flags = message.header.flags;
    let mac = message.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => MacAddr::from_slice(bytes),
        _ => None,
    });
    Link {
        index: message.header.index,
        mac,
        up: flags.contains(LinkFlags::Up),
        carrier: flags.contains(LinkFlags::LowerUp),
    }
}

/// The address a message is about: `IFA_LOCAL` where there is one (on a
/// point-to-point link `IFA_ADDRESS` is the peer's), else `IFA_ADDRESS`.
fn assigned_of(message: AddressMessage) -> Option<Assigned> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(Assigned {
        index: message.header.index,
        address,
        prefix_len: message.header.prefix_len,
        message,
    })
}

/// An rtnetlink error as the errno the kernel gave, where it gave one.
fn to_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) if message.code.is_some() => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}
