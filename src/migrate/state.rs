//! What the entrypoint records in Pulp's database, and the lock that makes
//! each step run once.
//!
//! One small table, `pulp_entrypoint_state`, keyed by step: the code
//! fingerprint the last successful `migrate` ran with and how many rows
//! `django_migrations` had then; an HMAC (keyed with the field encryption
//! key, which the database does not hold) of the admin password file or
//! `PULP_ADMIN_PASSWORD` last applied. Django ignores tables it does not own.
//!
//! The lock is a session-level advisory lock on a dedicated connection: if
//! the holder dies (SIGKILL, node loss) PostgreSQL ends its session and frees
//! the lock, and the next waiter's `pg_try_advisory_lock` gets it.

use tokio_postgres::Client;

/// `pg_advisory_lock(CLASS, OBJECT)`: "PULP" and 1, shown by `pg_locks` as classid/objid.
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
        .query_opt(
            "SELECT value, applied_count, updated_by,
                    extract(epoch FROM now() - updated_at)::bigint
             FROM pulp_entrypoint_state WHERE key = $1",
            &[&key],
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
        .execute(
            "INSERT INTO pulp_entrypoint_state (key, value, applied_count, updated_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET value = $2, applied_count = $3,
                 updated_at = now(), updated_by = $4",
            &[&key, &value, &applied_count, &updated_by],
        )
        .await?;
    client.batch_execute(&format!("NOTIFY {CHANNEL}")).await
}

/// Whether `table` exists (before Django or the entrypoint created it, it does not).
async fn table_exists(client: &Client, table: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
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
            .query_one("SELECT count(*) FROM django_migrations", &[])
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
        .query("SELECT app, name FROM django_migrations", &[])
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
        .query_opt("SELECT 1 FROM auth_user WHERE username = 'admin'", &[])
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
        .query(
            "SELECT name, pubkey_fingerprint FROM core_signingservice WHERE name = ANY($1)",
            &[&names],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Take the lock if it is free; true when this session now holds it.
pub async fn try_lock(client: &Client) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_OBJECT],
        )
        .await?
        .get(0))
}

pub async fn unlock(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_CLASS, &LOCK_OBJECT],
        )
        .await
        .map(drop)
}

/// Who holds the lock: application name, client address and seconds held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub application_name: String,
    pub client: String,
    pub held_seconds: i64,
}

pub async fn holder(client: &Client) -> Result<Option<Holder>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT coalesce(a.application_name, ''),
                    coalesce(host(a.client_addr), 'local'),
                    extract(epoch FROM now() - coalesce(a.state_change, a.backend_start))::bigint
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 2
             LIMIT 1",
            &[&(LOCK_CLASS as u32), &(LOCK_OBJECT as u32)],
        )
        .await?;
    Ok(row.map(|row| Holder {
        application_name: row.get(0),
        client: row.get(1),
        held_seconds: row.get(2),
    }))
}
