//! Migrations, collectstatic and first-run setup: exactly once, and free when there is nothing to do.

pub mod fingerprint;
pub mod python_env;
