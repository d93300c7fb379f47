//! The address a call came from, as rate limits and login throttles count it.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
};

/// A caller's IP address. Limits key on [`ClientAddress::bucket`], not on the
/// exact address: an IPv6 client is usually given a whole /64 and could rotate
/// through it for free.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    pub fn new(address: IpAddr) -> Self {
        // An IPv4 client seen through a dual-stack socket is still that IPv4 client.
        match address {
            IpAddr::V6(v6) => Self(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
            v4 @ IpAddr::V4(_) => Self(v4),
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.0
    }

    /// What limits count: the IPv4 address itself, or the IPv6 /64 it lies in.
    pub fn bucket(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientAddress({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(raw: &str) -> String {
        ClientAddress::new(raw.parse().unwrap()).bucket()
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_bucket() {
        assert_eq!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(bucket("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:3::1"));
    }

    #[test]
    fn ipv4_addresses_are_their_own_bucket_even_when_mapped_into_ipv6() {
        assert_eq!(bucket("192.0.2.7"), "192.0.2.7");
        assert_eq!(bucket("::ffff:192.0.2.7"), "192.0.2.7");
        assert_ne!(bucket("192.0.2.7"), bucket("192.0.2.8"));
    }
}
