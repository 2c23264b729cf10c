//! `network-name`: the DNS name of a virtual server, which moves with its
//! group (the Network Name resource of a Windows cluster).
//!
//! Online registers NAME -> ADDRESS with the DNS server by a dynamic update
//! (RFC 2136) signed with TSIG, and reads it back; is-alive asks the server
//! and expects the address. Offline leaves the record by default: the
//! group's address moves with it, and a name removed during a move would
//! be cached as nonexistent by resolvers for the zone's negative TTL, far
//! longer than the move (`remove-on-offline` removes it, for a virtual
//! server taken down for good). Clients that
//! connect by the name follow the group to whichever node runs it.
//!
//! The host does the DNS work (`network` import): the node configuration
//! grants this type one server, zone and key (`[plugins.network-name.dns]`);
//! the key never reaches the plugin.

use warden_sdk::host::{self, Level};
use warden_sdk::network;
use warden_sdk::types::{Health, PropertyError, Timing};
use warden_sdk::{Property, Props, ResourceType, refuse, unknown_control};

struct NetworkName {
    name: String,
    address: String,
    ttl_s: u32,
    remove_on_offline: bool,
}

impl NetworkName {
    /// Whether the server answers the name with our address and no other
    /// of its family (a client could be sent to the other), and what it
    /// answers otherwise. Addresses of the other family are another
    /// resource's business.
    fn registered(&self) -> Result<(), String> {
        let found = network::lookup_name(&self.name)?;
        let ours = self.address.contains(':');
        let same_family: Vec<&String> = found.iter().filter(|a| a.contains(':') == ours).collect();
        if same_family == [&self.address] {
            return Ok(());
        }
        Err(format!(
            "{} resolves to [{}] at the DNS server, not only {}",
            self.name,
            found.join(", "),
            self.address
        ))
    }
}

impl ResourceType for NetworkName {
    const NAME: &'static str = "network-name";
    const DESCRIPTION: &'static str =
        "The virtual server's DNS name, registered by signed dynamic update.";
    /// One query per check: no looks-alive polling.
    const TIMING: Timing = Timing {
        pending_timeout_ms: 30_000,
        looks_alive_interval_ms: 0,
        is_alive_interval_ms: 10_000,
        check_timeout_ms: 5_000,
    };

    fn properties() -> Vec<Property> {
        vec![
            Property::string(
                "name",
                "The name clients use; a relative name is taken inside the granted zone",
            ),
            Property::string("address", "The address it names (the group's ip-address)"),
            Property::integer("ttl-s", "The record's time to live, in seconds").default("60"),
            Property::boolean(
                "remove-on-offline",
                "Remove the record when the resource goes offline (default: leave it, so a move does not make the name vanish)",
            )
            .default("false"),
        ]
    }

    fn open(_name: &str, props: &Props) -> Result<Self, PropertyError> {
        let name = props.string("name")?;
        if name.is_empty() || name.len() > 253 {
            return Err(refuse("name", "give a DNS name of 1 to 253 characters"));
        }
        let address = props.string("address")?;
        let parsed: std::net::IpAddr = address
            .parse()
            .map_err(|_| refuse("address", format!("{address:?} is not an IP address")))?;
        let ttl = props.u64("ttl-s")?;
        let ttl_s = u32::try_from(ttl)
            .ok()
            .filter(|ttl| *ttl <= 86_400)
            .ok_or_else(|| refuse("ttl-s", format!("{ttl} s: give 0 to 86400")))?;
        Ok(NetworkName {
            name,
            address: parsed.to_string(),
            ttl_s,
            remove_on_offline: props.bool("remove-on-offline")?,
        })
    }

    fn online(&self) -> Result<(), String> {
        network::register_name(&self.name, &self.address, self.ttl_s)?;
        self.registered()?;
        host::log(
            Level::Info,
            &format!("{} -> {} registered", self.name, self.address),
        );
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        if self.remove_on_offline {
            return network::remove_name(&self.name, &self.address);
        }
        host::log(
            Level::Info,
            &format!("{} -> {} left registered", self.name, self.address),
        );
        Ok(())
    }

    /// Fast: nothing to stop, and the record is left as offline leaves it.
    fn terminate(&self) {
        if self.remove_on_offline
            && let Err(reason) = network::remove_name(&self.name, &self.address)
        {
            host::log(Level::Warn, &reason);
        }
    }

    fn is_alive(&self) -> Health {
        self.registered().into()
    }

    fn control(&self, code: &str, _payload: &str) -> Result<String, String> {
        match code {
            "lookup" => network::lookup_name(&self.name).map(|found| found.join("\n")),
            other => Err(unknown_control(other, &["lookup"])),
        }
    }
}

warden_sdk::export_type!(NetworkName);
