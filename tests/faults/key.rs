//! Replicas racing on a shared volume without the database field encryption
//! key, each PID 1 of its own PID namespace (as every replica is in its
//! container, so PIDs say nothing about who is who). Exactly one creates the
//! key, the others use it; none replaces it, none leaves a temporary file
//! behind.
//!
//! First as deployed: four `init`s (the operator's init containers) on a fresh
//! database, which wait until the migration Job (`migrate`, started once the
//! key exists: pulpcore's migrate reads it) is done. Then, on the migrated
//! database, rounds of eight `init`s that find nothing else to do: the race
//! alone, many times, as one round rarely hits the window.

use std::path::Path;
use std::time::Duration;

use crate::support::command::{Finished, Running, wait_until};
use crate::support::pg::PgCluster;
use crate::support::pulp::Site;

const KEY_FILE: &str = "database_fields.symmetric.key";
const CREATED: &str = "created the database field encryption key";
/// One migrate of a fresh database, on a shared 2-core machine.
const MIGRATE_LIMIT: Duration = Duration::from_secs(300);
const ROUNDS: usize = 15;
const ROUND_REPLICAS: usize = 8;
const ROUND_LIMIT: Duration = Duration::from_secs(120);

fn start_inits(site: &Site, replicas: usize) -> Vec<Running> {
    (0..replicas)
        .map(|replica| {
            let mut command = site.entrypoint();
            command
                .env("REPLICA", replica.to_string())
                .in_pid_namespace()
                .arg("init");
            command.spawn()
        })
        .collect()
}

fn wait_all(replicas: Vec<Running>, limit: Duration) -> Vec<Finished> {
    let finished: Vec<Finished> = replicas
        .into_iter()
        .map(|running| running.wait_at_most(limit))
        .collect();
    for done in &finished {
        done.assert_code(0);
    }
    finished
}

/// One creator, a well-formed key, no temporary file left in `root`.
fn assert_one_key(root: &Path, finished: &[Finished], round: &str) {
    let created = finished
        .iter()
        .filter(|done| done.stderr.contains(CREATED))
        .count();
    assert_eq!(created, 1, "{round}: exactly one replica creates the key");
    let text = std::fs::read_to_string(root.join(KEY_FILE)).unwrap();
    assert_eq!(
        text.trim().len(),
        44,
        "{round}: 32 bytes, URL-safe base64: {text:?}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("key") && name != KEY_FILE)
        .collect();
    assert!(
        leftovers.is_empty(),
        "{round}: temporary files left: {leftovers:?}"
    );
}

#[test]
fn replicas_that_are_all_pid_1_create_one_key_on_a_shared_volume() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "key_race");
    let key = site.root().join(KEY_FILE);
    std::fs::remove_file(&key).unwrap();

    let replicas = start_inits(&site, 4);
    wait_until("a replica to create the key", MIGRATE_LIMIT, || {
        key.exists()
    });
    site.entrypoint()
        .arg("migrate")
        .spawn()
        .wait_at_most(MIGRATE_LIMIT)
        .assert_code(0);
    let finished = wait_all(replicas, MIGRATE_LIMIT);
    assert_one_key(site.root(), &finished, "fresh database");
    // The init containers only waited: the Job's migrate was the one (the
    // shims log every Pulp command).
    let migrates: Vec<String> = site
        .calls()
        .into_iter()
        .filter(|call| call.contains("manager migrate") && !call.contains("--check"))
        .collect();
    assert_eq!(migrates.len(), 1, "{migrates:?}");

    for round in 1..=ROUNDS {
        std::fs::remove_file(&key).unwrap();
        let finished = wait_all(start_inits(&site, ROUND_REPLICAS), ROUND_LIMIT);
        assert_one_key(site.root(), &finished, &format!("round {round}"));
    }
}
