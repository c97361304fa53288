//! Real pulpcore for tests: a site (settings.py, key, directories) pointing
//! at a test database, PATH shims that record which Pulp commands ran, and
//! a small HTTP client for the status endpoint.
//!
//! The venv comes from `PULP_VENV`, which `tests/run.sh` sets after
//! installing pulpcore from PyPI. Without it the tests fail, saying so:
//! a missing dependency never turns into a skipped test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::command::TestCommand;
use super::pg::PgCluster;

/// The pulpcore virtualenv.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("PULP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("PULP_VENV is not set: run the tests with tests/run.sh, which installs pulpcore")
        });
    assert!(
        venv.join("bin/pulpcore-manager").is_file(),
        "{} has no bin/pulpcore-manager: run tests/run.sh, which installs pulpcore",
        venv.display()
    );
    venv
}

/// Where a test's Pulp lives and which database it uses.
pub struct Site {
    dir: tempfile::TempDir,
    pub settings: PathBuf,
    pub shim_log: PathBuf,
    shims: PathBuf,
    venv: PathBuf,
}

/// How to reach the test database.
pub struct DatabaseAddress<'a> {
    pub host: &'a str,
    pub port: u16,
    pub name: &'a str,
    pub user: &'a str,
    pub password: &'a str,
}

/// The Pulp programs the shims stand in front of.
const SHIMMED: &[&str] = &[
    "pulpcore-manager",
    "pulpcore-api",
    "pulpcore-content",
    "pulpcore-worker",
];

impl Site {
    pub fn new(database: &DatabaseAddress) -> Site {
        Site::with_venv(database, venv())
    }

    /// A new database `name` on `pg`, and a site that reaches it over TCP as the superuser.
    pub fn on_fresh_database(pg: &PgCluster, name: &str) -> Site {
        Site::on_fresh_database_with_venv(pg, name, venv())
    }

    /// [`Site::on_fresh_database`] with the Pulp commands from `venv` (another pulpcore release).
    pub fn on_fresh_database_with_venv(pg: &PgCluster, name: &str, venv: PathBuf) -> Site {
        pg.create_database(name);
        Site::with_venv(
            &DatabaseAddress {
                host: "127.0.0.1",
                port: pg.port(),
                name,
                user: "postgres",
                password: pg.superuser_password(),
            },
            venv,
        )
    }

    /// A site whose Pulp commands come from `venv` (e.g. an [`Overlay`]).
    pub fn with_venv(database: &DatabaseAddress, venv: PathBuf) -> Site {
        let dir = tempfile::tempdir().expect("temporary site directory");
        let root = dir.path();
        for sub in ["media", "tmp", "assets"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let key = root.join("database_fields.symmetric.key");
        std::fs::write(&key, "HXo3B4XAWEd0lO-ZePIHxlDoZoVXnWZuyA-OmHWqm_0=").unwrap();
        let settings = root.join("settings.py");
        std::fs::write(
            &settings,
            format!(
                r#"DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "{name}",
        "USER": "{user}",
        "PASSWORD": "{password}",
        "HOST": "{host}",
        "PORT": {port},
    }}
}}
SECRET_KEY = "test-secret-key"
CONTENT_ORIGIN = "http://127.0.0.1:24816"
MEDIA_ROOT = "{root}/media/"
STATIC_ROOT = "{root}/assets/"
WORKING_DIRECTORY = "{root}/tmp/"
FILE_UPLOAD_TEMP_DIR = "{root}/tmp/"
DB_ENCRYPTION_KEY = "{key}"
"#,
                name = database.name,
                user = database.user,
                password = database.password,
                host = database.host,
                port = database.port,
                root = root.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        let shims = root.join("shims");
        std::fs::create_dir_all(&shims).unwrap();
        let shim_log = root.join("calls.log");
        for program in SHIMMED {
            let path = shims.join(program);
            // One line per call: the replica, the program, its arguments.
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"${{REPLICA:-0}} {program} $*\" >> '{log}'\nexec '{venv}/bin/{program}' \"$@\"\n",
                    log = shim_log.display(),
                    venv = venv.display(),
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let empty_config = root.join("entrypoint.toml");
        std::fs::write(&empty_config, "").unwrap();
        Site {
            dir,
            settings,
            shim_log,
            shims,
            venv,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// PATH with the shims first, then the venv.
    pub fn path_var(&self) -> String {
        format!(
            "{}:{}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.shims.display(),
            self.venv.display()
        )
    }

    /// The entrypoint with this site's environment.
    pub fn entrypoint(&self) -> TestCommand {
        let mut command = TestCommand::new();
        command
            .env("PATH", self.path_var())
            .env("PULP_SETTINGS", &self.settings)
            .env("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
            .env(
                "PULP_ENTRYPOINT_CONFIG",
                self.root().join("entrypoint.toml"),
            )
            .env("PULP_API_WORKERS", "1")
            .env("PULP_CONTENT_WORKERS", "1")
            .env("HOME", self.root());
        command
    }

    /// `pulpcore-manager ARGS` from the venv, without the shims, run to completion.
    pub fn manager(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(self.venv.join("bin/pulpcore-manager"))
            .args(args)
            .env("PULP_SETTINGS", &self.settings)
            .env("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
            .env("HOME", self.root())
            .output()
            .expect("run pulpcore-manager")
    }

    /// The recorded calls, one "REPLICA PROGRAM ARGS" line each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.shim_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// `GET path` on 127.0.0.1:port: status code and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())?;
    Some((status, body))
}

/// Names listed under `key` (online_api_apps, online_content_apps, online_workers).
pub fn online(status: &serde_json::Value, key: &str) -> Vec<String> {
    status[key]
        .as_array()
        .map(|apps| {
            apps.iter()
                .filter_map(|app| app["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Poll the status endpoint until `done` holds; panic with the last answer after `limit`.
pub fn wait_for_status(
    api_port: u16,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    let mut last = String::from("nothing answered");
    loop {
        if let Some((200, body)) = http_get(api_port, "/pulp/api/v3/status/") {
            if let Ok(status) = serde_json::from_str::<serde_json::Value>(&body)
                && done(&status)
            {
                return status;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}; last status: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A venv of its own that imports a private copy of `pulp_file` first and
/// everything else from the shared venv (through a `.pth` file), so that a
/// test can add a migration without touching the shared venv.
pub struct Overlay {
    dir: tempfile::TempDir,
    pub migrations: PathBuf,
}

impl Overlay {
    pub fn new() -> Overlay {
        let base = venv();
        let dir = tempfile::tempdir().expect("overlay directory");
        let created = std::process::Command::new(base.join("bin/python3"))
            .args(["-m", "venv", "--without-pip"])
            .arg(dir.path())
            .status()
            .expect("python3 -m venv");
        assert!(created.success(), "could not create the overlay venv");
        let base_site = site_packages(&base);
        let site = site_packages(dir.path());
        std::fs::write(
            site.join("shared-venv.pth"),
            format!("{}\n", base_site.display()),
        )
        .unwrap();
        copy_tree(&base_site.join("pulp_file"), &site.join("pulp_file"));
        for program in SHIMMED {
            let script = std::fs::read_to_string(base.join("bin").join(program)).unwrap();
            let body = script.split_once('\n').map(|(_, body)| body).unwrap_or("");
            let path = dir.path().join("bin").join(program);
            std::fs::write(
                &path,
                format!("#!{}/bin/python3\n{body}", dir.path().display()),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Overlay {
            migrations: site.join("pulp_file/app/migrations"),
            dir,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Add a no-op migration after the latest one of pulp_file; returns its name.
    pub fn add_migration(&self) -> String {
        let mut names: Vec<String> = std::fs::read_dir(&self.migrations)
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".py") && name.as_bytes()[0].is_ascii_digit())
            .map(|name| name.trim_end_matches(".py").to_string())
            .collect();
        names.sort();
        let latest = names.last().expect("pulp_file has migrations");
        let name = "9999_added_by_test".to_string();
        std::fs::write(
            self.migrations.join(format!("{name}.py")),
            format!(
                "from django.db import migrations\n\nclass Migration(migrations.Migration):\n    dependencies = [(\"file\", \"{latest}\")]\n    operations = [migrations.RunSQL(\"SELECT 1\", migrations.RunSQL.noop)]\n"
            ),
        )
        .unwrap();
        name
    }
}

fn site_packages(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    let python = std::fs::read_dir(&lib)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .find(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .expect("lib/python3.*");
    python.path().join("site-packages")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
