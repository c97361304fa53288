//! pulp-entrypoint: the container entrypoint for Pulp.
//!
//! `app` is the whole program; the other modules each do one job:
//! `cli` and `options` turn argv, environment and entrypoint.toml into
//! validated settings, `settings` reads Pulp's own settings without Python,
//! `postgres` waits for the database, `roles` builds the server command lines,
//! and `pid1` supervises the child as a proper init.

pub mod app;
pub mod cli;
pub mod duration;
pub mod environment;
pub mod exit;
pub mod installed;
pub mod logging;
pub mod migrate;
pub mod options;
pub mod pid1;
pub mod postgres;
pub mod prepare;
pub mod probe;
pub mod role_policy;
pub mod roles;
pub mod settings;
pub mod sourced;
pub mod supervise;
