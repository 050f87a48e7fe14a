//! A small synchronous rtnetlink client: links, addresses and routes of the calling thread's
//! network namespace, and adding/removing addresses.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    /// Administratively up.
    pub(crate) up: bool,
    /// Carrier present (`LOWER_UP`).
    pub(crate) lower_up: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addr {
    pub(crate) index: u32,
    pub(crate) ip: IpAddr,
    pub(crate) prefix_len: u8,
    pub(crate) label: Option<String>,
}

/// A route in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) dst: Option<IpAddr>,
    pub(crate) prefix_len: u8,
    pub(crate) oif: Option<u32>,
    pub(crate) via_gateway: bool,
    pub(crate) unicast: bool,
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Sends one request and collects the replies (dump parts, or the ack).
fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[offset..size])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(out),
                        Some(_) => Err(e.to_io()),
                    };
                }
                NetlinkPayload::InnerMessage(m) => out.push(m),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
            return Ok(out);
        }
    }
}

/// Every interface.
pub(crate) fn links() -> io::Result<Vec<Link>> {
    let replies = request(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link {
                index: l.header.index,
                up: l.header.flags.contains(LinkFlags::Up),
                lower_up: l.header.flags.contains(LinkFlags::LowerUp),
                name: l
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            }),
            _ => None,
        })
        .collect())
}

/// Every address of `ip`'s family.
pub(crate) fn addresses(like: &IpAddr) -> io::Result<Vec<Addr>> {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(like);
    let replies = request(
        RouteNetlinkMessage::GetAddress(msg),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => {
                let mut local = None;
                let mut address = None;
                let mut label = None;
                for attr in &a.attributes {
                    match attr {
                        AddressAttribute::Local(ip) => local = Some(*ip),
                        AddressAttribute::Address(ip) => address = Some(*ip),
                        AddressAttribute::Label(l) => label = Some(l.clone()),
                        _ => {}
                    }
                }
                Some(Addr {
                    index: a.header.index,
                    ip: local.or(address)?,
                    prefix_len: a.header.prefix_len,
                    label,
                })
            }
            _ => None,
        })
        .collect())
}

/// Routes of `ip`'s family in the main table.
pub(crate) fn routes(like: &IpAddr) -> io::Result<Vec<Route>> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(like);
    let replies = request(
        RouteNetlinkMessage::GetRoute(msg),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => {
                let mut table = u32::from(r.header.table);
                let mut dst = None;
                let mut oif = None;
                let mut via_gateway = false;
                for attr in &r.attributes {
                    match attr {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => via_gateway = true,
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                            dst = Some(IpAddr::V4(*a));
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            dst = Some(IpAddr::V6(*a));
                        }
                        _ => {}
                    }
                }
                (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(Route {
                    dst,
                    prefix_len: r.header.destination_prefix_length,
                    oif,
                    via_gateway,
                    unicast: r.header.kind == RouteType::Unicast,
                })
            }
            _ => None,
        })
        .collect())
}

fn address_message(index: u32, ip: IpAddr, prefix_len: u8, label: Option<&str>) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(&ip);
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    match ip {
        IpAddr::V4(v4) => {
            msg.attributes.push(AddressAttribute::Local(ip));
            msg.attributes.push(AddressAttribute::Address(ip));
            if prefix_len < 31 {
                let host_bits = 32 - u32::from(prefix_len);
                let bcast = u32::from(v4) | ((1u64 << host_bits) - 1) as u32;
                msg.attributes
                    .push(AddressAttribute::Broadcast(bcast.into()));
            }
            if let Some(l) = label {
                msg.attributes.push(AddressAttribute::Label(l.to_owned()));
            }
        }
        IpAddr::V6(_) => {
            msg.attributes.push(AddressAttribute::Address(ip));
            // The address is usable at once: no duplicate address detection delay.
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    msg
}

/// Adds `ip/prefix_len` to interface `index`. `Ok(false)` when it was already there.
pub(crate) fn add_address(
    index: u32,
    ip: IpAddr,
    prefix_len: u8,
    label: Option<&str>,
) -> io::Result<bool> {
    let msg = address_message(index, ip, prefix_len, label);
    match request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc_eexist()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes `ip/prefix_len` from interface `index`. `Ok(false)` when it was not there.
pub(crate) fn del_address(index: u32, ip: IpAddr, prefix_len: u8) -> io::Result<bool> {
    let msg = address_message(index, ip, prefix_len, None);
    match request(
        RouteNetlinkMessage::DelAddress(msg),
        NLM_F_REQUEST | NLM_F_ACK,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EADDRNOTAVAIL as i32) => Ok(false),
        Err(e) => Err(e),
    }
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

/// True when `ip` lies in `net/prefix_len`.
pub(crate) fn contains(net: IpAddr, prefix_len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let p = u32::from(prefix_len.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let p = u32::from(prefix_len.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_containment() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(ip("10.213.1.0"), 24, ip("10.213.1.100")));
        assert!(!contains(ip("10.213.1.0"), 24, ip("10.213.2.1")));
        assert!(contains(ip("0.0.0.0"), 0, ip("1.2.3.4")));
        assert!(contains(ip("fd00::"), 64, ip("fd00::5")));
        assert!(!contains(ip("fd00::"), 64, ip("fd01::5")));
        assert!(!contains(ip("fd00::"), 0, ip("1.2.3.4")));
    }

    #[test]
    fn loopback_is_listed() {
        let links = links().unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    }
}
