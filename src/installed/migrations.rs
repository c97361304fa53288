//! Which migrations the installed Django apps have, found without Python,
//! so that "every migration is applied" can be decided by comparing them
//! with the `(app, name)` rows of `django_migrations`, whoever applied them.
//!
//! The apps are pulpcore's: the `INSTALLED_APPS` and `OPTIONAL_APPS` string
//! lists of the installed `pulpcore/app/settings.py` (an optional app only
//! when its package is there, as pulpcore imports it to decide), plus every
//! `pulpcore.plugin` entry point of the installed distributions (filtered by
//! `ENABLED_PLUGINS` where that pulpcore reads it). Each app's label is the
//! `label` of its AppConfig class (`core` for `pulpcore.app`), else the
//! last part of its module, as Django does; its migrations are the modules
//! of its `migrations` package that do not start with `_` or `~`. A
//! squashed migration counts as applied when its own row or the rows of
//! everything it `replaces` are there; the migrations it replaces are then
//! not required on their own.
//!
//! Anything this cannot read exactly (no pulpcore settings file, a list it
//! cannot parse, a plugin whose AppConfig is not found, settings that change
//! `INSTALLED_APPS` or `MIGRATION_MODULES`) makes the answer unknown: the
//! caller then asks Django, never assumes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::fingerprint::Scope;

/// One installed app with migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub label: String,
    pub module: String,
    pub migrations: Vec<Migration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub name: String,
    /// `(app_label, name)` pairs a squashed migration stands for.
    pub replaces: Vec<(String, String)>,
}

/// What pulpcore's settings say that affects which apps are installed.
#[derive(Debug, Clone, Default)]
pub struct AppSettings<'a> {
    /// `ENABLED_PLUGINS` when set.
    pub enabled_plugins: Option<&'a [String]>,
    /// The name of a setting that changes the apps or their migration
    /// modules (`INSTALLED_APPS`, `MIGRATION_MODULES`), when one is set.
    pub overridden: Option<&'a str>,
}

/// Why the installed migrations are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unknown(pub String);

fn unknown(text: impl Into<String>) -> Unknown {
    Unknown(text.into())
}

/// The installed apps that have migrations.
pub fn installed_apps(roots: &[PathBuf], settings: &AppSettings) -> Result<Vec<App>, Unknown> {
    apps_with_migrations(roots, &app_entries(roots, settings)?)
}

/// The installed apps: their `INSTALLED_APPS` entries are read at once
/// (two or three small files), their migrations only when asked for (every
/// migration file is read), since a start whose record matches never needs
/// them.
#[derive(Debug, Clone)]
pub struct InstalledApps {
    roots: Vec<PathBuf>,
    entries: Result<Vec<String>, Unknown>,
    /// `(package root, directory)` of each entry found, for [`Scope::Apps`].
    dirs: Vec<(PathBuf, PathBuf)>,
    apps: OnceLock<Result<Vec<App>, Unknown>>,
}

impl InstalledApps {
    pub fn find(roots: &[PathBuf], settings: &AppSettings) -> InstalledApps {
        let entries = app_entries(roots, settings);
        let dirs = entries
            .iter()
            .flatten()
            .filter_map(|entry| locate(roots, entry))
            .map(|located| (located.root, located.dir))
            .collect();
        InstalledApps {
            roots: roots.to_vec(),
            entries,
            dirs,
            apps: OnceLock::new(),
        }
    }

    /// What the fingerprint reads: the apps' directories, or everything
    /// when the apps are not known.
    pub fn scope(&self) -> Scope<'_> {
        match self.entries {
            Ok(_) => Scope::Apps(&self.dirs),
            Err(_) => Scope::All,
        }
    }

    /// The apps with their migrations, read on the first call.
    pub fn with_migrations(&self) -> &Result<Vec<App>, Unknown> {
        self.apps.get_or_init(|| {
            let apps = match &self.entries {
                Ok(entries) => apps_with_migrations(&self.roots, entries),
                Err(why) => Err(why.clone()),
            };
            if let Err(why) = &apps {
                tracing::info!(
                    "the installed migrations cannot be compared with the database ({why}): Django decides"
                );
            }
            apps
        })
    }
}

/// pulpcore's `INSTALLED_APPS` entries, with the optional apps that are
/// installed and the enabled plugins' AppConfigs.
fn app_entries(roots: &[PathBuf], settings: &AppSettings) -> Result<Vec<String>, Unknown> {
    if let Some(name) = settings.overridden {
        return Err(unknown(format!(
            "the settings set {name}, which only Django can resolve"
        )));
    }
    let pulpcore_settings = find_module_file(roots, "pulpcore.app.settings")
        .ok_or_else(|| unknown("pulpcore/app/settings.py not found in site-packages"))?;
    let source = std::fs::read_to_string(&pulpcore_settings)
        .map_err(|error| unknown(format!("{}: {error}", pulpcore_settings.display())))?;
    let mut modules = string_list(&source, "INSTALLED_APPS").ok_or_else(|| {
        unknown(format!(
            "{}: INSTALLED_APPS is not a list of strings",
            pulpcore_settings.display()
        ))
    })?;
    if let Some(optional) = string_list(&source, "OPTIONAL_APPS") {
        modules.extend(
            optional
                .into_iter()
                .filter(|module| find_package(roots, module).is_some()),
        );
    }
    // pulpcore that reads ENABLED_PLUGINS has the name in its settings module.
    let filter = settings
        .enabled_plugins
        .filter(|_| source.contains("ENABLED_PLUGINS"));
    for (name, target) in plugin_entry_points(roots) {
        if filter.is_some_and(|enabled| !enabled.contains(&name)) {
            continue;
        }
        modules.push(plugin_app_config(roots, &name, &target)?);
    }
    Ok(modules)
}

fn apps_with_migrations(roots: &[PathBuf], entries: &[String]) -> Result<Vec<App>, Unknown> {
    let mut apps = Vec::new();
    for entry in entries {
        if let Some(app) = app(roots, entry)? {
            apps.push(app);
        }
    }
    Ok(apps)
}

/// The migrations not applied yet, as `app.name`; empty when every one is.
pub fn unapplied(apps: &[App], applied: &HashSet<(String, String)>) -> Vec<String> {
    let is_applied = |label: &str, name: &str| applied.contains(&(label.to_string(), name.into()));
    let replaced: HashSet<(&str, &str)> = apps
        .iter()
        .flat_map(|app| app.migrations.iter())
        .flat_map(|m| m.replaces.iter().map(|(a, n)| (a.as_str(), n.as_str())))
        .collect();
    let mut missing = Vec::new();
    for app in apps {
        for migration in &app.migrations {
            if replaced.contains(&(app.label.as_str(), migration.name.as_str())) {
                continue;
            }
            let done = is_applied(&app.label, &migration.name)
                || (!migration.replaces.is_empty()
                    && migration.replaces.iter().all(|(a, n)| is_applied(a, n)));
            if !done {
                missing.push(format!("{}.{}", app.label, migration.name));
            }
        }
    }
    missing
}

/// An INSTALLED_APPS entry (a module or an AppConfig class path) as an app,
/// `None` when it has no migrations package.
fn app(roots: &[PathBuf], entry: &str) -> Result<Option<App>, Unknown> {
    let Some(Located {
        dir, module, class, ..
    }) = locate(roots, entry)
    else {
        // Not installed (pulpcore would not start either): nothing to wait for.
        return Ok(None);
    };
    let migrations_dir = dir.join("migrations");
    if !migrations_dir.join("__init__.py").is_file() {
        return Ok(None);
    }
    let label = app_label(&dir, &module, class.as_deref())?;
    let migrations = migrations_in(&migrations_dir)?;
    Ok(Some(App {
        label,
        module,
        migrations,
    }))
}

/// The label of the AppConfig class `class` (or, for a plain module, of the
/// class in `apps.py` whose `name` is the module), or Django's default.
fn app_label(dir: &Path, module: &str, class: Option<&str>) -> Result<String, Unknown> {
    let default = module.rsplit('.').next().unwrap_or(module).to_string();
    for file in ["apps.py", "__init__.py"] {
        let Ok(source) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        for body in class_bodies(&source) {
            let matches = match class {
                Some(class) => body.name == class,
                None => body.attribute("name").as_deref() == Some(module),
            };
            if matches {
                return Ok(body.attribute("label").unwrap_or(default));
            }
        }
    }
    match class {
        Some(class) => Err(unknown(format!(
            "the AppConfig class {module}.{class} was not found"
        ))),
        None => Ok(default),
    }
}

fn migrations_in(dir: &Path) -> Result<Vec<Migration>, Unknown> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| unknown(format!("{}: {error}", dir.display())))?;
    let mut migrations = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".py"))
        else {
            continue;
        };
        if name.starts_with(['_', '~']) || !path.is_file() {
            continue;
        }
        let source = std::fs::read_to_string(&path)
            .map_err(|error| unknown(format!("{}: {error}", path.display())))?;
        let replaces = replaces(&source).ok_or_else(|| {
            unknown(format!(
                "{}: `replaces` is not a list of (app, name) pairs",
                path.display()
            ))
        })?;
        migrations.push(Migration {
            name: name.to_string(),
            replaces,
        });
    }
    migrations.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(migrations)
}

/// The `replaces = [("app", "name"), ...]` of a migration; empty when it
/// has none, `None` when it has one that is not plain string pairs.
fn replaces(source: &str) -> Option<Vec<(String, String)>> {
    let Some(start) = source.lines().position(|line| {
        let line = line.trim_start();
        line.strip_prefix("replaces")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    }) else {
        return Some(Vec::new());
    };
    let text: String = source.lines().skip(start).collect::<Vec<_>>().join("\n");
    let open = text.find(['[', '('])?;
    let strings = bracketed_strings(&text[open..])?;
    if strings.len() % 2 != 0 {
        return None;
    }
    Some(
        strings
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
    )
}

/// The string literals of `NAME = [ ... ]` at the top level of a module.
fn string_list(source: &str, name: &str) -> Option<Vec<String>> {
    let line = source.lines().position(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })?;
    let text: String = source.lines().skip(line).collect::<Vec<_>>().join("\n");
    let open = text.find('[')?;
    // Only `= [` (spaces allowed) is a literal list.
    if text[..open].trim_end().trim_start_matches(name).trim() != "=" {
        return None;
    }
    bracketed_strings(&text[open..])
}

/// The quoted strings inside the bracket that `text` starts with, up to its
/// matching close; `None` when anything other than strings, commas,
/// brackets, whitespace and comments is inside (a name, a call, an f-string).
fn bracketed_strings(text: &str) -> Option<Vec<String>> {
    let mut strings = Vec::new();
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(strings);
                }
            }
            ',' => {}
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '\\' => return None,
                        '\n' => return None,
                        end if end == c => break,
                        other => value.push(other),
                    }
                }
                strings.push(value);
            }
            _ => return None,
        }
    }
    None
}

/// A top-level class: its name and the lines of its body.
struct ClassBody<'a> {
    name: &'a str,
    lines: Vec<&'a str>,
}

impl ClassBody<'_> {
    /// A `NAME = "literal"` line directly in the class body.
    fn attribute(&self, name: &str) -> Option<String> {
        self.lines.iter().find_map(|line| {
            let indented = line.strip_prefix("    ")?;
            if indented.starts_with(' ') {
                return None;
            }
            let rest = indented
                .strip_prefix(name)?
                .trim_start()
                .strip_prefix('=')?;
            let rest = rest.trim();
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let inner = rest[1..].strip_suffix(quote)?;
            (!inner.contains(quote)).then(|| inner.to_string())
        })
    }
}

fn class_bodies(source: &str) -> Vec<ClassBody<'_>> {
    let mut classes: Vec<ClassBody> = Vec::new();
    let mut inside = false;
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("class ") {
            let name = rest.split(['(', ':']).next().unwrap_or("").trim();
            classes.push(ClassBody {
                name,
                lines: Vec::new(),
            });
            inside = true;
        } else if !line.starts_with([' ', '\t']) && !line.trim().is_empty() {
            // Back at the top level: the class ended.
            inside = false;
        } else if inside && let Some(last) = classes.last_mut() {
            last.lines.push(line);
        }
    }
    classes
}

/// `(name, "module:attribute")` of every `pulpcore.plugin` entry point.
fn plugin_entry_points(roots: &[PathBuf]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut dist_infos: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "dist-info"))
            .collect();
        dist_infos.sort();
        for dist_info in dist_infos {
            let Ok(text) = std::fs::read_to_string(dist_info.join("entry_points.txt")) else {
                continue;
            };
            let mut in_group = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_group = line == "[pulpcore.plugin]";
                    continue;
                }
                if !in_group || line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some((name, target)) = line.split_once('=') {
                    let name = name.trim().to_string();
                    if !found.iter().any(|(known, _)| *known == name) {
                        found.push((name, target.trim().to_string()));
                    }
                }
            }
        }
    }
    found
}

/// What a plugin entry point loads: `pulp_file:default_app_config` is the
/// string `default_app_config` of `pulp_file/__init__.py`.
fn plugin_app_config(roots: &[PathBuf], name: &str, target: &str) -> Result<String, Unknown> {
    let fail = || {
        unknown(format!(
            "the AppConfig of plugin {name} ({target}) could not be read"
        ))
    };
    let (module, attribute) = target.split_once(':').ok_or_else(fail)?;
    let path = find_module_file(roots, module.trim()).ok_or_else(fail)?;
    let source = std::fs::read_to_string(path).map_err(|_| fail())?;
    let attribute = attribute.trim();
    source
        .lines()
        .find_map(|line| {
            let rest = line
                .strip_prefix(attribute)?
                .trim_start()
                .strip_prefix('=')?;
            let rest = rest.trim();
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            rest[1..].strip_suffix(quote).map(str::to_string)
        })
        .ok_or_else(fail)
}

/// The package of an INSTALLED_APPS entry.
struct Located {
    /// The package root it is below.
    root: PathBuf,
    dir: PathBuf,
    module: String,
    /// The AppConfig class an entry like `pulp_file.app.PulpFilePluginAppConfig` names.
    class: Option<String>,
}

/// An entry is a module or an AppConfig class path (a class in a module).
fn locate(roots: &[PathBuf], entry: &str) -> Option<Located> {
    if let Some((root, dir)) = find_package_in(roots, entry) {
        return Some(Located {
            root,
            dir,
            module: entry.to_string(),
            class: None,
        });
    }
    let (module, class) = entry.rsplit_once('.')?;
    let (root, dir) = find_package_in(roots, module)?;
    Some(Located {
        root,
        dir,
        module: module.to_string(),
        class: Some(class.to_string()),
    })
}

/// The directory of a package (`a.b` -> `<root>/a/b` with `__init__.py`).
fn find_package(roots: &[PathBuf], module: &str) -> Option<PathBuf> {
    find_package_in(roots, module).map(|(_, dir)| dir)
}

/// The directory of a package and the root it was found in.
fn find_package_in(roots: &[PathBuf], module: &str) -> Option<(PathBuf, PathBuf)> {
    let relative: PathBuf = module.split('.').collect();
    roots
        .iter()
        .map(|root| (root.clone(), root.join(&relative)))
        .find(|(_, dir)| dir.join("__init__.py").is_file())
}

/// The file of a module: `a/b.py` or `a/b/__init__.py`.
fn find_module_file(roots: &[PathBuf], module: &str) -> Option<PathBuf> {
    let relative: PathBuf = module.split('.').collect();
    roots.iter().find_map(|root| {
        let base = root.join(&relative);
        let file = base.with_extension("py");
        if file.is_file() {
            return Some(file);
        }
        let init = base.join("__init__.py");
        init.is_file().then_some(init)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::installed::write_test_file as write;

    /// A small site-packages shaped like pulpcore's.
    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "pulpcore/app/settings.py",
            "import os\nINSTALLED_APPS = [\n    # django stuff\n    \"django.contrib.auth\",\n    'pulpcore.app',\n    \"no_migrations\",\n]\n\nOPTIONAL_APPS = [\"storages\", \"absent\"]\nenabled = ENABLED_PLUGINS\n",
        );
        write(root, "pulpcore/__init__.py", "");
        write(root, "pulpcore/app/__init__.py", "");
        write(
            root,
            "pulpcore/app/apps.py",
            "class PulpPluginAppConfig(apps.AppConfig):\n    label = None\n\n\nclass PulpAppConfig(PulpPluginAppConfig):\n    name = \"pulpcore.app\"\n    default = True\n    label = \"core\"\n",
        );
        write(root, "pulpcore/app/migrations/__init__.py", "");
        write(
            root,
            "pulpcore/app/migrations/0001_squashed_0003.py",
            "class Migration(migrations.Migration):\n    replaces = [('core', '0001_initial'), (\"core\", \"0002_x\"),\n        ('core', '0003_y')]\n",
        );
        write(root, "pulpcore/app/migrations/0001_initial.py", "");
        write(root, "pulpcore/app/migrations/0004_z.py", "");
        write(root, "pulpcore/app/migrations/__pycache__/x.pyc", "");
        write(root, "django/__init__.py", "");
        write(root, "django/contrib/__init__.py", "");
        write(root, "django/contrib/auth/__init__.py", "");
        write(
            root,
            "django/contrib/auth/apps.py",
            "class AuthConfig(AppConfig):\n    default_auto_field = \"x\"\n    name = \"django.contrib.auth\"\n",
        );
        write(root, "django/contrib/auth/migrations/__init__.py", "");
        write(root, "django/contrib/auth/migrations/0001_initial.py", "");
        // Installed but not an installed app: never waited for.
        write(root, "django/contrib/sites/__init__.py", "");
        write(root, "django/contrib/sites/migrations/__init__.py", "");
        write(root, "django/contrib/sites/migrations/0001_initial.py", "");
        write(root, "no_migrations/__init__.py", "");
        write(root, "storages/__init__.py", "");
        write(
            root,
            "pulpcore-3.1.0.dist-info/entry_points.txt",
            "[console_scripts]\npulpcore-api = x:y\n\n[pulpcore.plugin]\npulp_file = pulp_file:default_app_config\n",
        );
        write(
            root,
            "pulp_file/__init__.py",
            "default_app_config = \"pulp_file.app.PulpFilePluginAppConfig\"\n",
        );
        write(
            root,
            "pulp_file/app/__init__.py",
            "class PulpFilePluginAppConfig(PulpPluginAppConfig):\n    name = \"pulp_file.app\"\n    label = \"file\"\n",
        );
        write(root, "pulp_file/app/migrations/__init__.py", "");
        write(root, "pulp_file/app/migrations/0001_initial.py", "");
        dir
    }

    #[test]
    fn installed_apps_are_located_at_once_and_read_when_asked() {
        let dir = site();
        let root = dir.path().to_path_buf();
        let installed = InstalledApps::find(std::slice::from_ref(&root), &AppSettings::default());
        let Scope::Apps(dirs) = installed.scope() else {
            panic!("the apps are known");
        };
        let dirs: Vec<&Path> = dirs.iter().map(|(_, dir)| dir.as_path()).collect();
        let expected = [
            "django/contrib/auth",
            "pulpcore/app",
            "no_migrations",
            "storages",
            "pulp_file/app",
        ];
        assert_eq!(
            dirs,
            expected
                .map(|app| root.join(app))
                .iter()
                .map(PathBuf::as_path)
                .collect::<Vec<_>>()
        );
        assert!(installed.apps.get().is_none(), "no migration read yet");
        assert_eq!(
            installed.with_migrations(),
            &installed_apps(std::slice::from_ref(&root), &AppSettings::default())
        );
        let overridden = AppSettings {
            overridden: Some("INSTALLED_APPS"),
            ..AppSettings::default()
        };
        let unknown = InstalledApps::find(&[root], &overridden);
        assert!(matches!(unknown.scope(), Scope::All));
        assert!(unknown.with_migrations().is_err());
    }

    fn rows(pairs: &[(&str, &str)]) -> HashSet<(String, String)> {
        pairs
            .iter()
            .map(|(a, n)| (a.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn apps_labels_and_migrations_are_read_like_django() {
        let dir = site();
        let apps = installed_apps(&[dir.path().to_path_buf()], &AppSettings::default()).unwrap();
        let labels: Vec<&str> = apps.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["auth", "core", "file"]);
        let core = &apps[1];
        let names: Vec<&str> = core.migrations.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["0001_initial", "0001_squashed_0003", "0004_z"]);
        assert_eq!(core.migrations[1].replaces.len(), 3);
    }

    #[test]
    fn squashed_migrations_count_either_way() {
        let dir = site();
        let apps = installed_apps(&[dir.path().to_path_buf()], &AppSettings::default()).unwrap();
        let old_rows = rows(&[
            ("auth", "0001_initial"),
            ("core", "0001_initial"),
            ("core", "0002_x"),
            ("core", "0003_y"),
            ("core", "0004_z"),
            ("file", "0001_initial"),
        ]);
        assert!(unapplied(&apps, &old_rows).is_empty());
        let squashed_rows = rows(&[
            ("auth", "0001_initial"),
            ("core", "0001_squashed_0003"),
            ("core", "0004_z"),
            ("file", "0001_initial"),
        ]);
        assert!(unapplied(&apps, &squashed_rows).is_empty());
        let partial = rows(&[
            ("auth", "0001_initial"),
            ("core", "0001_initial"),
            ("core", "0004_z"),
        ]);
        assert_eq!(
            unapplied(&apps, &partial),
            ["core.0001_squashed_0003", "file.0001_initial"]
        );
    }

    #[test]
    fn enabled_plugins_leave_others_out() {
        let dir = site();
        let enabled = vec!["pulp_rpm".to_string()];
        let settings = AppSettings {
            enabled_plugins: Some(&enabled),
            overridden: None,
        };
        let apps = installed_apps(&[dir.path().to_path_buf()], &settings).unwrap();
        assert!(apps.iter().all(|app| app.label != "file"));
    }

    #[test]
    fn what_cannot_be_read_exactly_is_unknown() {
        let dir = site();
        let roots = [dir.path().to_path_buf()];
        let overridden = AppSettings {
            enabled_plugins: None,
            overridden: Some("INSTALLED_APPS"),
        };
        assert!(installed_apps(&roots, &overridden).is_err());
        write(
            dir.path(),
            "pulp_file/app/migrations/0002_more.py",
            "    replaces = [('file', name)]\n",
        );
        let error = installed_apps(&roots, &AppSettings::default()).unwrap_err();
        assert!(error.0.contains("0002_more.py"), "{error}");
        write(
            dir.path(),
            "pulpcore/app/settings.py",
            "INSTALLED_APPS = BASE + [\"x\"]\n",
        );
        assert!(installed_apps(&roots, &AppSettings::default()).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(installed_apps(&[empty.path().to_path_buf()], &AppSettings::default()).is_err());
    }
}
