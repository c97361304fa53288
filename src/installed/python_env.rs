//! Where the Python that runs `pulpcore-manager` keeps its packages, found
//! without starting Python: PATH -> `pulpcore-manager` -> its `#!` line ->
//! the interpreter's prefix -> `lib*/python3.*/site-packages`.
//!
//! Plain directories listed in `.pth` files (editable installs, extra trees)
//! are searched too. When nothing is found the caller falls back to asking
//! Django, so a miss costs time, never correctness.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::find_in_path;

/// The directories Python imports packages from, best first: those of the
/// first `pulpcore-manager` on PATH whose interpreter has pulpcore installed
/// (a wrapper script in front of the real one is looked through).
pub fn package_roots(path_var: Option<&OsStr>) -> Vec<PathBuf> {
    let Some(path_var) = path_var else {
        return Vec::new();
    };
    std::env::split_paths(path_var)
        .map(|dir| dir.join("pulpcore-manager"))
        .filter(|candidate| candidate.is_file())
        .map(|manager| roots_of(&manager, Some(path_var)))
        .find(|roots| roots.iter().any(|root| root.join("pulpcore/app").is_dir()))
        .unwrap_or_default()
}

fn roots_of(manager: &Path, path_var: Option<&OsStr>) -> Vec<PathBuf> {
    let Some(interpreter) = interpreter_of(manager, path_var) else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    for prefix in prefixes(&interpreter) {
        for lib in ["lib", "lib64", "local/lib"] {
            let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
                continue;
            };
            let mut pythons: Vec<PathBuf> = entries
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
                .map(|entry| entry.path())
                .collect();
            pythons.sort();
            for python in pythons {
                for leaf in ["site-packages", "dist-packages"] {
                    push_unique(&mut roots, python.join(leaf));
                }
            }
        }
        push_unique(&mut roots, prefix.join("lib/python3/dist-packages"));
    }
    roots.retain(|root| root.is_dir());
    let pth_dirs: Vec<PathBuf> = roots
        .iter()
        .flat_map(|root| pth_directories(root))
        .collect();
    for dir in pth_dirs {
        push_unique(&mut roots, dir);
    }
    roots
}

fn push_unique(roots: &mut Vec<PathBuf>, path: PathBuf) {
    if !roots.contains(&path) {
        roots.push(path);
    }
}

/// The interpreter named by a script's `#!` line (`#!/usr/bin/env python3` too).
fn interpreter_of(script: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let read = std::io::Read::read(&mut std::fs::File::open(script).ok()?, &mut head).ok()?;
    let first_line = head[..read].split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(first_line.strip_prefix(b"#!")?).ok()?;
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if program.ends_with("/env") {
        let name = words.find(|word| !word.starts_with('-'))?;
        return find_in_path(name, path_var);
    }
    Some(PathBuf::from(program))
}

/// `<venv>/bin/python3` -> `<venv>`; a venv's python is a link to the base
/// interpreter, whose prefix is searched as well only when the venv includes
/// the system site-packages (`pyvenv.cfg`), as Python does.
fn prefixes(interpreter: &Path) -> Vec<PathBuf> {
    let mut prefixes = Vec::new();
    let Some(prefix) = interpreter.parent().and_then(Path::parent) else {
        return prefixes;
    };
    prefixes.push(prefix.to_path_buf());
    if let Ok(config) = std::fs::read_to_string(prefix.join("pyvenv.cfg"))
        && !includes_system_site_packages(&config)
    {
        return prefixes;
    }
    if let Ok(real) = interpreter.canonicalize()
        && let Some(prefix) = real.parent().and_then(Path::parent)
        && !prefixes.iter().any(|p| p == prefix)
    {
        prefixes.push(prefix.to_path_buf());
    }
    prefixes
}

fn includes_system_site_packages(pyvenv_cfg: &str) -> bool {
    pyvenv_cfg.lines().any(|line| {
        let mut parts = line.splitn(2, '=');
        let key = parts.next().unwrap_or("").trim();
        let value = parts.next().unwrap_or("").trim();
        key == "include-system-site-packages" && value.eq_ignore_ascii_case("true")
    })
}

/// Directory lines of `.pth` files; `import` lines are code and are skipped.
fn pth_directories(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        if entry.path().extension() != Some(OsStr::new("pth")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with("import") {
                continue;
            }
            let dir = root.join(line);
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
    }
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn finds_the_venv_site_packages_and_pth_directories() {
        let venv = tempfile::tempdir().unwrap();
        let site = venv.path().join("lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        let editable = venv.path().join("src/plugin");
        std::fs::create_dir_all(&editable).unwrap();
        std::fs::write(
            site.join("plugin.pth"),
            format!("import something\n{}\n", editable.display()),
        )
        .unwrap();
        executable(&venv.path().join("bin/python3"), "");
        executable(
            &venv.path().join("bin/pulpcore-manager"),
            &format!(
                "#!{}\nimport x\n",
                venv.path().join("bin/python3").display()
            ),
        );
        std::fs::create_dir_all(site.join("pulpcore/app")).unwrap();
        // A wrapper in front of the real script is looked through.
        let wrappers = tempfile::tempdir().unwrap();
        executable(
            &wrappers.path().join("pulpcore-manager"),
            "#!/bin/sh\nexec x \"$@\"\n",
        );
        let path_var =
            std::env::join_paths([wrappers.path().to_path_buf(), venv.path().join("bin")]).unwrap();
        let roots = package_roots(Some(&path_var));
        assert_eq!(roots, vec![site, editable]);
    }

    #[test]
    fn env_shebangs_are_followed_and_missing_manager_gives_nothing() {
        let venv = tempfile::tempdir().unwrap();
        let site = venv.path().join("lib/python3.12/site-packages");
        std::fs::create_dir_all(site.join("pulpcore/app")).unwrap();
        executable(&venv.path().join("bin/python3"), "");
        executable(
            &venv.path().join("bin/pulpcore-manager"),
            "#!/usr/bin/env python3\n",
        );
        let path_var = venv.path().join("bin");
        assert_eq!(package_roots(Some(path_var.as_os_str())), vec![site]);
        let empty = tempfile::tempdir().unwrap();
        assert!(package_roots(Some(empty.path().as_os_str())).is_empty());
    }
}
