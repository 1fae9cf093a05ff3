//! The client's address: the peer's, unless the peer is a trusted proxy,
//! whose `X-Forwarded-For` is then believed as far back as it is trusted.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Proxies whose `X-Forwarded-For` is believed (`BLOGQL_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts these networks.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The address a request came from. Walks `X-Forwarded-For` from the
    /// nearest hop back, stopping at the first address not a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                // A garbled entry was not written by a proxy we trust.
                None => break,
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`), as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let unbracketed = hop
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(hop);
    let address = unbracketed
        .parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_entries_with_ports_name_their_address() {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        for (entry, client) in [
            ("1.2.3.6:5555", "1.2.3.6"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::2", "2001:db8::2"),
            ("[2001:db8::3]", "2001:db8::3"),
            ("198.51.100.7", "198.51.100.7"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", entry.parse().unwrap());
            assert_eq!(
                proxies.client(proxy, &headers),
                client.parse::<IpAddr>().unwrap(),
                "{entry}"
            );
        }
    }
}
