//! Helpers shared by the integration tests. Each test binary uses only some of them.
#![allow(dead_code)]

pub mod command;
pub mod pg;
pub mod pulp;
pub mod status_file;
