//! The roles against real pulpcore and a real PostgreSQL: the API, the
//! content app and a worker started by the entrypoint show up in Pulp's
//! status, and stop cleanly on SIGTERM with their exit codes passed on.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::pg::PgCluster;
use support::pulp::{Site, free_port, online, wait_for_status};

const START_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn api_content_and_worker_start_and_appear_in_status() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "roles");
    let api_port = free_port();
    let content_port = free_port();

    let mut api = site
        .entrypoint()
        .args(["pulp-api", "--bind", &format!("127.0.0.1:{api_port}")])
        .spawn();
    let mut content = site
        .entrypoint()
        .args([
            "pulp-content",
            "--bind",
            &format!("127.0.0.1:{content_port}"),
        ])
        .spawn();
    let mut worker = site.entrypoint().arg("pulp-worker").spawn();

    let status = wait_for_status(api_port, START_LIMIT, "api, content app and worker", |s| {
        !online(s, "online_api_apps").is_empty()
            && !online(s, "online_content_apps").is_empty()
            && !online(s, "online_workers").is_empty()
    });
    assert_eq!(status["database_connection"]["connected"], true);
    // Names are unique per start: pulpcore's {pid}@{hostname} plus a random suffix.
    let api_name = &online(&status, "online_api_apps")[0];
    assert!(
        api_name.contains('@') && api_name.contains('-'),
        "{api_name}"
    );

    // The migrations ran once, through the entrypoint, before any server.
    let calls = site.calls();
    let migrate_runs = calls
        .iter()
        .filter(|call| call.contains("pulpcore-manager migrate"))
        .count();
    assert_eq!(migrate_runs, 1, "{calls:#?}");

    for running in [&mut api, &mut content, &mut worker] {
        running.signal(Signal::SIGTERM);
    }
    for (name, running) in [("api", api), ("content", content), ("worker", worker)] {
        let finished = running.wait_at_most(Duration::from_secs(40));
        assert_eq!(
            finished.code(),
            0,
            "{name} exit code; stderr:\n{}",
            finished.stderr
        );
    }
}
