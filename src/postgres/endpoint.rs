//! Where the server is: Django's `HOST` read the way libpq reads it.
//!
//! - unset or empty: the unix socket in `/var/run/postgresql` (libpq's default);
//! - starting with `/`: the directory of a unix socket;
//! - an IPv4 or IPv6 literal (brackets allowed): that address;
//! - anything else: a DNS name, resolved by `resolve` on every attempt.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::settings::DatabaseSettings;

/// libpq's default socket directory (Debian's and the official images').
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Socket { dir: PathBuf, port: u16 },
    Address { ip: IpAddr, port: u16 },
    Name { name: String, port: u16 },
}

impl Endpoint {
    pub fn from_settings(db: &DatabaseSettings) -> Endpoint {
        let port = db.port.value;
        let host = db.host.as_ref().map(|h| h.value.trim()).unwrap_or("");
        if host.is_empty() {
            return Endpoint::Socket {
                dir: DEFAULT_SOCKET_DIR.into(),
                port,
            };
        }
        if host.starts_with('/') {
            return Endpoint::Socket {
                dir: host.into(),
                port,
            };
        }
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match literal.parse::<IpAddr>() {
            Ok(ip) => Endpoint::Address { ip, port },
            Err(_) => Endpoint::Name {
                name: host.to_owned(),
                port,
            },
        }
    }

    pub fn is_socket(&self) -> bool {
        matches!(self, Endpoint::Socket { .. })
    }
}

/// `db:5432`, `[::1]:5432`, `/var/run/postgresql/.s.PGSQL.5432`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Socket { dir, port } => {
                write!(f, "{}", dir.join(format!(".s.PGSQL.{port}")).display())
            }
            Endpoint::Address {
                ip: IpAddr::V6(ip),
                port,
            } => write!(f, "[{ip}]:{port}"),
            Endpoint::Address { ip, port } => write!(f, "{ip}:{port}"),
            Endpoint::Name { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::settings::SslMode;
    use crate::sourced::Sourced;

    /// Settings for `pulp@pulp` at `host`, port 5432.
    pub(crate) fn settings(host: Option<&str>) -> DatabaseSettings {
        DatabaseSettings {
            name: Sourced::default("pulp".into()),
            user: Sourced::default("pulp".into()),
            password: None,
            host: host.map(|h| Sourced::default(h.to_owned())),
            port: Sourced::default(5432),
            sslmode: Sourced::default(SslMode::Prefer),
            sslrootcert: None,
            connect_timeout: None,
        }
    }

    fn with_host(host: Option<&str>) -> Endpoint {
        Endpoint::from_settings(&settings(host))
    }

    #[test]
    fn hosts_are_read_as_libpq_reads_them() {
        assert_eq!(
            with_host(None).to_string(),
            "/var/run/postgresql/.s.PGSQL.5432"
        );
        assert!(with_host(Some("")).is_socket());
        assert_eq!(
            with_host(Some("/tmp/pg")).to_string(),
            "/tmp/pg/.s.PGSQL.5432"
        );
        assert_eq!(
            with_host(Some("10.0.0.7")),
            Endpoint::Address {
                ip: "10.0.0.7".parse().unwrap(),
                port: 5432
            }
        );
        assert_eq!(with_host(Some("[::1]")).to_string(), "[::1]:5432");
        assert_eq!(with_host(Some("::1")).to_string(), "[::1]:5432");
        assert_eq!(
            with_host(Some("db.example")),
            Endpoint::Name {
                name: "db.example".into(),
                port: 5432
            }
        );
    }
}
