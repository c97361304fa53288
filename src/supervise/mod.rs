//! `pulp-entrypoint supervise`: the api, the content app and N workers in one container.

use crate::environment::Environment;
use crate::options::Options;
use crate::pid1::Init;
use crate::settings::PulpSettings;

/// Run every service until stopped; returns the exit code.
pub async fn run(
    init: &mut Init,
    settings: &PulpSettings,
    options: &Options,
    env: &Environment,
) -> i32 {
    let _ = (init, settings, options, env);
    crate::exit::INTERNAL
}

/// `pulp-entrypoint status`: print what a running `supervise` reports; returns the exit code.
pub fn status(env: &Environment) -> i32 {
    let _ = env;
    crate::exit::INTERNAL
}
