//! One login to PostgreSQL with the settings pulpcore will use.
//!
//! A [`Connector`] is built once from the settings (where to go, the TLS
//! configuration) and makes attempts. An attempt resolves a host name
//! itself (see `resolve`) and hands tokio-postgres both the name (`host`,
//! for TLS verification and SNI) and one address (`hostaddr`, so that
//! tokio-postgres never calls the C resolver), trying each address in turn.
//! A unix socket never uses TLS, as libpq ignores sslmode there.
//!
//! A successful login spawns a task on the tokio runtime that drives the
//! connection and forwards every notification (LISTEN/NOTIFY) to an
//! unbounded channel. The task ends when the connection closes: dropping
//! the [`Connected::client`] closes it (and the channel reports the end
//! with `None`). Dropping an attempt before it finishes closes its socket;
//! nothing is left behind.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{AsyncMessage, Client, Notification};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::endpoint::Endpoint;
use super::error::{ConnectError, ErrorKind};
use super::resolve;
use super::tls;
use crate::settings::{DatabaseSettings, SslMode};

/// An attempt may take this long when `OPTIONS.connect_timeout` is not set
/// (libpq would wait forever; a silent firewall must not stall the start).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// libpq's floor for `connect_timeout`.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A logged-in session.
pub struct Connected {
    pub client: Client,
    /// Every notification of this session, in order; `recv()` gives `None`
    /// once the connection has ended.
    pub notifications: mpsc::UnboundedReceiver<Notification>,
}

/// Log in once to the configured database, as `application_name` (shown in
/// `pg_stat_activity`). The attempt takes at most `OPTIONS.connect_timeout`
/// (at least 2 s, as libpq), or 10 s when that is not set.
pub async fn connect(
    db: &DatabaseSettings,
    application_name: &str,
) -> Result<Connected, ConnectError> {
    let connector = Connector::new(db)?;
    let limit = connector.attempt_timeout();
    connector.attempt(application_name, limit).await
}

/// The settings turned into what every attempt needs.
pub struct Connector {
    db: DatabaseSettings,
    endpoint: Endpoint,
    tls: MakeRustlsConnect,
}

impl Connector {
    /// Fails (kind `Settings`) when the TLS settings cannot work.
    pub fn new(db: &DatabaseSettings) -> Result<Connector, ConnectError> {
        let endpoint = Endpoint::from_settings(db);
        let tls = tls::connector(db)
            .map_err(|error| ConnectError::new(ErrorKind::Settings, &endpoint, None, error.0))?;
        Ok(Connector {
            db: db.clone(),
            endpoint,
            tls,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How long one attempt may take, from `OPTIONS.connect_timeout`.
    pub fn attempt_timeout(&self) -> Duration {
        match self.db.connect_timeout.as_ref().map(|t| t.value) {
            Some(0) | None => DEFAULT_ATTEMPT_TIMEOUT,
            Some(seconds) => Duration::from_secs(seconds).max(MIN_CONNECT_TIMEOUT),
        }
    }

    /// One login, within `limit` in all (name resolution included).
    pub async fn attempt(
        &self,
        application_name: &str,
        limit: Duration,
    ) -> Result<Connected, ConnectError> {
        let password = self.db.password.as_ref().map(|p| p.value.expose());
        let attempt = self.attempt_unbounded(application_name, limit);
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result.map_err(|error| error.scrubbed(password)),
            Err(_) => Err(ConnectError::new(
                ErrorKind::Unavailable,
                &self.endpoint,
                None,
                format!("no answer within {:.1}s", limit.as_secs_f64()),
            )),
        }
    }

    async fn attempt_unbounded(
        &self,
        application_name: &str,
        limit: Duration,
    ) -> Result<Connected, ConnectError> {
        let mut config = self.base_config(application_name, limit);
        match &self.endpoint {
            Endpoint::Socket { dir, .. } => {
                // libpq ignores sslmode on a unix socket; the server offers no TLS there.
                config.host_path(dir).ssl_mode(PgSslMode::Disable);
                self.login(&config, &self.endpoint.to_string()).await
            }
            Endpoint::Address { ip, .. } => {
                config.host(ip.to_string()).hostaddr(*ip);
                self.login(&config, &self.endpoint.to_string()).await
            }
            Endpoint::Name { name, port } => {
                let addresses = resolve::resolve(name, resolve::LOOKUP_LIMIT.min(limit))
                    .await
                    .map_err(|why| {
                        ConnectError::new(
                            ErrorKind::NameNotResolved,
                            &self.endpoint,
                            None,
                            format!("the host name {name} could not be resolved: {why}"),
                        )
                    })?;
                self.login_any(&config, name, *port, &addresses).await
            }
        }
    }

    /// Try each address of a name; the most telling failure is reported (a
    /// server's answer over "connection refused" from another address).
    async fn login_any(
        &self,
        config: &tokio_postgres::Config,
        name: &str,
        port: u16,
        addresses: &[IpAddr],
    ) -> Result<Connected, ConnectError> {
        let mut best: Option<ConnectError> = None;
        for ip in addresses {
            let mut config = config.clone();
            config.host(name).hostaddr(*ip);
            let target = format!("{name}:{port} ({ip})");
            match self.login(&config, &target).await {
                Ok(connected) => return Ok(connected),
                Err(error) => {
                    let replace = match &best {
                        None => true,
                        Some(previous) => rank(&error) > rank(previous),
                    };
                    if replace {
                        best = Some(error);
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| {
            ConnectError::new(
                ErrorKind::NameNotResolved,
                &self.endpoint,
                None,
                format!("the host name {name} has no addresses"),
            )
        }))
    }

    fn base_config(&self, application_name: &str, limit: Duration) -> tokio_postgres::Config {
        let db = &self.db;
        let mut config = tokio_postgres::Config::new();
        config
            .dbname(&db.name.value)
            .user(&db.user.value)
            .port(db.port.value)
            .application_name(application_name)
            .connect_timeout(limit)
            .ssl_mode(match db.sslmode.value {
                SslMode::Disable => PgSslMode::Disable,
                // libpq's allow tries plain text first; trying TLS first
                // reaches the same servers, so allow is prefer here.
                SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
            });
        if let Some(password) = &db.password {
            config.password(password.value.expose());
        }
        config
    }

    async fn login(
        &self,
        config: &tokio_postgres::Config,
        target: &str,
    ) -> Result<Connected, ConnectError> {
        let password = self.db.password.as_ref().map(|p| p.value.expose());
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|error| ConnectError::from_postgres(&error, target, password))?;
        let (sender, notifications) = mpsc::unbounded_channel();
        tokio::spawn(drive(connection, sender));
        Ok(Connected {
            client,
            notifications,
        })
    }
}

/// Ranks failures by how much they tell: a server's refusal beats a name
/// that does not resolve, which beats silence.
fn rank(error: &ConnectError) -> u8 {
    match error.kind() {
        ErrorKind::NameNotResolved => 0,
        ErrorKind::Unavailable => 1,
        ErrorKind::Unexpected => 2,
        ErrorKind::MissingDatabase => 3,
        ErrorKind::AuthRejected | ErrorKind::Tls | ErrorKind::Settings => 4,
    }
}

/// Runs the connection until it closes, forwarding notifications. Notices
/// (warnings the server sends on its own) go to the debug log.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    sender: mpsc::UnboundedSender<Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        match message {
            Ok(AsyncMessage::Notification(notification)) => {
                // The receiver may be gone while the client is still in use.
                let _ = sender.send(notification);
            }
            Ok(AsyncMessage::Notice(notice)) => {
                tracing::debug!("PostgreSQL notice: {}", notice.message());
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!("PostgreSQL connection ended: {error}");
                break;
            }
        }
    }
}

/// Callers spawn these futures and run them on multi-threaded runtimes.
#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send() {
        let db = crate::postgres::endpoint::tests::settings(Some("db"));
        let policy = crate::postgres::WaitPolicy {
            timeout: Duration::ZERO,
            missing_database_grace: Duration::ZERO,
            log_interval: Duration::ZERO,
        };
        assert_send(&connect(&db, "x"));
        assert_send(&crate::postgres::wait_for_postgres(&db, &policy));
    }
}
