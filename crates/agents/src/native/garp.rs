//! Announcing a moved address: gratuitous ARP (IPv4) and unsolicited neighbour advertisements
//! (IPv6), built here and sent as raw Ethernet frames on a packet socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, sendto, socket,
};

/// Ethernet header length.
const ETH_LEN: usize = 14;

/// The interface's link-layer address (from getifaddrs: ifindex and MAC).
pub(crate) fn link_addr(ifname: &str) -> io::Result<LinkAddr> {
    nix::ifaddrs::getifaddrs()?
        .filter(|a| a.interface_name == ifname)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no link address for {ifname}"),
            )
        })
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A gratuitous ARP frame: `reply` false for a request, true for a reply; sender and target
/// protocol address are both `ip`, broadcast to everyone.
pub(crate) fn garp_frame(mac: [u8; 6], ip: Ipv4Addr, reply: bool) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp.push(6);
    arp.push(4);
    arp.extend_from_slice(&(if reply { 2u16 } else { 1u16 }).to_be_bytes());
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&ip.octets());
    arp.extend_from_slice(&if reply { mac } else { [0xff; 6] });
    arp.extend_from_slice(&ip.octets());
    ethernet([0xff; 6], mac, 0x0806, &arp)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An unsolicited neighbour advertisement for `ip` to all nodes (ff02::1), override flag set,
/// with the target link-layer address option.
pub(crate) fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.push(136); // neighbour advertisement
    icmp.push(0);
    icmp.extend_from_slice(&[0, 0]); // checksum, filled below
    icmp.extend_from_slice(&[0x20, 0, 0, 0]); // override
    icmp.extend_from_slice(&ip.octets());
    icmp.push(2); // target link-layer address option
    icmp.push(1); // length in units of 8 bytes
    icmp.extend_from_slice(&mac);
    let mut pseudo = Vec::with_capacity(40 + icmp.len());
    pseudo.extend_from_slice(&ip.octets());
    pseudo.extend_from_slice(&all_nodes.octets());
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let sum = checksum(&pseudo);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut ip6 = Vec::with_capacity(40 + icmp.len());
    ip6.extend_from_slice(&[0x60, 0, 0, 0]);
    ip6.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    ip6.push(58); // next header: ICMPv6
    ip6.push(255); // hop limit, required for ND
    ip6.extend_from_slice(&ip.octets());
    ip6.extend_from_slice(&all_nodes.octets());
    ip6.extend_from_slice(&icmp);
    ethernet([0x33, 0x33, 0, 0, 0, 1], mac, 0x86dd, &ip6)
}

/// A packet socket bound (by destination) to one interface, ready to send announcements.
pub(crate) struct Announcer {
    fd: std::os::fd::OwnedFd,
    dest: LinkAddr,
    frames: Vec<Vec<u8>>,
}

impl Announcer {
    /// Prepares the frames announcing `ip` on `ifname`. Interfaces without an Ethernet address
    /// (loopback, tun) have nothing to announce: `Ok(None)`.
    pub(crate) fn new(ifname: &str, ip: IpAddr) -> io::Result<Option<Announcer>> {
        let dest = link_addr(ifname)?;
        let Some(mac) = dest.addr() else {
            return Ok(None);
        };
        // ARPHRD_ETHER only; loopback's all-zero MAC also means "nothing to announce".
        if dest.hatype() != 1 || mac == [0; 6] || dest.halen() != 6 {
            return Ok(None);
        }
        let frames = match ip {
            IpAddr::V4(v4) => vec![garp_frame(mac, v4, false), garp_frame(mac, v4, true)],
            IpAddr::V6(v6) => vec![unsolicited_na_frame(mac, v6)],
        };
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        Ok(Some(Announcer { fd, dest, frames }))
    }

    /// Sends one round (ARP request and reply, or one NA).
    pub(crate) fn send_round(&self) -> io::Result<()> {
        for f in &self.frames {
            sendto(
                self.fd.as_raw_fd(),
                f,
                &self.dest as &dyn SockaddrLike,
                MsgFlags::empty(),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_request_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = garp_frame(mac, Ipv4Addr::new(10, 213, 1, 100), false);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 213, 1, 100]);
        assert_eq!(&f[38..42], &[10, 213, 1, 100]);
    }

    #[test]
    fn na_checksum_verifies() {
        let ip: Ipv6Addr = "fd00::100".parse().unwrap();
        let f = unsolicited_na_frame([2, 0, 0, 0, 0, 1], ip);
        let ip6 = &f[ETH_LEN..];
        let icmp = &ip6[40..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip6[8..24]);
        pseudo.extend_from_slice(&ip6[24..40]);
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(icmp);
        assert_eq!(checksum(&pseudo), 0, "a correct checksum sums to zero");
        assert_eq!(ip6[7], 255);
    }
}
