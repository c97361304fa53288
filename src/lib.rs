//! pulp-entrypoint: the container entrypoint for Pulp.

pub mod environment;
pub mod exit;
pub mod pid1;
pub mod postgres;
pub mod settings;
pub mod sourced;
