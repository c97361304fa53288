//! What the entrypoint records in Pulp's database, and the lock that makes
//! each step run once.
//!
//! One small table, `pulp_entrypoint_state`, keyed by step: the code
//! fingerprint the last successful `migrate` ran with and how many rows
//! `django_migrations` had then; an HMAC (keyed with the field encryption
//! key, which the database does not hold) of the admin password file or
//! `PULP_ADMIN_PASSWORD` last applied. Django ignores tables it does not own.
//!
//! The lock is a transaction-level advisory lock, held by a transaction left
//! open on a dedicated connection until the work is done. Unlike a session
//! lock it works through a pooler in transaction mode (PgBouncer): an open
//! transaction keeps its server connection, and ending it frees the lock
//! wherever it was taken. If the holder dies (SIGKILL, node loss) its
//! transaction ends with its connection (PgBouncer closes the server
//! connection of a client that goes away mid-transaction), PostgreSQL frees
//! the lock, and the next waiter's try gets it.
//!
//! Every query is sent as one unnamed statement (`query_typed`, or the
//! simple protocol): a named prepared statement, which tokio-postgres' plain
//! `query` makes, may be prepared on one server connection of a pooler and
//! executed on another ("prepared statement does not exist").

use tokio_postgres::Client;
use tokio_postgres::types::Type;

/// `pg_try_advisory_xact_lock(CLASS, OBJECT)`: "PULP" and 1, shown by `pg_locks` as classid/objid.
pub const LOCK_CLASS: i32 = 0x5055_4c50;
pub const LOCK_OBJECT: i32 = 1;
/// Sent after a step finished, so waiting replicas look again at once.
pub const CHANNEL: &str = "pulp_entrypoint_state";

pub const MIGRATIONS_KEY: &str = "migrations";
pub const ADMIN_PASSWORD_FILE_KEY: &str = "admin-password-file";
pub const ADMIN_PASSWORD_ENV_KEY: &str = "admin-password-env";

/// A recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub value: String,
    pub applied_count: Option<i64>,
    pub updated_by: String,
    pub age_seconds: i64,
}

pub async fn ensure_table(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pulp_entrypoint_state (
                 key text PRIMARY KEY,
                 value text NOT NULL,
                 applied_count bigint,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 updated_by text NOT NULL
             )",
        )
        .await
}

/// The record for `key`; `None` when there is none or the table does not exist yet.
pub async fn read(client: &Client, key: &str) -> Result<Option<Record>, tokio_postgres::Error> {
    if !table_exists(client, "pulp_entrypoint_state").await? {
        return Ok(None);
    }
    let row = client
        .query_typed_opt(
            "SELECT value, applied_count, updated_by,
                    extract(epoch FROM now() - updated_at)::bigint
             FROM pulp_entrypoint_state WHERE key = $1",
            &[(&key, Type::TEXT)],
        )
        .await?;
    Ok(row.map(|row| Record {
        value: row.get(0),
        applied_count: row.get(1),
        updated_by: row.get(2),
        age_seconds: row.get(3),
    }))
}

pub async fn write(
    client: &Client,
    key: &str,
    value: &str,
    applied_count: Option<i64>,
    updated_by: &str,
) -> Result<(), tokio_postgres::Error> {
    ensure_table(client).await?;
    client
        .query_typed(
            "INSERT INTO pulp_entrypoint_state (key, value, applied_count, updated_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET value = $2, applied_count = $3,
                 updated_at = now(), updated_by = $4",
            &[
                (&key, Type::TEXT),
                (&value, Type::TEXT),
                (&applied_count, Type::INT8),
                (&updated_by, Type::TEXT),
            ],
        )
        .await?;
    client.batch_execute(&format!("NOTIFY {CHANNEL}")).await
}

/// Whether `table` exists (before Django or the entrypoint created it, it does not).
async fn table_exists(client: &Client, table: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_typed_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[(&table, Type::TEXT)],
        )
        .await?
        .get(0))
}

/// Rows in `django_migrations`, or `None` before Django created the table.
pub async fn applied_migrations(client: &Client) -> Result<Option<i64>, tokio_postgres::Error> {
    if !table_exists(client, "django_migrations").await? {
        return Ok(None);
    }
    Ok(Some(
        client
            .query_typed_one("SELECT count(*) FROM django_migrations", &[])
            .await?
            .get(0),
    ))
}

/// The `(app, name)` rows of `django_migrations`, or `None` before Django
/// created the table.
pub async fn applied_migration_rows(
    client: &Client,
) -> Result<Option<std::collections::HashSet<(String, String)>>, tokio_postgres::Error> {
    if !table_exists(client, "django_migrations").await? {
        return Ok(None);
    }
    let rows = client
        .query_typed("SELECT app, name FROM django_migrations", &[])
        .await?;
    Ok(Some(
        rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
    ))
}

/// Whether a user named `admin` exists (Django's default user table).
pub async fn admin_exists(client: &Client) -> Result<bool, tokio_postgres::Error> {
    if !table_exists(client, "auth_user").await? {
        return Ok(false);
    }
    Ok(client
        .query_typed_opt("SELECT 1 FROM auth_user WHERE username = 'admin'", &[])
        .await?
        .is_some())
}

/// `(name, pubkey_fingerprint)` of pulpcore's signing services named in
/// `names`; none before the table exists.
pub async fn signing_services(
    client: &Client,
    names: &[&str],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    if !table_exists(client, "core_signingservice").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query_typed(
            "SELECT name, pubkey_fingerprint FROM core_signingservice WHERE name = ANY($1)",
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Take the lock if it is free; true when this session now holds it, in
/// the transaction this opens, until [`release`].
///
/// The transaction runs nothing after taking the lock: a query in it would
/// hold a snapshot, and a migration's `CREATE INDEX CONCURRENTLY` waits for
/// the whole transaction of every backend that held one when it looked, so
/// it would wait for this transaction, which waits for the migration. Read
/// committed, so that no snapshot outlives a statement even where the
/// default isolation is higher; PostgreSQL's idle-in-transaction and
/// transaction timeouts (the latter from PostgreSQL 17) are turned off for
/// it, as migrations may take longer than they allow.
pub async fn try_lock(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let taken = client
        .simple_query(&format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED;
             SET LOCAL idle_in_transaction_session_timeout = 0;
             SELECT set_config('transaction_timeout', '0', true)
                 WHERE current_setting('transaction_timeout', true) IS NOT NULL;
             SELECT pg_try_advisory_xact_lock({LOCK_CLASS}, {LOCK_OBJECT})"
        ))
        .await;
    let taken = match taken {
        Ok(messages) => messages.iter().rev().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
            _ => None,
        }),
        Err(error) => {
            // Leave no transaction open behind an error (an aborted one
            // refuses everything until it ends).
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error);
        }
    };
    if taken != Some(true) {
        // Not ours: end the transaction, so that its server connection goes
        // back to a pooler's pool while we wait.
        client.batch_execute("ROLLBACK").await?;
    }
    Ok(taken == Some(true))
}

/// End the lock's transaction, which frees the lock (nothing was written in it).
pub async fn release(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("ROLLBACK").await
}

/// Who holds the lock (advisory locks are per database: this one's):
/// application name, client address and seconds held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub application_name: String,
    pub client: String,
    pub held_seconds: i64,
}

pub async fn holder(client: &Client) -> Result<Option<Holder>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT coalesce(a.application_name, ''),
                    coalesce(host(a.client_addr), 'local'),
                    extract(epoch FROM now() - coalesce(a.state_change, a.backend_start))::bigint
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 2
             LIMIT 1",
            &[
                (&(LOCK_CLASS as u32), Type::OID),
                (&(LOCK_OBJECT as u32), Type::OID),
            ],
        )
        .await?;
    Ok(row.map(|row| Holder {
        application_name: row.get(0),
        client: row.get(1),
        held_seconds: row.get(2),
    }))
}
