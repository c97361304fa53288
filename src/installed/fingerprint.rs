//! A fingerprint of the installed code that decides whether migrations or
//! static files can be skipped.
//!
//! Migrations: every `*.py` directly inside a directory named `migrations`
//! up to four levels below each package root (that reaches
//! `django/contrib/auth/migrations` and `pulpcore/app/migrations`), hashed
//! with its relative path and content. Adding, removing or changing one
//! migration file of any installed app changes it. Static files: the same
//! over every file below directories named `static`. When the installed
//! Django apps are known, only their own `migrations` and `static`
//! directories are read, as Django's migration loader and collectstatic's
//! app finder do ([`Scope`]): a venv with eight plugins holds ~165 packages,
//! and walking them all was most of the start-up time.
//!
//! Content, not modification times, is hashed: image layers and `pip install`
//! reset times, and reading ~150 small files takes a few milliseconds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What to fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Migrations,
    Static,
}

/// How deep below a package root a `migrations` or `static` directory may be.
const MAX_DEPTH: usize = 4;

/// Directories that never hold migrations or app static files: skipping
/// them (Django's ~1000 locale folders above all) keeps the walk to a few
/// hundred directories, a few milliseconds.
const PRUNED: &[&str] = &[
    "__pycache__",
    "tests",
    "locale",
    "templates",
    "node_modules",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub hex: String,
    pub files: usize,
}

/// Where the `migrations` and `static` directories are looked for.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Anywhere up to four levels below each root: the installed apps are
    /// not known.
    All,
    /// Directly in these app directories, as `(package root, directory)`:
    /// the installed Django apps, the only ones migrate and collectstatic read.
    Apps(&'a [(PathBuf, PathBuf)]),
}

/// The fingerprint (hex SHA-256) of one kind of file and how many files went
/// into it, or `None` for migrations when the code could not be found (no
/// pulpcore migrations under any root): the caller must then ask Django.
pub fn compute(roots: &[PathBuf], scope: Scope, kind: Kind) -> Option<Fingerprint> {
    let (migrations, statics) = compute_both(roots, scope, kind == Kind::Static);
    match kind {
        Kind::Migrations => migrations,
        Kind::Static => statics,
    }
}

/// Both fingerprints from one walk; the static one only when `with_static`.
pub fn compute_both(
    roots: &[PathBuf],
    scope: Scope,
    with_static: bool,
) -> (Option<Fingerprint>, Option<Fingerprint>) {
    let mut found = Found::new(scope, with_static);
    found.search(roots);
    for (root, dir) in &found.static_dirs {
        add_files(root, dir, true, &mut found.statics);
    }
    let has_pulpcore = found
        .migrations
        .iter()
        .any(|(relative, _)| relative.starts_with("pulpcore/app/migrations/"));
    let migrations = if has_pulpcore {
        hash(found.migrations)
    } else {
        None
    };
    let statics = if with_static {
        hash(found.statics)
    } else {
        None
    };
    (migrations, statics)
}

struct Found<'a> {
    scope: Scope<'a>,
    with_static: bool,
    migrations: Vec<(String, PathBuf)>,
    /// Each app's `static` directory, with the package root it is below.
    static_dirs: Vec<(PathBuf, PathBuf)>,
    statics: Vec<(String, PathBuf)>,
}

impl<'a> Found<'a> {
    fn new(scope: Scope<'a>, with_static: bool) -> Found<'a> {
        Found {
            scope,
            with_static,
            migrations: Vec::new(),
            static_dirs: Vec::new(),
            statics: Vec::new(),
        }
    }

    fn search(&mut self, roots: &[PathBuf]) {
        match self.scope {
            Scope::All => {
                for root in roots {
                    walk(root, root, 0, self);
                }
            }
            Scope::Apps(apps) => {
                for (root, dir) in apps {
                    let migrations = dir.join("migrations");
                    if migrations.is_dir() {
                        add_files(root, &migrations, false, &mut self.migrations);
                    }
                    let statics = dir.join("static");
                    if self.with_static && statics.is_dir() {
                        self.static_dirs.push((root.clone(), statics));
                    }
                }
            }
        }
    }
}

/// One app's `static` directory as collectstatic sees it: every file's path
/// relative to the directory (its path below STATIC_ROOT) and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticDir {
    pub dir: PathBuf,
    pub files: Vec<(String, u64)>,
}

/// The app `static` directories the fingerprint walk finds, listed with
/// sizes; nothing is read. Of two copies of one app (same path below their
/// roots) the one in the earlier root, which Python imports, is kept. Apps
/// Django does not load are included (the walk cannot tell).
pub fn static_dirs(roots: &[PathBuf], scope: Scope) -> Vec<StaticDir> {
    let mut found = Found::new(scope, true);
    found.search(roots);
    let mut seen = std::collections::HashSet::new();
    found
        .static_dirs
        .into_iter()
        .filter(|(root, dir)| seen.insert(dir.strip_prefix(root).unwrap_or(dir).to_path_buf()))
        .map(|(_, dir)| {
            let mut files = Vec::new();
            list_collected(&dir, "", &mut files);
            files.sort();
            StaticDir { dir, files }
        })
        .collect()
}

/// collectstatic's default ignore patterns: `CVS`, `.*`, `*~`.
fn ignored_by_collectstatic(name: &str) -> bool {
    name == "CVS" || name.starts_with('.') || name.ends_with('~')
}

/// Files below `dir` with their sizes, following symbolic links as Django does.
fn list_collected(dir: &Path, prefix: &str, files: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignored_by_collectstatic(&name) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let relative = format!("{prefix}{name}");
        if meta.is_dir() {
            list_collected(&entry.path(), &format!("{relative}/"), files);
        } else {
            files.push((relative, meta.len()));
        }
    }
}

fn hash(mut files: Vec<(String, PathBuf)>) -> Option<Fingerprint> {
    // Stable sort by relative path: of two copies of one module, the one in
    // the earlier root (the one Python imports) is kept.
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut hasher = Sha256::new();
    for (relative, path) in &files {
        let content = std::fs::read(path).ok()?;
        hasher.update((relative.len() as u64).to_le_bytes());
        hasher.update(relative.as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    let digest = hasher.finalize();
    Some(Fingerprint {
        hex: digest.iter().map(|b| format!("{b:02x}")).collect(),
        files: files.len(),
    })
}

fn walk(root: &Path, dir: &Path, depth: usize, found: &mut Found) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if PRUNED.contains(&name.as_ref()) || name.ends_with(".dist-info") {
            continue;
        }
        let path = entry.path();
        match name.as_ref() {
            "migrations" => add_files(root, &path, false, &mut found.migrations),
            "static" if found.with_static => found.static_dirs.push((root.to_path_buf(), path)),
            "static" => {}
            _ if depth + 1 < MAX_DEPTH => walk(root, &path, depth + 1, found),
            _ => {}
        }
    }
}

fn add_files(root: &Path, dir: &Path, recursive: bool, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if recursive && entry.file_name() != "__pycache__" {
                add_files(root, &path, true, files);
            }
            continue;
        }
        if !recursive && path.extension().is_none_or(|ext| ext != "py") {
            continue;
        }
        if let Ok(relative) = path.strip_prefix(root) {
            files.push((relative.to_string_lossy().into_owned(), path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::installed::write_test_file as write;

    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pulpcore/app/migrations/0001_initial.py",
            "ops = []",
        );
        write(dir.path(), "pulpcore/app/migrations/__init__.py", "");
        write(
            dir.path(),
            "django/contrib/auth/migrations/0001_initial.py",
            "a",
        );
        write(dir.path(), "pulp_file/app/migrations/0001_initial.py", "f");
        write(
            dir.path(),
            "pulp_file/app/migrations/__pycache__/x.pyc",
            "junk",
        );
        write(dir.path(), "pulpcore/app/static/pulp/logo.svg", "<svg/>");
        dir
    }

    fn migrations(dir: &Path) -> Fingerprint {
        compute(&[dir.to_path_buf()], Scope::All, Kind::Migrations).unwrap()
    }

    #[test]
    fn a_new_migration_in_any_app_changes_it() {
        let dir = site();
        let before = migrations(dir.path());
        assert_eq!(before.files, 4);
        assert_eq!(before, migrations(dir.path()), "stable for the same code");
        write(dir.path(), "pulp_file/app/migrations/0002_more.py", "g");
        assert_ne!(before, migrations(dir.path()));
    }

    #[test]
    fn a_changed_migration_changes_it_but_caches_do_not() {
        let dir = site();
        let before = migrations(dir.path());
        write(
            dir.path(),
            "django/contrib/auth/migrations/__pycache__/y.pyc",
            "x",
        );
        write(dir.path(), "pulpcore/app/migrations/README.txt", "docs");
        assert_eq!(before, migrations(dir.path()));
        write(
            dir.path(),
            "django/contrib/auth/migrations/0001_initial.py",
            "b",
        );
        assert_ne!(before, migrations(dir.path()));
    }

    #[test]
    fn the_apps_scope_reads_only_their_directories() {
        let dir = site();
        let root = dir.path().to_path_buf();
        write(dir.path(), "not_an_app/sub/migrations/0001_x.py", "a");
        write(dir.path(), "not_an_app/static/x.css", "a");
        let apps = [
            (root.clone(), root.join("django/contrib/auth")),
            (root.clone(), root.join("pulpcore/app")),
        ];
        let roots = [root.clone()];
        let scoped = compute(&roots, Scope::Apps(&apps), Kind::Migrations).unwrap();
        assert_eq!(scoped.files, 3, "pulp_file and not_an_app left out");
        assert_eq!(
            compute(&roots, Scope::All, Kind::Migrations).unwrap().files,
            5
        );
        // Every app listed: the same fingerprint as the walk of a site without strays.
        let plain = site();
        let plain_root = plain.path().to_path_buf();
        let every_app: Vec<(PathBuf, PathBuf)> =
            ["django/contrib/auth", "pulpcore/app", "pulp_file/app"]
                .iter()
                .map(|app| (plain_root.clone(), plain_root.join(app)))
                .collect();
        assert_eq!(
            compute(
                std::slice::from_ref(&plain_root),
                Scope::Apps(&every_app),
                Kind::Migrations
            ),
            Some(migrations(plain.path()))
        );
        let scoped_static: Vec<PathBuf> = static_dirs(&roots, Scope::Apps(&apps))
            .into_iter()
            .map(|d| d.dir)
            .collect();
        assert_eq!(scoped_static, vec![root.join("pulpcore/app/static")]);
        assert!(
            static_dirs(&roots, Scope::All)
                .iter()
                .any(|d| d.dir == root.join("not_an_app/static"))
        );
    }

    #[test]
    fn no_pulpcore_means_unknown() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "django/contrib/auth/migrations/0001_initial.py",
            "a",
        );
        assert_eq!(
            compute(&[dir.path().to_path_buf()], Scope::All, Kind::Migrations),
            None
        );
    }

    #[test]
    fn the_copy_python_imports_first_wins() {
        let overlay = tempfile::tempdir().unwrap();
        let base = site();
        write(
            overlay.path(),
            "pulpcore/app/migrations/0001_initial.py",
            "changed",
        );
        let roots = [overlay.path().to_path_buf(), base.path().to_path_buf()];
        let with_overlay = compute(&roots, Scope::All, Kind::Migrations).unwrap();
        assert_eq!(with_overlay.files, 4);
        assert_ne!(with_overlay, migrations(base.path()));
    }

    #[test]
    fn static_dirs_list_what_collectstatic_copies() {
        let dir = site();
        write(
            dir.path(),
            "pulpcore/app/static/pulp/css/site.css",
            "body{}",
        );
        write(dir.path(), "pulpcore/app/static/pulp/.hidden", "x");
        write(dir.path(), "pulpcore/app/static/pulp/backup~", "x");
        write(dir.path(), "pulpcore/app/static/CVS/Entries", "x");
        write(
            dir.path(),
            "rest_framework/static/rest_framework/js/a.js",
            "abc",
        );
        let dirs = static_dirs(&[dir.path().to_path_buf()], Scope::All);
        let mut listed: Vec<(String, u64)> = dirs.iter().flat_map(|d| d.files.clone()).collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("pulp/css/site.css".to_string(), 6),
                ("pulp/logo.svg".to_string(), 6),
                ("rest_framework/js/a.js".to_string(), 3),
            ]
        );
        assert_eq!(dirs.len(), 2);
    }

    #[test]
    fn the_static_dir_python_imports_first_wins() {
        let overlay = tempfile::tempdir().unwrap();
        let base = site();
        write(
            overlay.path(),
            "pulpcore/app/static/pulp/logo.svg",
            "<svg></svg>",
        );
        let roots = [overlay.path().to_path_buf(), base.path().to_path_buf()];
        let dirs = static_dirs(&roots, Scope::All);
        assert_eq!(dirs.len(), 1);
        assert!(dirs[0].dir.starts_with(overlay.path()));
        assert_eq!(dirs[0].files, [("pulp/logo.svg".to_string(), 11)]);
    }

    #[test]
    fn static_files_are_counted_recursively() {
        let dir = site();
        let before = compute(&[dir.path().to_path_buf()], Scope::All, Kind::Static).unwrap();
        assert_eq!(before.files, 1);
        write(
            dir.path(),
            "pulpcore/app/static/pulp/css/site.css",
            "body{}",
        );
        assert_ne!(
            before,
            compute(&[dir.path().to_path_buf()], Scope::All, Kind::Static).unwrap()
        );
    }
}
