//! Who is on the other end: the peer's address, or, behind proxies the operator trusts
//! (`SPSE_TOTP_TRUSTED_PROXIES`), the address the nearest untrusted hop was seen from.
//!
//! A proxy appends the address it received a request from to `X-Forwarded-For`, so the entries
//! are in order of hops and only the ones appended by trusted proxies are worth anything: whatever
//! the client wrote on the left is forged at will. The client is therefore the rightmost entry
//! that is not a trusted proxy, and the header is ignored entirely unless the peer itself is one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Entries of `X-Forwarded-For` looked at, from the right: more hops than this are not a real
/// deployment, and a long forged list must not cost work.
const MAX_HOPS: usize = 32;

/// One network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR network such as 10.0.0.0/8")]
pub struct CidrError(String);

impl Cidr {
    /// Every address of both families: what the deprecated `SPSE_TOTP_TRUST_FORWARDED_FOR`
    /// meant.
    pub fn everything() -> [Cidr; 2] {
        [
            Cidr {
                network: IpAddr::from([0u8; 4]),
                prefix: 0,
            },
            Cidr {
                network: IpAddr::from([0u16; 8]),
                prefix: 0,
            },
        ]
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// An IPv4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`; the operator writes `a.b.c.d`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let keep = u32::from(width.min(prefix));
    let shift = u32::from(width) - keep;
    (bits >> shift) << shift
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || CidrError(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network = canonical(address.parse::<IpAddr>().map_err(|_| bad())?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(bad)?,
            None => width,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` entries are believed. Empty by default: the header is
/// ignored and the peer's address is the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(networks: impl IntoIterator<Item = Cidr>) -> Self {
        TrustedProxies(networks.into_iter().collect())
    }

    /// A comma-separated list of CIDRs; blank means none.
    pub fn parse_list(text: &str) -> Result<Self, CidrError> {
        text.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(address))
    }

    /// The client's address, given the peer's and the `X-Forwarded-For` values in the order the
    /// request carried them.
    pub fn client_address<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let entries: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev().take(MAX_HOPS) {
            // A hop that wrote garbage is not a trusted proxy: the last good address stands.
            let Ok(address) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy", "10.0.0.0/", "::/129", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let proxies = TrustedProxies::parse_list("127.0.0.1, 10.0.0.0/8").unwrap();
        // The client forged the leftmost entry; the proxy appended what it saw.
        assert_eq!(
            proxies.client_address(ip("127.0.0.1"), ["6.6.6.6, 198.51.100.9", "10.0.0.4"]),
            ip("198.51.100.9")
        );
        // Every hop trusted: the leftmost is the client.
        assert_eq!(
            proxies.client_address(ip("127.0.0.1"), ["10.0.0.7, 10.0.0.4"]),
            ip("10.0.0.7")
        );
        // An untrusted peer's header is its own invention.
        assert_eq!(
            proxies.client_address(ip("192.0.2.1"), ["198.51.100.9"]),
            ip("192.0.2.1")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            proxies.client_address(ip("127.0.0.1"), ["198.51.100.9, junk, 10.0.0.4"]),
            ip("10.0.0.4")
        );
        assert_eq!(
            TrustedProxies::default().client_address(ip("127.0.0.1"), ["198.51.100.9"]),
            ip("127.0.0.1")
        );
    }
}
