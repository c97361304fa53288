//! `pulp-entrypoint probe`: readiness and liveness checks for Kubernetes (replaces readyz.py).

use std::time::Duration;

use crate::environment::Environment;
use crate::settings::PulpSettings;

/// `probe ready|live api|content|worker`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// ready or live
    pub kind: String,
    /// api, content or worker
    pub role: String,
    /// Give up after this long
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// The status path to ask (readyz.py's argument)
    #[arg(long)]
    pub path: Option<String>,
}

/// Run the probe; returns the exit code (0 ready/alive).
pub async fn run(args: &ProbeArgs, settings: &PulpSettings, env: &Environment) -> i32 {
    let _ = (args, settings, env);
    crate::exit::INTERNAL
}
