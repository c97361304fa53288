//! Migrations, collectstatic and first-run setup: exactly once, and free when there is nothing to do.

pub mod coordinator;
pub mod fingerprint;
pub mod python_env;
pub mod setup;
pub mod state;
