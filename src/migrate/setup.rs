//! First-run setup that needs no database: Pulp's directories and the
//! database field encryption key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::settings::PulpSettings;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "cannot create {path}: {reason}; create it (group 0, mode 2775) or mount a writable volume there"
    )]
    Directory { path: PathBuf, reason: String },
    #[error(
        "{path} is not writable by uid {uid}: make it group-writable for group 0 (chmod 2775) or run as its owner"
    )]
    NotWritable { path: PathBuf, uid: u32 },
    #[error(
        "DB_ENCRYPTION_KEY {path} does not exist and cannot be created: {reason}; mount the key (a Secret) there, or make the directory writable"
    )]
    Key { path: PathBuf, reason: String },
}

/// What setup did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetupReport {
    pub created_directories: Vec<PathBuf>,
    pub created_key: Option<PathBuf>,
}

/// Create MEDIA_ROOT, WORKING_DIRECTORY and STATIC_ROOT when missing (group
/// 0 may write them, as the images do for arbitrary UIDs), check that they are
/// writable, and create the encryption key when it does not exist.
pub fn prepare_local(settings: &PulpSettings) -> Result<SetupReport, SetupError> {
    let mut report = SetupReport::default();
    for dir in [
        &settings.media_root.value,
        &settings.working_directory.value,
        &settings.static_root.value,
    ] {
        if ensure_directory(dir)? {
            report.created_directories.push(dir.clone());
        }
    }
    let key = &settings.db_encryption_key.value;
    if create_key_if_missing(key)? {
        report.created_key = Some(key.clone());
    }
    Ok(report)
}

/// True when the directory was created.
fn ensure_directory(dir: &Path) -> Result<bool, SetupError> {
    let created = if dir.is_dir() {
        false
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o2775)
            .create(dir)
            .map_err(|error| SetupError::Directory {
                path: dir.to_path_buf(),
                reason: error.to_string(),
            })?;
        // The umask may have removed group write; set the mode we mean.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2775));
        true
    };
    if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(SetupError::NotWritable {
            path: dir.to_path_buf(),
            uid: nix::unistd::geteuid().as_raw(),
        });
    }
    Ok(created)
}

/// Write 32 random bytes, url-safe base64, as pulpcore expects. The key is
/// written to a temporary file and hard-linked into place, so two replicas
/// sharing a volume cannot both create one: the second link fails and the
/// first key stays.
fn create_key_if_missing(path: &Path) -> Result<bool, SetupError> {
    if path.exists() {
        return Ok(false);
    }
    let fail = |reason: String| SetupError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o2770)
        .create(dir)
        .map_err(|e| fail(e.to_string()))?;
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| fail(e.to_string()))?,
        &mut bytes,
    )
    .map_err(|e| fail(e.to_string()))?;
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(bytes);
    let temporary = dir.join(format!(
        ".{}.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&temporary)?;
        file.write_all(encoded.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    match result {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(fail(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("certs/database_fields.symmetric.key");
        assert!(create_key_if_missing(&key).unwrap());
        let first = std::fs::read_to_string(&key).unwrap();
        let decoded = base64::engine::general_purpose::URL_SAFE
            .decode(first.trim())
            .unwrap();
        assert_eq!(decoded.len(), 32);
        assert!(!create_key_if_missing(&key).unwrap());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), first);
        assert_eq!(std::fs::read_dir(key.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn directories_are_created_group_writable() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("pulp/media");
        assert!(ensure_directory(&media).unwrap());
        let mode = std::fs::metadata(&media).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o2775);
        assert!(!ensure_directory(&media).unwrap());
    }

    #[test]
    fn an_uncreatable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let error = ensure_directory(&file.join("media"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("cannot create"), "{error}");
        assert!(error.contains("writable volume"), "{error}");
    }
}
