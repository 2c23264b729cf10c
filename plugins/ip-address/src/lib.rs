//! `ip-address`: a virtual IP address that moves with its group (the IP
//! Address resource of a Windows cluster's virtual server, Pacemaker's
//! IPaddr2).
//!
//! Online checks that no other host answers for the address (duplicate
//! address detection), puts it on the interface and announces it
//! (gratuitous ARP for IPv4, unsolicited neighbour advertisements for
//! IPv6) so that neighbours switch to this node at once. Offline takes it
//! off. Is-alive: the address is on the interface and the link is up.
//!
//! The host does the work (`network` import): the node configuration must
//! grant this type the interface and a range holding the address
//! (`[plugins.ip-address.ip]`), or every call is refused naming the grant.

use warden_sdk::host::{self, Level};
use warden_sdk::network::{self, AddressSpec};
use warden_sdk::types::{Health, PropertyError, Timing};
use warden_sdk::{Property, Props, ResourceType, refuse, unknown_control};

struct IpAddress {
    spec: AddressSpec,
    probe_ms: u32,
    announce_count: u32,
    announce_interval_ms: u32,
}

/// A duration property as the u32 milliseconds the host takes.
fn millis(props: &Props, name: &str) -> Result<u32, PropertyError> {
    let value = props.u64(name)?;
    u32::try_from(value).map_err(|_| refuse(name, format!("{value} ms is too long")))
}

impl IpAddress {
    /// The address, for messages: `198.18.0.100/24 on eth0`.
    fn describe(&self) -> String {
        format!(
            "{}/{} on {}",
            self.spec.address, self.spec.prefix_length, self.spec.interface
        )
    }
}

impl ResourceType for IpAddress {
    const NAME: &'static str = "ip-address";
    const DESCRIPTION: &'static str =
        "A virtual IP address on this node's interface, announced to the neighbours.";
    /// Netlink answers at once: a cheap check, often.
    const TIMING: Timing = Timing {
        pending_timeout_ms: 30_000,
        looks_alive_interval_ms: 0,
        is_alive_interval_ms: 2_000,
        check_timeout_ms: 2_000,
    };

    fn properties() -> Vec<Property> {
        vec![
            Property::string(
                "address",
                "The IPv4 or IPv6 address, without a prefix length",
            ),
            Property::integer("prefix-length", "The prefix length of its subnet"),
            Property::string("interface", "The interface to put it on (eth0)"),
            Property::duration_ms(
                "probe-ms",
                "How long online listens for another host answering for the address",
            )
            .default("500"),
            Property::integer(
                "announce-count",
                "How many gratuitous ARPs or neighbour advertisements online sends",
            )
            .default("3"),
            Property::duration_ms("announce-interval-ms", "The time between announcements")
                .default("200"),
        ]
    }

    fn open(_name: &str, props: &Props) -> Result<Self, PropertyError> {
        let address = props.string("address")?;
        let parsed: std::net::IpAddr = address
            .parse()
            .map_err(|_| refuse("address", format!("{address:?} is not an IP address")))?;
        let most = if parsed.is_ipv4() { 32 } else { 128 };
        let prefix = props.u64("prefix-length")?;
        if !(1..=most).contains(&prefix) {
            return Err(refuse(
                "prefix-length",
                format!("{prefix} is not a prefix length for {address}: give 1 to {most}"),
            ));
        }
        let interface = props.string("interface")?;
        if interface.is_empty() {
            return Err(refuse(
                "interface",
                "name the interface to put the address on",
            ));
        }
        let announce_count = props.u64("announce-count")?;
        if !(1..=100).contains(&announce_count) {
            return Err(refuse(
                "announce-count",
                format!("{announce_count} announcements: give 1 to 100"),
            ));
        }
        Ok(IpAddress {
            spec: AddressSpec {
                address: parsed.to_string(),
                prefix_length: prefix as u8,
                interface,
            },
            probe_ms: millis(props, "probe-ms")?,
            announce_count: announce_count as u32,
            announce_interval_ms: millis(props, "announce-interval-ms")?,
        })
    }

    fn online(&self) -> Result<(), String> {
        // Idempotent: a hot swap's new instance finds it there.
        if network::query_address(&self.spec)?.present {
            return Ok(());
        }
        host::report_progress(&format!("probing for {}", self.spec.address));
        network::probe_address(&self.spec, self.probe_ms)?;
        network::add_address(&self.spec)?;
        let announced =
            network::announce_address(&self.spec, self.announce_count, self.announce_interval_ms);
        if let Err(reason) = announced {
            // Nothing half-done: an address the neighbours were not told
            // about is taken off again.
            if let Err(undo) = network::remove_address(&self.spec) {
                host::log(
                    Level::Error,
                    &format!("could not take {} off again: {undo}", self.describe()),
                );
            }
            return Err(reason);
        }
        host::log(
            Level::Info,
            &format!("{} is up and announced", self.describe()),
        );
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        network::remove_address(&self.spec)
    }

    fn terminate(&self) {
        if let Err(reason) = network::remove_address(&self.spec) {
            host::log(Level::Warn, &reason);
        }
    }

    fn is_alive(&self) -> Health {
        match network::query_address(&self.spec) {
            Ok(state) if !state.link_up => {
                Health::Failed(format!("the link of {} is down", self.spec.interface))
            }
            Ok(state) if !state.present => {
                Health::Failed(format!("{} is no longer there", self.describe()))
            }
            Ok(_) => Health::Healthy,
            Err(reason) => Health::Failed(reason),
        }
    }

    fn control(&self, code: &str, _payload: &str) -> Result<String, String> {
        match code {
            "announce" => network::announce_address(
                &self.spec,
                self.announce_count,
                self.announce_interval_ms,
            )
            .map(|()| format!("announced {}", self.describe())),
            other => Err(unknown_control(other, &["announce"])),
        }
    }
}

warden_sdk::export_type!(IpAddress);
