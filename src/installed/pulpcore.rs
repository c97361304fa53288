//! Which pulpcore is installed and which options its commands accept, read
//! from site-packages without starting Python.
//!
//! The version comes from the distribution's metadata
//! (`pulpcore-X.Y.Z.dist-info/METADATA`), for the log and `config`. What a
//! command accepts is read from the command's own source: options are
//! backported within maintained branches (`--name-template` came in 3.94
//! and also in 3.73.18 and 3.85.2), so a version table would be wrong for
//! some patch release. An option is passed only when its literal is in the
//! installed `entrypoint.py`; an unreadable source passes none of them,
//! since an unknown option stops the server at once while a missing one
//! costs only a name's uniqueness.

use std::path::{Path, PathBuf};

/// The installed pulpcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulpcore {
    /// `Version:` of the metadata, `None` when there is no metadata.
    pub version: Option<String>,
    /// The site-packages directory that holds `pulpcore/`.
    pub root: PathBuf,
}

/// One of pulpcore's server commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Api,
    Content,
    Worker,
}

impl Command {
    fn source(self) -> &'static str {
        match self {
            Command::Api => "pulpcore/app/entrypoint.py",
            Command::Content => "pulpcore/content/entrypoint.py",
            Command::Worker => "pulpcore/tasking/entrypoint.py",
        }
    }
}

/// The options of ours that a command accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepts {
    pub name_template: bool,
    pub no_control_socket: bool,
}

impl Pulpcore {
    /// The first root (in import order) that holds `pulpcore/app`.
    pub fn find(roots: &[PathBuf]) -> Option<Pulpcore> {
        let root = roots
            .iter()
            .find(|root| root.join("pulpcore/app").is_dir())?;
        Some(Pulpcore {
            version: version_in(root, "pulpcore"),
            root: root.clone(),
        })
    }

    /// "3.123.1", or "of unknown version".
    pub fn describe(&self) -> String {
        match &self.version {
            Some(version) => format!("pulpcore {version}"),
            None => "pulpcore (version unknown: no dist-info metadata)".into(),
        }
    }

    pub fn accepts(&self, command: Command) -> Accepts {
        let Ok(source) = std::fs::read_to_string(self.root.join(command.source())) else {
            return Accepts::default();
        };
        Accepts {
            name_template: source.contains("\"--name-template\""),
            no_control_socket: source.contains("\"--no-control-socket\""),
        }
    }
}

/// `Version:` from `<name>-*.dist-info/METADATA` in `root` (names compared
/// as pip normalizes them: case and `-`/`_`/`.` alike).
pub fn version_in(root: &Path, name: &str) -> Option<String> {
    let wanted = normalize(name);
    let entries = std::fs::read_dir(root).ok()?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let Some(stem) = file_name.strip_suffix(".dist-info") else {
            continue;
        };
        let Some((dist, _)) = stem.split_once('-') else {
            continue;
        };
        if normalize(dist) != wanted {
            continue;
        }
        let Ok(metadata) = std::fs::read_to_string(entry.path().join("METADATA")) else {
            continue;
        };
        // Headers end at the first empty line; the description follows.
        let version = metadata
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| line.strip_prefix("Version:"))
            .map(|version| version.trim().to_string());
        if version.is_some() {
            return version;
        }
    }
    None
}

fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::installed::write_test_file as write;

    #[test]
    fn version_and_options_come_from_the_installed_files() {
        let site = tempfile::tempdir().unwrap();
        write(
            site.path(),
            "pulpcore-3.85.2.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: pulpcore\nVersion: 3.85.2\n\nVersion: not this\n",
        );
        write(
            site.path(),
            "pulpcore/app/entrypoint.py",
            "@click.option(\n    \"--name-template\",\n)\n",
        );
        write(site.path(), "pulpcore/content/entrypoint.py", "");
        let other = tempfile::tempdir().unwrap();
        let found = Pulpcore::find(&[other.path().to_path_buf(), site.path().to_path_buf()])
            .expect("pulpcore found in the second root");
        assert_eq!(found.version.as_deref(), Some("3.85.2"));
        assert_eq!(found.describe(), "pulpcore 3.85.2");
        assert_eq!(
            found.accepts(Command::Api),
            Accepts {
                name_template: true,
                no_control_socket: false
            }
        );
        assert_eq!(found.accepts(Command::Content), Accepts::default());
        // No source at all: nothing is passed.
        assert_eq!(found.accepts(Command::Worker), Accepts::default());
    }

    #[test]
    fn dist_names_are_compared_as_pip_does() {
        let site = tempfile::tempdir().unwrap();
        write(
            site.path(),
            "Pulp_File-1.16.0.dist-info/METADATA",
            "Name: pulp-file\nVersion: 1.16.0\n",
        );
        assert_eq!(
            version_in(site.path(), "pulp-file").as_deref(),
            Some("1.16.0")
        );
        assert_eq!(version_in(site.path(), "pulpcore"), None);
    }
}
