//! Fault injection: what a PID 1 meets in real containers (stalled log
//! pipes, a full disk, hostile HTTP answers, signals at the worst moment,
//! replicas racing on a shared volume, a connection pooler in the way).
//! Each module reproduces one kind of fault and checks that the entrypoint
//! behaves: it never blocks, never panics, never leaks a secret.

mod http;
mod key;
mod output;
mod pgbouncer;
mod pid1;
#[path = "../support/mod.rs"]
mod support;
