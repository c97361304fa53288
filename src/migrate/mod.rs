//! Migrations, collectstatic and first-run setup (admin password, signing services): exactly once, and free when there is nothing to do.

pub mod coordinator;
pub mod setup;
pub mod signing;
pub mod state;
pub mod static_root;
