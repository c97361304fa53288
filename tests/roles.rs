//! The roles against real pulpcore and a real PostgreSQL: the API, the
//! content app and a worker started by the entrypoint show up in Pulp's
//! status, and stop cleanly on SIGTERM with their exit codes passed on.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::command::Running;
use support::pg::PgCluster;
use support::pulp::{Site, free_port, online, wait_for_status};

const START_LIMIT: Duration = Duration::from_secs(120);

/// Later assignments in settings.py win, for pulpcore as for the entrypoint.
fn append_settings(site: &Site, text: &str) {
    let mut settings = std::fs::read_to_string(&site.settings).unwrap();
    settings.push_str(text);
    std::fs::write(&site.settings, settings).unwrap();
}

/// SIGTERM to each, then each must exit 0; returns their stderr by name.
fn stop_all(running: Vec<(&str, Running)>) -> Vec<(String, String)> {
    let mut running = running;
    for (_, process) in &mut running {
        process.signal(Signal::SIGTERM);
    }
    running
        .into_iter()
        .map(|(name, process)| {
            let finished = process.wait_at_most(Duration::from_secs(40));
            assert_eq!(
                finished.code(),
                0,
                "{name} exit code; stderr:\n{}",
                finished.stderr
            );
            (name.to_string(), finished.stderr)
        })
        .collect()
}

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

/// pulp-operator's settings with object storage, run where STATIC_ROOT
/// cannot be created (the operator's /var/lib/operator/static/ for UID 700;
/// here a path below a regular file, which stops root too). django-storages
/// is not installed: pulpcore loads the storage backend on first use only,
/// so every role starts; nothing here stores an artifact.
#[test]
fn roles_start_with_operator_object_storage_and_an_unwritable_static_root() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "operator_storage");
    let in_the_way = site.root().join("operator");
    std::fs::write(&in_the_way, "").unwrap();
    let static_root = in_the_way.join("static/");
    append_settings(
        &site,
        &format!(
            r#"STATIC_ROOT = "{}"
MEDIA_ROOT = ""
STORAGES = {{
    "default": {{
        "BACKEND": "storages.backends.s3boto3.S3Boto3Storage",
        "OPTIONS": {{"signature_version": "s3v4", "addressing_style": "auto", "bucket_name": 'pulp', "endpoint_url": "http://127.0.0.1:9"}},
    }},
    "staticfiles": {{"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
}}
"#,
            static_root.display()
        ),
    );
    let config = site.entrypoint().arg("config").run();
    assert!(
        config.stdout.contains(
            "MEDIA_ROOT = (not used: artifacts go to storages.backends.s3boto3.S3Boto3Storage)  # "
        ),
        "{config}"
    );
    assert!(
        config
            .stdout
            .contains("STORAGES.default.BACKEND = storages.backends.s3boto3.S3Boto3Storage  # "),
        "{config}"
    );

    let api_port = free_port();
    let content_port = free_port();
    let worker = site.entrypoint().arg("pulp-worker").spawn();
    let content = site
        .entrypoint()
        .args([
            "pulp-content",
            "--bind",
            &format!("127.0.0.1:{content_port}"),
        ])
        .spawn();
    let api = site
        .entrypoint()
        .args(["pulp-api", "--bind", &format!("127.0.0.1:{api_port}")])
        .spawn();
    wait_for_status(api_port, START_LIMIT, "api, content app and worker", |s| {
        !online(s, "online_api_apps").is_empty()
            && !online(s, "online_content_apps").is_empty()
            && !online(s, "online_workers").is_empty()
    });
    assert!(
        !site
            .calls()
            .iter()
            .any(|call| call.contains("collectstatic"))
    );

    let stderr = stop_all(vec![("worker", worker), ("content", content), ("api", api)]);
    for (name, text) in &stderr {
        let mentions: Vec<&str> = text.lines().filter(|l| l.contains("STATIC_ROOT")).collect();
        if name == "api" {
            assert_eq!(mentions.len(), 1, "one line about STATIC_ROOT:\n{text}");
            assert!(mentions[0].contains("WARN"), "{}", mentions[0]);
            assert!(
                mentions[0].contains(&static_root.display().to_string()),
                "{}",
                mentions[0]
            );
            assert!(
                mentions[0].contains("starting without them"),
                "{}",
                mentions[0]
            );
        } else {
            assert!(
                mentions.is_empty(),
                "{name} never touches STATIC_ROOT:\n{text}"
            );
        }
        assert!(!text.contains("MEDIA_ROOT"), "{name}:\n{text}");
    }
}

/// An image that collected its static files at build time into a
/// directory the pods cannot write (a read-only bind mount here, as the
/// tests run as root): the api starts without collectstatic.
#[test]
fn api_uses_static_files_already_in_an_unwritable_static_root() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "collected_static");
    let static_root = site.root().join("operator-static");
    append_settings(
        &site,
        &format!("STATIC_ROOT = \"{}/\"\n", static_root.display()),
    );
    // What the image build does: the real collectstatic, before the pods exist.
    let collected = site.manager(&["collectstatic", "--noinput"]);
    assert!(collected.status.success(), "{collected:?}");

    let api_port = free_port();
    let dir = static_root.display().to_string();
    let read_only = format!(
        "mount --make-rprivate / && mount --bind '{dir}' '{dir}' && mount -o remount,bind,ro '{dir}' && exec \"$0\" \"$@\""
    );
    let api = site
        .entrypoint()
        .launched_by(["unshare", "--mount", "sh", "-c", &read_only])
        .args(["pulp-api", "--bind", &format!("127.0.0.1:{api_port}")])
        .spawn();
    wait_for_status(api_port, START_LIMIT, "the api", |s| {
        !online(s, "online_api_apps").is_empty()
    });
    assert!(
        !site
            .calls()
            .iter()
            .any(|call| call.contains("collectstatic"))
    );
    let stderr = stop_all(vec![("api", api)]);
    let mentions: Vec<&str> = stderr[0]
        .1
        .lines()
        .filter(|l| l.contains("STATIC_ROOT"))
        .collect();
    assert_eq!(mentions.len(), 1, "{}", stderr[0].1);
    assert!(mentions[0].contains("INFO"), "{}", mentions[0]);
    assert!(
        mentions[0].contains("static files: collectstatic skipped"),
        "{}",
        mentions[0]
    );
}
