//! Throwaway PostgreSQL clusters for tests.
//!
//! Each [`PgCluster`] is a real server of its own: `initdb` into a temporary
//! directory, then `pg_ctl start` on a free TCP port of 127.0.0.1 with its
//! unix socket in the same directory. Every login (TCP and unix socket)
//! needs the password (scram-sha-256), so a wrong password is really refused.
//! PostgreSQL refuses to run as root and tests run as root: then the
//! directory belongs to the `postgres` user and the server programs run as
//! that user through `runuser`. Drop stops the server (`-m immediate`) and
//! removes the directory.
//!
//! A missing PostgreSQL installation panics with a message naming the
//! dependency script: a test must fail, never skip, when its parts are absent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";

pub struct PgCluster {
    dir: tempfile::TempDir,
    port: AtomicU16,
    password: String,
    running: AtomicBool,
}

impl PgCluster {
    /// A running cluster on a free port.
    pub fn start() -> PgCluster {
        let cluster = PgCluster::init_only();
        // Another test may take the port between our probe and the server's bind:
        // try a few ports before calling it a failure.
        for _ in 0..4 {
            if cluster.try_start().is_ok() {
                return cluster;
            }
            cluster.port.store(free_port(), Ordering::SeqCst);
        }
        cluster.start_now();
        cluster
    }

    /// A cluster that exists but is not running yet: its port is chosen, so
    /// a client can be pointed at it before [`PgCluster::start_now`].
    pub fn init_only() -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        let cluster = PgCluster {
            dir,
            port: AtomicU16::new(free_port()),
            password: random_password(),
            running: AtomicBool::new(false),
        };
        set_mode(cluster.dir.path(), 0o755);
        give_to_postgres(cluster.dir.path());
        let pwfile = cluster.dir.path().join("superuser.pw");
        std::fs::write(&pwfile, format!("{}\n", cluster.password))
            .expect("write the password file");
        give_to_postgres(&pwfile);
        let data = cluster.data_dir();
        run_checked(as_postgres(&pg_program("initdb")).args([
            "-D".as_ref(),
            data.as_os_str(),
            "-U".as_ref(),
            SUPERUSER.as_ref(),
            "-A".as_ref(),
            "scram-sha-256".as_ref(),
            format!("--pwfile={}", pwfile.display()).as_ref(),
            "--no-sync".as_ref(),
            "--no-instructions".as_ref(),
            "-E".as_ref(),
            "UTF8".as_ref(),
            "--locale=C".as_ref(),
        ]));
        cluster
    }

    /// Start the server (after [`PgCluster::init_only`] or [`PgCluster::stop`]);
    /// returns once it accepts connections. Panics with the server log on failure.
    pub fn start_now(&self) {
        if let Err(log) = self.try_start() {
            panic!(
                "PostgreSQL did not start on port {}; its log:\n{log}",
                self.port()
            );
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {port} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c shared_buffers=16MB -c full_page_writes=off",
            port = self.port(),
            socket = self.socket_dir().display(),
        );
        let output = as_postgres(&pg_program("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o"])
            .arg(options)
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        if output.status.success() {
            self.running.store(true, Ordering::SeqCst);
            Ok(())
        } else {
            Err(format!("{}\n{}", describe(&output), self.log()))
        }
    }

    /// Stop the server (fast shutdown); the data stays for a later `start_now`.
    pub fn stop(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            run_checked(
                as_postgres(&pg_program("pg_ctl"))
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-m", "fast", "-w", "stop"]),
            );
        }
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The directory holding the unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// Append a setting to postgresql.conf (takes effect at the next start).
    pub fn configure(&self, line: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(file, "{line}").expect("write postgresql.conf");
    }

    /// Write a file into the data directory, owned by the server's user,
    /// readable only by it (as PostgreSQL demands of a TLS key).
    pub fn write_private_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents).expect("write into the data directory");
        set_mode(&path, 0o600);
        give_to_postgres(&path);
        path
    }

    /// Run SQL as the superuser over the unix socket; panics on error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Run `sql` in `database` as the superuser; the unaligned, tuples-only output.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let output = run_checked(
            Command::new(pg_program("psql"))
                .env("PGPASSWORD", &self.password)
                .arg("-X")
                .args(["-v", "ON_ERROR_STOP=1", "-qAt"])
                .arg("-h")
                .arg(self.socket_dir())
                .args([
                    "-p",
                    &self.port().to_string(),
                    "-U",
                    SUPERUSER,
                    "-d",
                    database,
                ])
                .args(["-c", sql]),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn create_database(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE {}", identifier(name)));
    }

    /// A role that may log in with `password`.
    pub fn create_role(&self, name: &str, password: &str) {
        self.psql(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            identifier(name),
            literal(password)
        ));
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running.swap(false, Ordering::SeqCst) {
            // Immediate: nothing in a throwaway cluster is worth a checkpoint.
            let _ = as_postgres(&pg_program("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// A TCP port of 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}

/// A PostgreSQL server program: from PATH, else from the newest
/// /usr/lib/postgresql/*/bin. Panics with the fix when it is nowhere.
pub fn pg_program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(found) = on_path
        .iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return found;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.is_file())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, path)) => path,
        None => panic!(
            "`{name}` (PostgreSQL) is not installed: run `. tests/tools/deps.sh` \
             (installs postgresql and postgresql-client) and rerun the tests"
        ),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command run as the `postgres` user when we are root (PostgreSQL
/// refuses root), as ourselves otherwise.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let user = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres user")
        .unwrap_or_else(|| {
            panic!(
                "there is no `postgres` user to run PostgreSQL as: run `. tests/tools/deps.sh` \
                 (the postgresql package creates it)"
            )
        });
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|error| panic!("chown {} to postgres: {error}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
}

fn run_checked(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        describe(&output)
    );
    output
}

fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// Letters and digits only, so it needs no quoting anywhere.
fn random_password() -> String {
    let mut bytes = [0u8; 12];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    let alphabet = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    bytes
        .iter()
        .map(|byte| alphabet[*byte as usize % alphabet.len()] as char)
        .collect()
}

fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
