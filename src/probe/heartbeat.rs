//! A worker's heartbeat, read from pulpcore's status table with one query.
//!
//! Each pulpcore worker has a row in `core_appstatus` (model `AppStatus`,
//! `app_type = 'worker'`) named after its `--name-template` (pulpcore's
//! default `{pid}@{hostname}`), whose `last_heartbeat` it refreshes every
//! `WORKER_TTL / 3` seconds; pulpcore counts it online while
//! `last_heartbeat >= now() - ttl`. The probe turns each local worker's
//! template into a `LIKE` pattern (its pid and this host's name filled in,
//! `{fqdn}` left as a wildcard) and asks for all of them in one statement,
//! comparing times on the database's clock only, so clock skew between the
//! container and PostgreSQL does not matter.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

/// The heartbeat of one worker, as the database sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// A row with the worker's name exists.
    pub registered: bool,
    /// Some row of it is within its TTL.
    pub fresh: bool,
    /// Seconds since the newest heartbeat.
    pub age: f64,
    /// The row's TTL in seconds.
    pub ttl: f64,
}

const QUERY: &str = "\
SELECT count(a.name),
       coalesce(bool_or(a.last_heartbeat >= now() - a.ttl), false),
       coalesce(extract(epoch FROM now() - max(a.last_heartbeat))::float8, 0),
       coalesce(extract(epoch FROM max(a.ttl))::float8, 0)
FROM unnest($1::text[]) WITH ORDINALITY AS p(pattern, i)
LEFT JOIN core_appstatus a ON a.app_type = 'worker' AND a.name LIKE p.pattern
GROUP BY p.i
ORDER BY p.i";

/// The heartbeat for each pattern, in order. One round trip (`query_typed`
/// needs no separate prepare).
pub async fn read(client: &Client, patterns: &[String]) -> Result<Vec<Heartbeat>, String> {
    let rows = client
        .query_typed(QUERY, &[(&patterns, Type::TEXT_ARRAY)])
        .await
        .map_err(|error| match error.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => error.to_string(),
        })?;
    rows.iter()
        .map(|row| {
            Ok(Heartbeat {
                registered: row.try_get::<_, i64>(0).map_err(|e| e.to_string())? > 0,
                fresh: row.try_get(1).map_err(|e| e.to_string())?,
                age: row.try_get(2).map_err(|e| e.to_string())?,
                ttl: row.try_get(3).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// The `LIKE` pattern for the names a worker registers with `template`
/// (Python `str.format` syntax: `{pid}`, `{hostname}`, `{fqdn}`, `{{`, `}}`).
/// Fields the probe cannot fill in exactly become `%`.
pub fn name_pattern(template: &str, pid: u32, hostname: &str) -> String {
    let mut pattern = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                pattern.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                pattern.push('}');
            }
            '{' => {
                let field: String = chars.by_ref().take_while(|c| *c != '}').collect();
                match field.as_str() {
                    "pid" => pattern.push_str(&pid.to_string()),
                    "hostname" => pattern.push_str(&escape_like(hostname)),
                    // {fqdn} needs the resolver Python uses; {pid:05d} and the like are rare.
                    _ => pattern.push('%'),
                }
            }
            other => pattern.push_str(&escape_like(&other.to_string())),
        }
    }
    pattern
}

/// `LIKE`'s own characters taken literally (backslash is the default escape).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulpcore_default_and_the_entrypoint_template() {
        assert_eq!(name_pattern("{pid}@{hostname}", 7, "pod-1"), "7@pod-1");
        assert_eq!(
            name_pattern("{pid}@{hostname}-0a1b2c3d", 12, "pulp-worker-5f9c"),
            "12@pulp-worker-5f9c-0a1b2c3d"
        );
    }

    #[test]
    fn like_characters_are_literal_and_unknown_fields_are_wildcards() {
        assert_eq!(name_pattern("w_{pid}%", 3, "a_b"), "w\\_3\\%");
        assert_eq!(name_pattern("{pid}@{hostname}", 3, "a_b"), "3@a\\_b");
        assert_eq!(name_pattern("{pid}@{fqdn}", 3, "h"), "3@%");
        assert_eq!(name_pattern("{{{pid}}}", 3, "h"), "{3}");
        assert_eq!(name_pattern("{pid:05d}", 3, "h"), "%");
    }
}
