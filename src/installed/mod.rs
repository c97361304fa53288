//! What is installed, found without starting Python: where the packages
//! are (`python_env`), what the migration and static files add up to
//! (`fingerprint`), which migrations the installed apps have
//! (`migrations`), and which pulpcore it is and what its commands accept
//! (`pulpcore`). `roles`, `migrate` and `settings` all read it; it reads
//! nothing of theirs.

use std::ffi::OsStr;
use std::path::PathBuf;

pub mod fingerprint;
pub mod migrations;
pub mod pulpcore;
pub mod python_env;

/// Where `name` would be found on `path`, as execvp would.
pub fn find_in_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Writes files into a fake site-packages, for the tests of this module and
/// of the modules that read what is installed.
#[cfg(test)]
pub(crate) fn write_test_file(root: &std::path::Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
