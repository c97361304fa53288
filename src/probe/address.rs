//! Where a probe connects: the server in this container, by default on the
//! loopback at the role's port.
//!
//! The roles bind `[::]` (or `0.0.0.0` without IPv6), which answers on
//! 127.0.0.1 too, so that is tried first; `[::1]` second covers a server
//! bound to the IPv6 loopback only. `--address` names one address instead:
//! an IP address or `localhost`, with a port. Host names are refused: a probe
//! checks its own container, and resolving names would need a resolver
//! (the static binary has no NSS) for no gain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The api's port in the Pulp images.
pub const API_PORT: u16 = 24817;
/// The content app's port in the Pulp images.
pub const CONTENT_PORT: u16 = 24816;

/// The addresses to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addresses: Vec<SocketAddr>,
}

impl Target {
    /// Both loopback addresses at `port`.
    pub fn loopback(port: u16) -> Target {
        Target {
            addresses: vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
            ],
        }
    }

    /// `--address`: `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(Target {
                addresses: vec![address],
            });
        }
        let bad = || {
            format!(
                "--address {text:?} is not HOST:PORT with an IP address or localhost, e.g. 127.0.0.1:24817 or [::1]:24817"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.eq_ignore_ascii_case("localhost") {
            Ok(Target::loopback(port))
        } else {
            Err(bad())
        }
    }

    /// `127.0.0.1:24817 or [::1]:24817`.
    pub fn describe(&self) -> String {
        self.addresses
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_with_ports() {
        assert_eq!(
            Target::parse("10.0.0.5:8080").unwrap().addresses,
            ["10.0.0.5:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            Target::parse("[::1]:24817").unwrap().addresses,
            ["[::1]:24817".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn localhost_means_both_loopbacks() {
        assert_eq!(
            Target::parse("localhost:9000").unwrap(),
            Target::loopback(9000)
        );
        assert_eq!(Target::loopback(1).describe(), "127.0.0.1:1 or [::1]:1");
    }

    #[test]
    fn names_and_missing_ports_are_refused_with_an_example() {
        for bad in ["pulp-api:24817", "127.0.0.1", "localhost", ":80", "[::1]"] {
            let error = Target::parse(bad).unwrap_err();
            assert!(error.contains("e.g. 127.0.0.1:24817"), "{bad}: {error}");
        }
    }
}
