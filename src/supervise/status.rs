//! The status file: what `supervise` is running, for `pulp-entrypoint status`.
//!
//! The supervisor rewrites the file (JSON, replaced atomically by rename)
//! whenever it handled an event, so a reader never sees half a file. Times
//! are Unix seconds; uptimes are computed by the reader, so an idle
//! supervisor does not need to rewrite anything.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::exit;

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The `supervise` process (1 in a container).
    pub supervisor_pid: i32,
    /// False once `supervise` has finished.
    pub running: bool,
    pub services: Vec<ServiceReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The instance: `api`, `worker-2`.
    pub name: String,
    /// The `[[service]]` it is an instance of.
    pub service: String,
    pub pid: Option<i32>,
    /// running, stopping, backoff, waiting-for-db, exited, failed, stopped.
    pub state: String,
    pub restarts: u32,
    /// When it entered this state (Unix seconds).
    pub since: f64,
    /// How its last run ended.
    pub last_exit: Option<String>,
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// Replace `path` with `report`: a temporary file in the same directory, then rename.
pub fn write(path: &Path, report: &Report) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut file, report)?;
    file.write_all(b"\n")?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// `pulp-entrypoint status [--json]`: print the report; the exit code is 0
/// when every service runs, 1 when one does not, 69 when no `supervise` runs,
/// 74 when stdout cannot be written.
pub fn show(path: &Path, json: bool) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            crate::logging::eprint_line(format_args!(
                "pulp-entrypoint status: no running supervise found: {}: {error} (status_file / PULP_ENTRYPOINT_STATUS_FILE must match the supervise's)",
                path.display()
            ));
            return exit::NO_SUPERVISOR;
        }
    };
    let report: Report = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(error) => {
            crate::logging::eprint_line(format_args!(
                "pulp-entrypoint status: {} is not a status file: {error}",
                path.display()
            ));
            return exit::NO_SUPERVISOR;
        }
    };
    let alive = report.running && process_exists(report.supervisor_pid);
    let shown = if json {
        crate::logging::print(&text)
    } else {
        crate::logging::print(&table(&report, unix_now()))
    };
    if let Err(error) = shown {
        return crate::logging::stdout_failed(&error);
    }
    if !alive {
        crate::logging::eprint_line(format_args!(
            "pulp-entrypoint status: supervise (pid {}) is not running; this is its last report",
            report.supervisor_pid
        ));
        return exit::NO_SUPERVISOR;
    }
    if report
        .services
        .iter()
        .all(|service| service.state == "running")
    {
        exit::SUCCESS
    } else {
        exit::NOT_RUNNING
    }
}

fn process_exists(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM means it exists but is not ours.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// One line per service, aligned.
pub fn table(report: &Report, now: f64) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "PID".into(),
        "STATE".into(),
        "RESTARTS".into(),
        "FOR".into(),
        "LAST EXIT".into(),
    ]];
    for service in &report.services {
        rows.push([
            service.name.clone(),
            service.pid.map_or("-".into(), |pid| pid.to_string()),
            service.state.clone(),
            service.restarts.to_string(),
            age((now - service.since).max(0.0) as u64),
            service.last_exit.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// 45s, 3m05s, 2h03m, 4d02h.
fn age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            supervisor_pid: std::process::id() as i32,
            running: true,
            services: vec![
                ServiceReport {
                    name: "api".into(),
                    service: "api".into(),
                    pid: Some(12),
                    state: "running".into(),
                    restarts: 0,
                    since: 1000.0,
                    last_exit: None,
                },
                ServiceReport {
                    name: "worker-1".into(),
                    service: "worker".into(),
                    pid: None,
                    state: "backoff".into(),
                    restarts: 3,
                    since: 1100.0,
                    last_exit: Some("killed by SIGKILL".into()),
                },
            ],
        }
    }

    #[test]
    fn the_table_shows_every_service() {
        let text = table(&report(), 1185.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SERVICE   PID  STATE    RESTARTS  FOR    LAST EXIT"
        );
        assert_eq!(lines[1], "api       12   running  0         3m05s  -");
        assert_eq!(
            lines[2],
            "worker-1  -    backoff  3         1m25s  killed by SIGKILL"
        );
    }

    #[test]
    fn written_reports_read_back_and_set_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/status.json");
        write(&path, &report()).unwrap();
        let back: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, report());
        assert_eq!(
            show(&path, false),
            exit::NOT_RUNNING,
            "a worker is in backoff"
        );
        let mut all_running = report();
        all_running.services.truncate(1);
        write(&path, &all_running).unwrap();
        assert_eq!(show(&path, true), exit::SUCCESS);
        all_running.running = false;
        write(&path, &all_running).unwrap();
        assert_eq!(show(&path, false), exit::NO_SUPERVISOR);
        assert_eq!(
            show(&dir.path().join("none.json"), false),
            exit::NO_SUPERVISOR
        );
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(3725), "1h02m");
        assert_eq!(age(90061), "1d01h");
    }
}
