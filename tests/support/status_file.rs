//! Reading the status file that `supervise` writes (`status_file`).

use std::path::Path;

use serde_json::Value;

/// The whole status, or `None` while the file is missing or half written.
pub fn status(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The entry of service `name`.
pub fn service<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["services"]
        .as_array()?
        .iter()
        .find(|service| service["name"] == name)
}

/// A running service's pid, as its PID namespace sees it.
pub fn pid_of(entry: &Value) -> i32 {
    entry["pid"].as_i64().expect("a running service has a pid") as i32
}
