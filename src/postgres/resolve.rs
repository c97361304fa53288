//! Host names to addresses, in Rust.
//!
//! The release binary is static: glibc's getaddrinfo (and NSS behind it)
//! is not there, so neither `tokio::net::lookup_host` nor a plain host name
//! handed to tokio-postgres may be used. hickory-resolver reads the same
//! files the C library would (`/etc/hosts` first, then the name servers,
//! search domains and ndots of `/etc/resolv.conf`).
//!
//! A resolver is built for every lookup and caches nothing: the caller
//! retries until a name appears (a Kubernetes Service or a compose service
//! that is not up yet), and a cached negative answer would only delay
//! noticing it. Every lookup is short (1 s per query, one try, and a cap on
//! the whole) so that a broken name server does not stall the wait; the
//! caller's retry loop is the retry.
//!
//! The name servers are asked as the C library asks them: one at a time, in the order of
//! resolv.conf, the first answer final. hickory's default (two at once, reordered by
//! statistics, the first answer wins) breaks where the servers do not agree: podman's compose
//! networks list aardvark-dns, which knows the service names, and then the host's servers,
//! whose NXDOMAIN for `postgres` then won some lookups (seen under podman-compose).

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ResolverConfig, ServerOrderingStrategy};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// One DNS query may take this long.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// A whole lookup (search domains included) may take at most this long.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(2);

/// The addresses of `name`, or why there are none (one line).
pub async fn resolve(name: &str, limit: Duration) -> Result<Vec<IpAddr>, String> {
    let resolver = build_resolver()?;
    match tokio::time::timeout(limit, resolver.lookup_ip(name)).await {
        Err(_) => Err(format!("no DNS answer within {:.1}s", limit.as_secs_f64())),
        Ok(Err(error)) if error.is_nx_domain() => Err("no such host (NXDOMAIN)".into()),
        Ok(Err(error)) if error.is_no_records_found() => Err("no address records".into()),
        Ok(Err(error)) => Err(one_line(&error.to_string())),
        Ok(Ok(found)) => {
            let addresses: Vec<IpAddr> = found.iter().collect();
            if addresses.is_empty() {
                Err("no address records".into())
            } else {
                Ok(addresses)
            }
        }
    }
}

fn build_resolver() -> Result<TokioResolver, String> {
    let mut builder = match TokioResolver::builder_tokio() {
        Ok(builder) => builder,
        // No usable /etc/resolv.conf (a minimal image): /etc/hosts still works.
        Err(error) => {
            tracing::debug!(
                "cannot read the resolver configuration ({error}); using /etc/hosts only"
            );
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(Vec::new()),
                TokioRuntimeProvider::default(),
            )
        }
    };
    let options = builder.options_mut();
    options.timeout = QUERY_TIMEOUT;
    options.attempts = 1;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Always;
    options.num_concurrent_reqs = 1;
    options.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    builder.build().map_err(|error| {
        format!(
            "cannot set up name resolution: {}",
            one_line(&error.to_string())
        )
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
