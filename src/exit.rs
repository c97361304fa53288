//! The entrypoint's documented exit codes.
//!
//! A supervised child's own exit code is passed on unchanged, and a child
//! killed by signal N gives 128+N, as a shell does. The entrypoint's own
//! failures use the sysexits.h numbers below, which pulpcore's commands do
//! not use, so a failure of the entrypoint can be told from one of Pulp.

/// Everything went well (or the child exited 0).
pub const SUCCESS: i32 = 0;
/// Legacy `wait_on_postgres.py` / `wait_on_database_migrations.sh`: any failure.
pub const LEGACY_FAILURE: i32 = 1;
/// `status`: a service is not running; `probe`: not ready or not alive.
pub const NOT_RUNNING: i32 = 1;
/// The command line is wrong (unknown flag, removed role such as pulp-resource-manager).
pub const USAGE: i32 = 64;
/// PostgreSQL rejected a request in a way that will not fix itself
/// (the database does not exist after the grace period, an unexpected server error).
pub const DATABASE_ERROR: i32 = 65;
/// PostgreSQL was not reachable before the timeout.
pub const DATABASE_UNAVAILABLE: i32 = 69;
/// `status`: no `supervise` is running (same number as above: sysexits' EX_UNAVAILABLE).
pub const NO_SUPERVISOR: i32 = 69;
/// A bug in the entrypoint.
pub const INTERNAL: i32 = 70;
/// The operating system refused something (fork, signal setup, a directory).
pub const OS_ERROR: i32 = 71;
/// PostgreSQL refused the login: wrong password, no pg_hba.conf entry, no CONNECT privilege.
pub const DATABASE_AUTH: i32 = 77;
/// The configuration is invalid (settings file, entrypoint.toml, environment variable).
pub const CONFIG: i32 = 78;
/// A directory or the encryption key could not be created.
pub const CANNOT_CREATE: i32 = 73;
/// stdout could not be written (`config`, `status`, `--help`): its reader
/// went away (EPIPE) or the disk is full (ENOSPC). sysexits' EX_IOERR.
pub const OUTPUT: i32 = 74;
/// A start-phase step failed: `pulpcore-manager migrate`/`collectstatic`/the admin
/// password, or the wait for another replica's migrations timed out.
pub const START_PHASE: i32 = 75;
/// The command exists but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// The child (or the entrypoint while waiting) ended by signal N: 128 + N.
pub const SIGNAL_BASE: i32 = 128;
