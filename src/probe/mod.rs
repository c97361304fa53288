//! `pulp-entrypoint probe`: readiness and liveness checks for Kubernetes (replaces readyz.py).
//!
//! `probe ready|live api|content|worker` checks the server of that role in
//! this container, never guessing the role (the old script read
//! /proc/1/cmdline or environment variables). One short-lived process per
//! check, as Kubernetes runs exec probes, so it must be cheap: no Python, one
//! HTTP/1.0 request over a plain TCP socket (`http`), and a PostgreSQL login
//! only when the answer depends on it (`database`).
//!
//! | check         | what it asks                                                        |
//! |---------------|---------------------------------------------------------------------|
//! | ready api     | `GET {API_ROOT}api/v3/status/`: database, and Redis if CACHE_ENABLED |
//! | live api      | `GET {API_ROOT}api/v3/livez/` answers 200 (no database)              |
//! | ready content | `HEAD {CONTENT_PATH_PREFIX}` answers < 400                           |
//! | live content  | `HEAD /` gets any HTTP answer (no database)                          |
//! | ready worker  | each local pulpcore-worker's heartbeat row is within its TTL (one query) |
//! | live worker   | each local pulpcore-worker process exists, not zombie, not stopped  |
//!
//! The api and content app are reached on 127.0.0.1, then [::1], at 24817 /
//! 24816 (`--address` to change; `address`); `--path` replaces the path.
//! `--timeout` bounds the whole probe, database login included.
//!
//! Exit codes (readyz.py's 0, 3 and 4 kept):
//! - 0: ready / alive;
//! - 1: not ready / not alive: no answer, an answer that means no (HTTP
//!   status, stale or missing heartbeat, no worker process), or the timeout;
//! - 3: the database is not connected (pulpcore reports it, or answers 5xx
//!   and the probe cannot log in to PostgreSQL either);
//! - 4: Redis is expected (CACHE_ENABLED) but pulpcore reports it not connected;
//! - 64: bad arguments; 78: unreadable settings (before the probe runs).
//!
//! On failure one line says why, on stderr; on success nothing is printed.
//! The `readyz.py PATH` link runs `probe ready api --path PATH --legacy-readyz`:
//! as with the old script, one link serves both servers, so a PATH under
//! CONTENT_PATH_PREFIX asks the content app instead.

mod address;
mod api;
mod content;
mod database;
mod error;
mod heartbeat;
mod http;
mod process;
mod worker;

use std::path::Path;
use std::time::Duration;

use crate::settings::PulpSettings;

use address::Target;
pub use error::ProbeError;

/// Ready or alive.
pub const READY: i32 = 0;
/// Not ready, not alive, no answer, or out of time.
pub const NOT_READY: i32 = 1;
/// readyz.py's code: the database is not connected.
pub const NO_DATABASE: i32 = 3;
/// readyz.py's code: Redis expected but not connected.
pub const NO_REDIS: i32 = 4;

/// `probe ready|live api|content|worker`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// ready: may this container get work (Kubernetes readinessProbe)?
    /// live: is its server alive, or should it be restarted (livenessProbe)?
    #[arg(value_enum)]
    pub kind: ProbeKind,
    /// The role of the server in this container
    #[arg(value_enum)]
    pub role: ProbeRole,
    /// Give up, and fail, after this long in all
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub timeout: Duration,
    /// The HTTP path to ask (api, content) [default: api: {API_ROOT}api/v3/status/ (ready)
    /// or {API_ROOT}api/v3/livez/ (live); content: CONTENT_PATH_PREFIX (ready), / (live)]
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Where the server listens (api, content): IP:PORT or localhost:PORT
    /// [default: 127.0.0.1, then [::1], port 24817 (api) or 24816 (content)]
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// For the readyz.py link: a --path under CONTENT_PATH_PREFIX means the
    /// content app, as with readyz.py
    #[arg(long, hide = true)]
    pub legacy_readyz: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeKind {
    Ready,
    Live,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Ready => "ready",
            ProbeKind::Live => "live",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeRole {
    Api,
    Content,
    Worker,
}

impl ProbeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeRole::Api => "api",
            ProbeRole::Content => "content",
            ProbeRole::Worker => "worker",
        }
    }
}

/// Run the probe; returns the exit code (0 ready/alive).
pub async fn run(args: &ProbeArgs, settings: &PulpSettings) -> i32 {
    let role = effective_role(args, settings);
    let deadline = Deadline::after(args.timeout);
    let result = match plan(args.kind, role, args, settings) {
        Ok(check) => deadline
            .bound(
                || format!("probing {} {}", args.kind.as_str(), role.as_str()),
                execute(check, settings, deadline),
            )
            .await
            .and_then(|result| result),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => READY,
        Err(error) => {
            crate::logging::eprint_line(format_args!(
                "pulp-entrypoint probe {} {}: {error}",
                args.kind.as_str(),
                role.as_str()
            ));
            error.exit_code()
        }
    }
}

/// The readyz.py link serves both servers, as the old script did: a path
/// under CONTENT_PATH_PREFIX asks the content app, any other the api. The
/// path decides, not PID 1's command line or the environment.
fn effective_role(args: &ProbeArgs, settings: &PulpSettings) -> ProbeRole {
    let content_prefix = settings.content_path_prefix.value.as_str();
    match &args.path {
        Some(path) if args.legacy_readyz && path.starts_with(content_prefix) => ProbeRole::Content,
        _ => args.role,
    }
}

/// One check, its arguments validated.
#[derive(Debug, PartialEq)]
enum Check {
    Api {
        kind: ProbeKind,
        target: Target,
        path: String,
    },
    Content {
        kind: ProbeKind,
        target: Target,
        path: String,
    },
    Worker {
        kind: ProbeKind,
    },
}

fn plan(
    kind: ProbeKind,
    role: ProbeRole,
    args: &ProbeArgs,
    settings: &PulpSettings,
) -> Result<Check, ProbeError> {
    if args.timeout.is_zero() {
        return Err(ProbeError::Usage("--timeout must be more than 0".into()));
    }
    let target = |port| match &args.address {
        Some(text) => Target::parse(text).map_err(ProbeError::Usage),
        None => Ok(Target::loopback(port)),
    };
    let path = |default: String| match &args.path {
        Some(path) => checked_path(path),
        None => Ok(default),
    };
    match role {
        ProbeRole::Api => {
            let api_root = &settings.api_root.value;
            let endpoint = match kind {
                ProbeKind::Ready => "status",
                ProbeKind::Live => "livez",
            };
            Ok(Check::Api {
                kind,
                target: target(address::API_PORT)?,
                path: path(format!("{api_root}api/v3/{endpoint}/"))?,
            })
        }
        ProbeRole::Content => {
            let default = match kind {
                ProbeKind::Ready => settings.content_path_prefix.value.as_str(),
                ProbeKind::Live => content::LIVE_PATH,
            };
            Ok(Check::Content {
                kind,
                target: target(address::CONTENT_PORT)?,
                path: path(default.to_string())?,
            })
        }
        ProbeRole::Worker => {
            if args.path.is_some() || args.address.is_some() {
                return Err(ProbeError::Usage(
                    "--path and --address apply to api and content, not worker".into(),
                ));
            }
            Ok(Check::Worker { kind })
        }
    }
}

/// An absolute path with nothing that could break the request line.
fn checked_path(path: &str) -> Result<String, ProbeError> {
    if path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(path.to_string())
    } else {
        Err(ProbeError::Usage(format!(
            "--path {path:?} must start with / and hold no spaces, e.g. /pulp/api/v3/status/"
        )))
    }
}

async fn execute(
    check: Check,
    settings: &PulpSettings,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    let db = &settings.database;
    let proc_root = Path::new("/proc");
    match check {
        Check::Api {
            kind: ProbeKind::Ready,
            target,
            path,
        } => api::ready(&target, &path, settings.cache_enabled.value, db, deadline).await,
        Check::Api {
            kind: ProbeKind::Live,
            target,
            path,
        } => api::live(&target, &path, deadline).await,
        Check::Content {
            kind: ProbeKind::Ready,
            target,
            path,
        } => content::ready(&target, &path, db, deadline).await,
        Check::Content {
            kind: ProbeKind::Live,
            target,
            path,
        } => content::live(&target, &path, deadline).await,
        Check::Worker {
            kind: ProbeKind::Ready,
        } => {
            let template = &settings.worker_name_template.value;
            worker::ready(db, template, proc_root, deadline).await
        }
        Check::Worker {
            kind: ProbeKind::Live,
        } => worker::live(proc_root),
    }
}

/// The end of the probe's time (`--timeout`), shared by every step.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    limit: Duration,
}

impl Deadline {
    fn after(limit: Duration) -> Deadline {
        Deadline {
            at: tokio::time::Instant::now() + limit,
            limit,
        }
    }

    fn remaining(self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// Run `future` until the deadline; past it, fail saying what was going on.
    async fn bound<T>(
        self,
        doing: impl FnOnce() -> String,
        future: impl Future<Output = T>,
    ) -> Result<T, ProbeError> {
        tokio::time::timeout_at(self.at, future)
            .await
            .map_err(|_| ProbeError::Timeout {
                limit: self.limit,
                doing: doing(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        probe: ProbeArgs,
    }

    fn args(words: &[&str]) -> ProbeArgs {
        Cli::try_parse_from(std::iter::once("probe").chain(words.iter().copied()))
            .unwrap()
            .probe
    }

    /// Settings from the environment alone (pulpcore's defaults otherwise).
    fn settings(env: &[(&str, &str)]) -> PulpSettings {
        let file = tempfile::NamedTempFile::with_suffix(".py").unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let mut pairs: Vec<(String, String)> = vec![("PULP_SETTINGS".into(), path)];
        pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::settings::load(&crate::environment::Environment::from_pairs(pairs)).unwrap()
    }

    fn planned_with(words: &[&str], env: &[(&str, &str)]) -> Result<Check, ProbeError> {
        let args = args(words);
        let settings = settings(env);
        plan(
            args.kind,
            effective_role(&args, &settings),
            &args,
            &settings,
        )
    }

    fn planned(words: &[&str]) -> Result<Check, ProbeError> {
        planned_with(words, &[])
    }

    #[test]
    fn defaults_per_role() {
        assert_eq!(
            planned(&["ready", "api"]).unwrap(),
            Check::Api {
                kind: ProbeKind::Ready,
                target: Target::loopback(24817),
                path: "/pulp/api/v3/status/".into()
            }
        );
        assert!(matches!(
            planned(&["live", "api"]).unwrap(),
            Check::Api { path, .. } if path == "/pulp/api/v3/livez/"
        ));
        assert_eq!(
            planned(&["ready", "content"]).unwrap(),
            Check::Content {
                kind: ProbeKind::Ready,
                target: Target::loopback(24816),
                path: "/pulp/content/".into()
            }
        );
        assert!(matches!(
            planned(&["live", "content", "--address", "10.1.2.3:80"]).unwrap(),
            Check::Content { path, target, .. }
                if path == "/" && target.addresses == ["10.1.2.3:80".parse().unwrap()]
        ));
    }

    #[test]
    fn paths_follow_the_settings() {
        let env = [
            ("PULP_API_ROOT", "/api/pulp/"),
            ("PULP_CONTENT_PATH_PREFIX", "/c/"),
        ];
        assert!(matches!(
            planned_with(&["ready", "api"], &env).unwrap(),
            Check::Api { path, .. } if path == "/api/pulp/api/v3/status/"
        ));
        assert!(matches!(
            planned_with(&["ready", "content"], &env).unwrap(),
            Check::Content { path, .. } if path == "/c/"
        ));
    }

    #[test]
    fn usage_errors_exit_64() {
        for words in [
            &["ready", "worker", "--path", "/x/"][..],
            &["ready", "api", "--path", "pulp/api/v3/status/"],
            &["ready", "api", "--path", "/a b"],
            &["ready", "api", "--address", "pulp:24817"],
            &["ready", "api", "--timeout", "0"],
        ] {
            let error = planned(words).unwrap_err();
            assert_eq!(error.exit_code(), 64, "{words:?}: {error}");
        }
    }

    #[test]
    fn the_readyz_link_asks_the_content_app_for_a_content_path() {
        let legacy =
            |path: &str| planned(&["ready", "api", "--path", path, "--legacy-readyz"]).unwrap();
        assert!(matches!(legacy("/pulp/content/"), Check::Content { .. }));
        assert!(matches!(legacy("/pulp/api/v3/status/"), Check::Api { .. }));
        // Without the link's flag the role is the argument, whatever the path.
        assert!(matches!(
            planned(&["ready", "api", "--path", "/pulp/content/"]).unwrap(),
            Check::Api { .. }
        ));
    }
}
