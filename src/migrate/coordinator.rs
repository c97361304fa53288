//! Theory of operation: migrate, collectstatic, set the admin password and
//! add signing services once, however many replicas start together.
//!
//! 1. Decide without Python what is needed: migrations unless the recorded
//!    code fingerprint and `django_migrations` row count match now; the admin
//!    password when `PULP_DEFAULT_ADMIN_PASSWORD` is set and no admin exists,
//!    or when `/etc/pulp/pulp-admin-password` changed since it was applied;
//!    collectstatic (api only) unless STATIC_ROOT has a marker for this code;
//!    with `PULP_SIGNING_KEY_FINGERPRINT`, each signing service (of those whose
//!    script exists) that has no row in `core_signingservice`.
//!    Nothing needed: done, no Python started, no lock taken.
//! 2. Otherwise try for the advisory lock every second, in a transaction of
//!    its own on a connection of its own (`state::try_lock`), while a second
//!    connection LISTENs: a notification (or the next try) makes the waiter
//!    look again, and if another replica has done the work it goes on
//!    without the lock. Every few seconds it logs who holds the lock and for
//!    how long. A dead holder's transaction ends with its connection,
//!    PostgreSQL frees the lock, and a waiter's next try takes it.
//! 3. Holding the lock, look again (the previous holder may have done it),
//!    run what is still needed, record it, NOTIFY, release. Every query
//!    runs on the second connection: the lock's transaction runs nothing
//!    after taking the lock (see `state::try_lock`).
//!
//! Through a connection pooler (PgBouncer; `postgres::detect_route` tells,
//! from the process id the login announced) the same lock works in session
//! and transaction pooling, since an open transaction keeps its server
//! connection. LISTEN does not survive transaction pooling (the server
//! connection that listens goes back to the pool), so with a pooler nothing
//! LISTENs and waiters rely on their polls. Statement pooling refuses the
//! lock's transaction (and Django's): one line says so, with the fix.
//!
//! Migrations applied by someone else (a Job running plain `pulpcore-manager
//! migrate`) count as well: when the record does not match, the migration
//! files of the installed apps (`installed::migrations`) are compared with
//! the rows of `django_migrations`; when every one is there, that is
//! recorded and nothing runs. A replica waiting with `--no-migrate` polls
//! the row count (a cheap query, every 250 ms) and compares again when it
//! changed, so it goes on within a poll of the last migration's commit.
//!
//! When the installed migrations cannot be read exactly the doubt goes to
//! Django: the replica runs `migrate` (a no-op when all is applied) under
//! the lock, or with `--no-migrate` asks `migrate --check --skip-checks`
//! (without the system checks, whose failures would read as "pending")
//! each time the row count has changed and settled. It never assumes "done".

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::signing::{self, Signing};
use super::state::{self, Record};
use crate::installed::fingerprint::{self, Fingerprint};
use crate::installed::migrations::{self as installed_migrations, InstalledApps};
use crate::postgres::{self, Route};
use crate::sourced::Secret;

/// Written into STATIC_ROOT after collectstatic, holding the static-files fingerprint.
pub const STATIC_MARKER: &str = ".pulp-entrypoint-collectstatic";

/// How often a `--no-migrate` waiter counts `django_migrations` rows: a
/// migration applied by anyone is noticed within this.
const ROWS_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How soon a waiter notices that a dead holder's lock is free.
const LOCK_RETRY_INTERVAL: Duration = Duration::from_secs(1);
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A database session: the client and the notifications its connection receives.
pub struct Session {
    pub client: Client,
    pub notifications: UnboundedReceiver<tokio_postgres::Notification>,
}

/// A notification arrived; `None` from the channel means the connection ended.
fn notified(notification: Option<tokio_postgres::Notification>) -> Result<(), PrepareError> {
    notification.map(drop).ok_or_else(|| {
        PrepareError::Connect("lost the connection to PostgreSQL while waiting".into())
    })
}

/// Opens sessions to Pulp's database.
pub trait Connect {
    fn open(&self, purpose: &str) -> impl Future<Output = Result<Session, PrepareError>>;
}

/// Runs `pulpcore-manager` with arguments (and stdin from a file), returning
/// its exit code; and tells when the entrypoint is asked to stop, so that the
/// waits here end at once on SIGTERM (the shutdown future of mini-redis).
pub trait Manager {
    fn run(
        &mut self,
        args: &[&str],
        stdin: Option<std::fs::File>,
    ) -> impl Future<Output = Result<i32, PrepareError>>;

    /// Resolves with the signal number when a stop was requested. Cancel safe.
    fn terminated(&mut self) -> impl Future<Output = i32>;
}

/// What this start should take care of.
#[derive(Debug, Clone)]
pub struct Plan {
    /// False with `--no-migrate`: wait for someone else's migrations.
    pub migrate: bool,
    pub collectstatic: bool,
    pub admin_password: bool,
    /// Give up waiting for the lock or for migrations after this long.
    pub lock_timeout: Duration,
    /// Who this is, recorded in the state table ("pulp-api on host").
    pub who: String,
    pub package_roots: Vec<PathBuf>,
    /// The installed apps; their migrations are read only when needed.
    pub apps: InstalledApps,
    pub static_root: PathBuf,
    pub default_admin_password: Option<Secret>,
    pub admin_password_file: PathBuf,
    /// DB_ENCRYPTION_KEY, the HMAC key of what is recorded of a password.
    pub db_encryption_key: PathBuf,
    /// PULP_ADMIN_PASSWORD, which set_init_password.sh applies when neither
    /// PULP_DEFAULT_ADMIN_PASSWORD nor the file is there.
    pub env_admin_password: Option<Secret>,
    /// Signing services to have; `None` without a key fingerprint.
    pub signing: Option<Signing>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "database query failed during {step}: {}{hint}",
        postgres::describe_query_error(.source)
    )]
    Database {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
        /// What to do about it, with its leading "; ", or empty.
        hint: &'static str,
    },
    #[error("{0}")]
    Connect(String),
    #[error(
        "`pulpcore-manager {command}` failed with exit code {code} (its output is above); fix the cause and restart"
    )]
    StepFailed { command: String, code: i32 },
    #[error(
        "gave up after {waited}s waiting for {what}{holder}; raise --lock-timeout or check that replica"
    )]
    LockTimeout {
        what: &'static str,
        waited: u64,
        holder: String,
    },
    #[error("{path} could not be read: {reason}")]
    PasswordFile { path: PathBuf, reason: String },
    #[error(
        "DB_ENCRYPTION_KEY {path} could not be read ({reason}); it keys the record of the applied admin password: mount the key there"
    )]
    EncryptionKey { path: PathBuf, reason: String },
    #[error("could not write {path}: {reason}")]
    Marker { path: PathBuf, reason: String },
    #[error("{0}")]
    Spawn(String),
    #[error("{0}")]
    Setup(#[from] super::setup::SetupError),
    /// A stop was requested (signal number); not a failure of the setup.
    #[error("stopped by signal {0} during the start phase")]
    Stopped(i32),
}

fn db(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PrepareError {
    move |source| PrepareError::Database {
        step,
        source,
        hint: "",
    }
}

/// What is still to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Needs {
    migrate: bool,
    admin_password: Option<AdminPassword>,
    collectstatic: bool,
    /// Names of the signing services to add.
    signing: Vec<String>,
    /// Wanted signing services that exist with another key: not work to do
    /// (pulpcore's services are immutable), only worth a warning.
    signing_other_key: Vec<(String, String)>,
}

impl Needs {
    fn any(&self) -> bool {
        self.migrate
            || self.admin_password.is_some()
            || self.collectstatic
            || !self.signing.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AdminPassword {
    /// From PULP_DEFAULT_ADMIN_PASSWORD: only because no admin exists.
    Default,
    /// From the password file, whose content hash is recorded after.
    File { hash: String },
    /// From PULP_ADMIN_PASSWORD, whose hash is recorded after.
    Env { hash: String },
}

/// Run the whole coordination; each phase logs what it did and how long it took.
pub async fn prepare(
    connect: &impl Connect,
    manager: &mut impl Manager,
    plan: &Plan,
) -> Result<(), PrepareError> {
    let started = Instant::now();
    let (migrations, statics) =
        fingerprint::compute_both(&plan.package_roots, plan.apps.scope(), plan.collectstatic);
    if migrations.is_none() {
        warn!(
            "the installed migrations could not be found (no pulpcore-manager on PATH whose site-packages hold pulpcore/app/migrations): asking Django instead"
        );
    }
    let mut watch = connect.open("watch").await?;
    let route = postgres::detect_route(&watch.client)
        .await
        .map_err(db("asking for the backend's process id"))?;
    match &route {
        Route::Direct => watch
            .client
            .batch_execute(&format!("LISTEN {}", state::CHANNEL))
            .await
            .map_err(db("LISTEN"))?,
        Route::Pooler(pooler) => info!(
            "PostgreSQL is reached through a connection pooler such as PgBouncer (the login announced process {}, queries run in backend {}): the setup lock is held by a transaction of its own, which works with session and transaction pooling (not statement pooling), and waiting replicas poll every second instead of using LISTEN",
            pooler.announced_pid, pooler.backend_pid
        ),
        Route::Unknown(reason) => info!(
            "could not tell whether PostgreSQL is reached through a connection pooler ({reason}): waiting replicas poll every second instead of using LISTEN"
        ),
    }

    let check = Checker {
        plan,
        migrations: migrations.as_ref(),
        statics: statics.as_ref(),
    };
    // Without a fingerprint `needs.migrate` is always true: doubt never becomes "done".
    let mut needs = check.needs(&watch.client).await?;
    info!(
        phase = "check",
        duration_ms = started.elapsed().as_millis() as u64,
        migrate = needs.migrate,
        collectstatic = needs.collectstatic,
        admin_password = needs.admin_password.is_some(),
        signing_services = needs.signing.len(),
        "{}",
        if needs.any() {
            "work to do"
        } else {
            "database migrated and set up for this code: nothing to do"
        }
    );
    for (name, stored) in &needs.signing_other_key {
        warn!(
            "signing service '{name}' exists for key {stored}, not {}=`{}`: kept (signing services cannot change); to switch keys run `pulpcore-manager remove-signing-service {name}` or choose another name",
            signing::FINGERPRINT_ENV,
            plan.signing.as_ref().map_or("", |s| s.fingerprint.as_str()),
        );
    }
    if !needs.any() {
        return Ok(());
    }

    // --no-migrate: wait (without the lock) until someone else migrated.
    if needs.migrate && !plan.migrate {
        wait_for_migrations(&check, &mut watch, manager, plan).await?;
        needs = check.needs(&watch.client).await?;
        if !needs.any() {
            return Ok(());
        }
    }

    let lock_started = Instant::now();
    let Some(lock) = acquire_lock(connect, &check, &mut watch, manager, plan, &route).await? else {
        info!(
            phase = "lock",
            duration_ms = lock_started.elapsed().as_millis() as u64,
            "another replica did the work"
        );
        return Ok(());
    };
    info!(
        phase = "lock",
        duration_ms = lock_started.elapsed().as_millis() as u64,
        "holding the setup lock"
    );
    let result = run_under_lock(&check, &watch.client, manager, plan).await;
    // Closing the session would free it too; end the transaction to be prompt.
    let _ = state::release(&lock.client).await;
    result
}

/// Decides what is needed, from the database and the files.
struct Checker<'a> {
    plan: &'a Plan,
    migrations: Option<&'a Fingerprint>,
    statics: Option<&'a Fingerprint>,
}

impl Checker<'_> {
    async fn needs(&self, client: &Client) -> Result<Needs, PrepareError> {
        let (signing, signing_other_key) = self.signing_needed(client).await?;
        Ok(Needs {
            migrate: self.migrations_needed(client).await?,
            admin_password: self.admin_password_needed(client).await?,
            collectstatic: self.collectstatic_needed(),
            signing,
            signing_other_key,
        })
    }

    /// Missing services, and existing ones with another key.
    async fn signing_needed(
        &self,
        client: &Client,
    ) -> Result<(Vec<String>, Vec<(String, String)>), PrepareError> {
        let Some(wanted) = self
            .plan
            .signing
            .as_ref()
            .filter(|s| !s.services.is_empty())
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        let names: Vec<&str> = wanted.services.iter().map(|s| s.name.as_str()).collect();
        let existing = state::signing_services(client, &names)
            .await
            .map_err(db("looking for signing services"))?;
        Ok((
            signing::missing(wanted, &existing),
            signing::other_key(wanted, &existing),
        ))
    }

    /// Whether migrations are to be applied (or waited for); migrations
    /// found applied by someone else are recorded, so that the next start
    /// takes the short way.
    async fn migrations_needed(&self, client: &Client) -> Result<bool, PrepareError> {
        match self.migrations(client).await? {
            MigrationState::Recorded => Ok(false),
            MigrationState::Applied => {
                if let Some(print) = self.migrations {
                    info!("every migration of the installed apps is applied: recording it");
                    // Only a shortcut for later starts: a replica racing to
                    // create the table may lose, and that changes nothing.
                    if let Err(error) = record_migrations(client, print, self.plan).await {
                        info!(
                            "could not record the applied migrations ({error}); checking again next time"
                        );
                    }
                }
                Ok(false)
            }
            MigrationState::Pending { .. } | MigrationState::Unknown => Ok(true),
        }
    }

    async fn migrations(&self, client: &Client) -> Result<MigrationState, PrepareError> {
        if let Some(print) = self.migrations {
            let record = state::read(client, state::MIGRATIONS_KEY)
                .await
                .map_err(db("reading the migration state"))?;
            let applied = state::applied_migrations(client)
                .await
                .map_err(db("counting applied migrations"))?;
            if matches!(
                record,
                Some(Record { ref value, applied_count, .. })
                    if *value == print.hex && applied_count == applied
            ) {
                return Ok(MigrationState::Recorded);
            }
        }
        let Ok(apps) = self.plan.apps.with_migrations() else {
            return Ok(MigrationState::Unknown);
        };
        let rows = state::applied_migration_rows(client)
            .await
            .map_err(db("reading applied migrations"))?
            .unwrap_or_default();
        let missing = installed_migrations::unapplied(apps, &rows);
        if missing.is_empty() {
            Ok(MigrationState::Applied)
        } else {
            let total: usize = apps.iter().map(|app| app.migrations.len()).sum();
            Ok(MigrationState::Pending {
                missing,
                applied: rows.len().min(total),
            })
        }
    }

    async fn admin_password_needed(
        &self,
        client: &Client,
    ) -> Result<Option<AdminPassword>, PrepareError> {
        if !self.plan.admin_password {
            return Ok(None);
        }
        // set_init_password.sh's order: PULP_DEFAULT_ADMIN_PASSWORD (only
        // while there is no admin) hides the others; then the file; then
        // PULP_ADMIN_PASSWORD. The last two are applied when they change,
        // not at every start, so a password changed through the API stays.
        if self.plan.default_admin_password.is_some() {
            let exists = state::admin_exists(client)
                .await
                .map_err(db("looking for the admin user"))?;
            return Ok((!exists).then_some(AdminPassword::Default));
        }
        if let Some(content) = password_file(&self.plan.admin_password_file)? {
            let hash = self.digest(&content)?;
            return Ok(self
                .changed(client, state::ADMIN_PASSWORD_FILE_KEY, &hash)
                .await?
                .then_some(AdminPassword::File { hash }));
        }
        if let Some(password) = &self.plan.env_admin_password {
            let hash = self.digest(password.expose().as_bytes())?;
            return Ok(self
                .changed(client, state::ADMIN_PASSWORD_ENV_KEY, &hash)
                .await?
                .then_some(AdminPassword::Env { hash }));
        }
        Ok(None)
    }

    /// What is recorded of an applied password: an HMAC keyed with the
    /// database field encryption key, which the database does not hold, so
    /// reading `pulp_entrypoint_state` gives nothing to brute-force faster
    /// than Django's own salted hash.
    fn digest(&self, password: &[u8]) -> Result<String, PrepareError> {
        let path = &self.plan.db_encryption_key;
        let key = std::fs::read(path).map_err(|error| PrepareError::EncryptionKey {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        // HMAC takes keys of any length; the error cannot happen.
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).map_err(|error| {
            PrepareError::EncryptionKey {
                path: path.clone(),
                reason: error.to_string(),
            }
        })?;
        mac.update(b"pulp-entrypoint admin password\0");
        mac.update(password);
        Ok(format!("hmac-sha256:{}", hex(&mac.finalize().into_bytes())))
    }

    /// Whether the admin password source recorded under `key` changed.
    async fn changed(&self, client: &Client, key: &str, hash: &str) -> Result<bool, PrepareError> {
        let record = state::read(client, key)
            .await
            .map_err(db("reading the admin password state"))?;
        Ok(record.is_none_or(|record| record.value != hash))
    }

    fn collectstatic_needed(&self) -> bool {
        if !self.plan.collectstatic {
            return false;
        }
        let marker = std::fs::read_to_string(self.plan.static_root.join(STATIC_MARKER));
        match (self.statics, marker) {
            (Some(print), Ok(text)) => text.trim() != print.hex,
            _ => true,
        }
    }
}

/// Where the migrations of the installed code stand.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MigrationState {
    /// The entrypoint's record matches this code and the rows.
    Recorded,
    /// Every migration of the installed apps has its row, whoever applied it.
    Applied,
    /// Migrations without a row (`app.name`).
    Pending {
        missing: Vec<String>,
        applied: usize,
    },
    /// The installed migrations could not be read: only Django can tell.
    Unknown,
}

/// The password file's content, or `None` when there is no such file.
fn password_file(path: &Path) -> Result<Option<Vec<u8>>, PrepareError> {
    match std::fs::read(path) {
        Ok(content) => Ok(Some(content)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(PrepareError::PasswordFile {
            path: path.to_path_buf(),
            reason: error.to_string(),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `migrate --check`: exit 0 means nothing is left to apply. Without the
/// system checks, whose failures (a missing upload directory) exit 1 too.
async fn ask_django_check(manager: &mut impl Manager) -> Result<bool, PrepareError> {
    let started = Instant::now();
    let code = manager
        .run(&["migrate", "--check", "--skip-checks"], None)
        .await?;
    info!(
        phase = "migrate-check",
        duration_ms = started.elapsed().as_millis() as u64,
        "Django says {}",
        if code == 0 {
            "every migration is applied"
        } else {
            "migrations are pending"
        }
    );
    Ok(code == 0)
}

async fn record_migrations(
    client: &Client,
    print: &Fingerprint,
    plan: &Plan,
) -> Result<(), PrepareError> {
    let applied = state::applied_migrations(client)
        .await
        .map_err(db("counting applied migrations"))?;
    state::write(
        client,
        state::MIGRATIONS_KEY,
        &print.hex,
        applied,
        &plan.who,
    )
    .await
    .map_err(db("recording the migration state"))
}

/// `--no-migrate`: wait until every migration is applied, by anyone.
///
/// The row count of `django_migrations` is polled; when it changed (or a
/// replica notified), the installed migrations are compared with the rows.
/// When they cannot be read, Django is asked once the count has settled
/// (unchanged for one poll) at a value it was not asked about.
async fn wait_for_migrations(
    check: &Checker<'_>,
    watch: &mut Session,
    manager: &mut impl Manager,
    plan: &Plan,
) -> Result<(), PrepareError> {
    let started = Instant::now();
    let deadline = tokio::time::sleep(plan.lock_timeout);
    tokio::pin!(deadline);
    let mut poll = tokio::time::interval(ROWS_POLL_INTERVAL);
    let mut log = tokio::time::interval(LOG_INTERVAL);
    log.tick().await;
    // `None`: not counted yet; the first poll always compares.
    let mut last_count: Option<Option<i64>> = None;
    let mut asked_django_at: Option<Option<i64>> = None;
    let mut progress = String::from("nothing applied yet");
    loop {
        tokio::select! {
            signal = manager.terminated() => return Err(PrepareError::Stopped(signal)),
            notification = watch.notifications.recv() => {
                notified(notification)?;
                last_count = None;
            }
            _ = poll.tick() => {}
            _ = log.tick() => {
                info!(
                    "waiting for migrations to be applied by another process (--no-migrate): {progress}, {}s so far",
                    started.elapsed().as_secs()
                );
                continue;
            }
            _ = &mut deadline => {
                return Err(PrepareError::LockTimeout {
                    what: "migrations (--no-migrate)",
                    waited: started.elapsed().as_secs(),
                    holder: format!(" ({progress})"),
                });
            }
        }
        let count = state::applied_migrations(&watch.client)
            .await
            .map_err(db("counting applied migrations"))?;
        let changed = last_count != Some(count);
        last_count = Some(count);
        let done = match check.migrations(&watch.client).await? {
            MigrationState::Recorded | MigrationState::Applied => true,
            MigrationState::Pending { missing, applied } => {
                progress = pending_summary(&missing, applied);
                false
            }
            MigrationState::Unknown if !changed && asked_django_at != Some(count) => {
                asked_django_at = Some(count);
                let applied = ask_django_check(manager).await?;
                if applied && let Some(print) = check.migrations {
                    record_migrations(&watch.client, print, plan).await?;
                }
                progress = format!(
                    "{} rows in django_migrations, Django says migrations are pending",
                    count.unwrap_or(0)
                );
                applied
            }
            MigrationState::Unknown => false,
        };
        if done {
            info!(
                phase = "wait-migrations",
                duration_ms = started.elapsed().as_millis() as u64,
                "migrations applied"
            );
            return Ok(());
        }
    }
}

/// "3 of 99 pending (core.0141_x, core.0142_y, file.0017_z)".
fn pending_summary(missing: &[String], applied: usize) -> String {
    const SHOWN: usize = 3;
    let mut names = missing[..missing.len().min(SHOWN)].join(", ");
    if missing.len() > SHOWN {
        names.push_str(", ...");
    }
    format!(
        "{} of {} pending ({names})",
        missing.len(),
        missing.len() + applied
    )
}

/// Wait for the lock, or for another replica to finish the work (`None`).
///
/// The lock is tried, not waited for in PostgreSQL: a session blocked in
/// `pg_advisory_lock` holds a snapshot, and pulpcore's migrations that
/// `CREATE INDEX CONCURRENTLY` wait for every such snapshot to go away, so a
/// blocked waiter would deadlock the migration it waits for.
async fn acquire_lock(
    connect: &impl Connect,
    check: &Checker<'_>,
    watch: &mut Session,
    manager: &mut impl Manager,
    plan: &Plan,
    route: &Route,
) -> Result<Option<Session>, PrepareError> {
    let lock = connect.open("lock").await?;
    let started = Instant::now();
    let deadline = tokio::time::sleep(plan.lock_timeout);
    tokio::pin!(deadline);
    let mut retry = tokio::time::interval(LOCK_RETRY_INTERVAL);
    retry.tick().await;
    let mut log = tokio::time::interval(LOG_INTERVAL);
    log.tick().await;
    loop {
        if state::try_lock(&lock.client)
            .await
            .map_err(|source| lock_failed(source, route))?
        {
            return Ok(Some(lock));
        }
        tokio::select! {
            signal = manager.terminated() => return Err(PrepareError::Stopped(signal)),
            notification = watch.notifications.recv() => notified(notification)?,
            _ = retry.tick() => {}
            _ = log.tick() => {
                let holder = describe_holder(&watch.client).await;
                info!("waiting for the setup lock{holder}, {}s so far", started.elapsed().as_secs());
                continue;
            }
            _ = &mut deadline => {
                return Err(PrepareError::LockTimeout {
                    what: "the setup lock",
                    waited: started.elapsed().as_secs(),
                    holder: describe_holder(&watch.client).await,
                });
            }
        }
        if !check.needs(&watch.client).await?.any() {
            return Ok(None);
        }
    }
}

/// The lock's transaction failed. Behind a pooler that is most likely
/// statement pooling, which refuses transactions (its message says so).
fn lock_failed(source: tokio_postgres::Error, route: &Route) -> PrepareError {
    PrepareError::Database {
        step: "taking the setup lock",
        source,
        hint: match route {
            Route::Direct => "",
            Route::Pooler(_) | Route::Unknown(_) => {
                "; the setup lock needs a transaction, which a connection pooler in statement mode refuses (so does Django's migrate): give Pulp's database a pool in transaction or session mode, or point DATABASES at PostgreSQL itself"
            }
        },
    }
}

async fn describe_holder(client: &Client) -> String {
    match state::holder(client).await {
        Ok(Some(holder)) => format!(
            " held by '{}' from {} for {}s",
            holder.application_name, holder.client, holder.held_seconds
        ),
        _ => String::new(),
    }
}

async fn run_under_lock(
    check: &Checker<'_>,
    client: &Client,
    manager: &mut impl Manager,
    plan: &Plan,
) -> Result<(), PrepareError> {
    state::ensure_table(client)
        .await
        .map_err(db("creating pulp_entrypoint_state"))?;
    // The previous holder may have done part of it: look again.
    let needs = check.needs(client).await?;
    if needs.migrate {
        if plan.migrate {
            timed(manager, "migrate", &["migrate", "--noinput"], None).await?;
            if let Some(print) = check.migrations {
                record_migrations(client, print, plan).await?;
            }
        } else {
            // --no-migrate and migrations appeared pending again: someone else's job.
            warn!("migrations are pending but --no-migrate is set: not applying them");
        }
    }
    if needs.collectstatic {
        timed(
            manager,
            "collectstatic",
            &["collectstatic", "--noinput"],
            None,
        )
        .await?;
        if let Some(print) = check.statics {
            let marker = plan.static_root.join(STATIC_MARKER);
            std::fs::write(&marker, &print.hex).map_err(|error| PrepareError::Marker {
                path: marker.clone(),
                reason: error.to_string(),
            })?;
        }
    }
    match needs.admin_password {
        Some(AdminPassword::Default) => {
            if let Some(password) = &plan.default_admin_password {
                set_admin_password(manager, password.expose().as_bytes()).await?;
            }
        }
        Some(AdminPassword::File { hash }) => {
            let content = std::fs::read(&plan.admin_password_file).map_err(|error| {
                PrepareError::PasswordFile {
                    path: plan.admin_password_file.clone(),
                    reason: error.to_string(),
                }
            })?;
            // As `$(cat file)` in set_init_password.sh: every trailing newline goes.
            let end = content
                .iter()
                .rposition(|b| *b != b'\n')
                .map_or(0, |i| i + 1);
            set_admin_password(manager, &content[..end]).await?;
            state::write(
                client,
                state::ADMIN_PASSWORD_FILE_KEY,
                &hash,
                None,
                &plan.who,
            )
            .await
            .map_err(db("recording the admin password state"))?;
        }
        Some(AdminPassword::Env { hash }) => {
            if let Some(password) = &plan.env_admin_password {
                set_admin_password(manager, password.expose().as_bytes()).await?;
                state::write(
                    client,
                    state::ADMIN_PASSWORD_ENV_KEY,
                    &hash,
                    None,
                    &plan.who,
                )
                .await
                .map_err(db("recording the admin password state"))?;
            }
        }
        None => {}
    }
    // After migrate: add-signing-service needs pulpcore's tables.
    if let Some(wanted) = &plan.signing {
        for service in wanted
            .services
            .iter()
            .filter(|service| needs.signing.contains(&service.name))
        {
            let args = service.add_args(&wanted.fingerprint);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            timed(manager, "signing-service", &args, None).await?;
        }
    }
    state::write(client, "setup", "done", None, &plan.who)
        .await
        .map_err(db("recording the setup"))?;
    Ok(())
}

async fn timed(
    manager: &mut impl Manager,
    phase: &'static str,
    args: &[&str],
    stdin: Option<std::fs::File>,
) -> Result<(), PrepareError> {
    let started = Instant::now();
    info!("running pulpcore-manager {}", args.join(" "));
    let code = manager.run(args, stdin).await?;
    if code != 0 {
        return Err(PrepareError::StepFailed {
            command: args.join(" "),
            code,
        });
    }
    info!(
        phase,
        duration_ms = started.elapsed().as_millis() as u64,
        "pulpcore-manager {} done",
        args.join(" ")
    );
    Ok(())
}

/// The password reaches Python on stdin, from an unnamed file: never in any
/// process's argv or environment.
const SET_ADMIN_PASSWORD: &str = "\
import sys
from django.contrib.auth import get_user_model
password = sys.stdin.buffer.read().decode()
user, _ = get_user_model().objects.get_or_create(username='admin')
user.is_superuser = True
user.is_staff = True
user.set_password(password)
user.save()
print('admin password set')";

async fn set_admin_password(
    manager: &mut impl Manager,
    password: &[u8],
) -> Result<(), PrepareError> {
    use std::io::{Seek, Write};
    let spawn = |error: std::io::Error| {
        PrepareError::Spawn(format!("cannot pass the admin password: {error}"))
    };
    let mut file = tempfile::tempfile().map_err(spawn)?;
    file.write_all(password).map_err(spawn)?;
    file.rewind().map_err(spawn)?;
    timed(
        manager,
        "admin-password",
        &["shell", "-c", SET_ADMIN_PASSWORD],
        Some(file),
    )
    .await
}
