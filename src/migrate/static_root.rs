//! Whether a STATIC_ROOT this process cannot write already holds this code's
//! static files, so that the api can start without collectstatic (images
//! collect them at build time into a directory the pods cannot write).
//!
//! It does when the entrypoint's collectstatic marker matches this code, or
//! when the files are there: each app `static` directory either complete
//! below STATIC_ROOT (every file at the same relative path, with the same
//! size) or entirely absent. The directories are the installed apps' own
//! when those are known (what collectstatic copies); otherwise the walk
//! finds every `static` directory installed, and absent ones are taken as
//! apps Django does not load (pulpcore loads neither django.contrib.admin
//! nor gis, whose files Django ships).
//! Sizes, not contents: a stat per file keeps the check to a millisecond.

use std::path::{Path, PathBuf};

use super::coordinator::STATIC_MARKER;
use crate::installed::fingerprint::{self, Kind, Scope, StaticDir};

/// What an unwritable STATIC_ROOT holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// The static files of every app that has any there, `files` in all.
    Files { files: usize },
    /// The marker of the entrypoint's collectstatic for this code.
    Marker,
    /// Files are missing or differ; `example` names one when there is one.
    Missing { example: Option<String> },
}

pub fn contents(static_root: &Path, roots: &[PathBuf], scope: Scope) -> Contents {
    let compared = compare(static_root, &fingerprint::static_dirs(roots, scope));
    if compared.complete_dirs > 0 && compared.first_missing.is_none() {
        return Contents::Files {
            files: compared.files,
        };
    }
    if marker_matches(static_root, roots, scope) {
        return Contents::Marker;
    }
    Contents::Missing {
        example: compared.first_missing.or(compared.first_absent),
    }
}

#[derive(Debug, Default)]
struct Compared {
    complete_dirs: usize,
    files: usize,
    /// A file of a directory that is partly there: stale or incomplete.
    first_missing: Option<String>,
    /// A file of a directory that is not there at all.
    first_absent: Option<String>,
}

fn compare(static_root: &Path, dirs: &[StaticDir]) -> Compared {
    let size_below = |relative: &str| {
        std::fs::metadata(static_root.join(relative))
            .ok()
            .filter(|meta| meta.is_file())
            .map(|meta| meta.len())
    };
    let mut compared = Compared::default();
    for dir in dirs.iter().filter(|dir| !dir.files.is_empty()) {
        let sizes: Vec<Option<u64>> = dir.files.iter().map(|(r, _)| size_below(r)).collect();
        let Some(differing) = dir
            .files
            .iter()
            .zip(&sizes)
            .find(|((_, size), found)| **found != Some(*size))
            .map(|((relative, _), _)| relative.clone())
        else {
            compared.complete_dirs += 1;
            compared.files += dir.files.len();
            continue;
        };
        let slot = if sizes.iter().all(Option::is_none) {
            &mut compared.first_absent
        } else {
            &mut compared.first_missing
        };
        slot.get_or_insert(differing);
    }
    compared
}

/// The marker is read first: the fingerprint reads every static file, and
/// only a STATIC_ROOT the entrypoint once collected into has one.
fn marker_matches(static_root: &Path, roots: &[PathBuf], scope: Scope) -> bool {
    let Ok(text) = std::fs::read_to_string(static_root.join(STATIC_MARKER)) else {
        return false;
    };
    fingerprint::compute(roots, scope, Kind::Static).is_some_and(|print| print.hex == text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::installed::write_test_file as write;

    /// Installed code: two loaded apps and Django's admin, which pulpcore does not load.
    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "rest_framework/static/rest_framework/css/a.css",
            "a{}",
        );
        write(
            dir.path(),
            "rest_framework/static/rest_framework/js/b.js",
            "b()",
        );
        write(
            dir.path(),
            "import_export/static/import_export/i.css",
            "i{}",
        );
        write(
            dir.path(),
            "django/contrib/admin/static/admin/base.css",
            "admin",
        );
        dir
    }

    fn collected(site: &Path) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for relative in ["rest_framework/css/a.css", "rest_framework/js/b.js"] {
            let text =
                std::fs::read_to_string(site.join("rest_framework/static").join(relative)).unwrap();
            write(root.path(), relative, &text);
        }
        write(root.path(), "import_export/i.css", "i{}");
        root
    }

    #[test]
    fn collected_files_count_and_apps_not_loaded_do_not() {
        let site = site();
        let root = collected(site.path());
        assert_eq!(
            contents(root.path(), &[site.path().to_path_buf()], Scope::All),
            Contents::Files { files: 3 }
        );
    }

    #[test]
    fn a_missing_or_changed_file_is_missing() {
        let site = site();
        let root = collected(site.path());
        write(
            site.path(),
            "rest_framework/static/rest_framework/js/new.js",
            "n",
        );
        assert_eq!(
            contents(root.path(), &[site.path().to_path_buf()], Scope::All),
            Contents::Missing {
                example: Some("rest_framework/js/new.js".into())
            }
        );
        let root = collected(site.path());
        write(root.path(), "rest_framework/js/new.js", "n");
        write(root.path(), "import_export/i.css", "changed size");
        assert_eq!(
            contents(root.path(), &[site.path().to_path_buf()], Scope::All),
            Contents::Missing {
                example: Some("import_export/i.css".into())
            }
        );
    }

    #[test]
    fn an_empty_static_root_is_missing() {
        let site = site();
        let root = tempfile::tempdir().unwrap();
        let found = contents(root.path(), &[site.path().to_path_buf()], Scope::All);
        assert!(
            matches!(found, Contents::Missing { example: Some(_) }),
            "{found:?}"
        );
        assert_eq!(
            contents(root.path(), &[], Scope::All),
            Contents::Missing { example: None },
            "no installed static files found: nothing proves they are there"
        );
    }

    #[test]
    fn a_matching_marker_is_enough() {
        let site = site();
        let root = tempfile::tempdir().unwrap();
        let roots = [site.path().to_path_buf()];
        let print = fingerprint::compute(&roots, Scope::All, Kind::Static).unwrap();
        write(root.path(), STATIC_MARKER, &format!("{}\n", print.hex));
        assert_eq!(contents(root.path(), &roots, Scope::All), Contents::Marker);
        write(root.path(), STATIC_MARKER, "another code's fingerprint");
        assert!(matches!(
            contents(root.path(), &roots, Scope::All),
            Contents::Missing { .. }
        ));
    }
}
