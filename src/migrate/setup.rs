//! First-run setup that needs no database: Pulp's directories and the
//! database field encryption key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::settings::{MediaRoot, PulpSettings};
use crate::sourced::Source;

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
    #[error(
        "MEDIA_ROOT is empty ({origin}) while artifacts are stored by {backend}, which would put them in each process's current directory (a worker's is deleted after every task): set MEDIA_ROOT to a directory, or STORAGES[\"default\"][\"BACKEND\"] to your object storage"
    )]
    EmptyMediaRoot { origin: Source, backend: String },
}

impl SetupError {
    /// A mistake in the settings rather than in the file system.
    pub fn is_configuration(&self) -> bool {
        matches!(self, SetupError::EmptyMediaRoot { .. })
    }

    /// What went wrong, without the fix, for messages that give their own.
    pub fn reason(&self) -> String {
        match self {
            SetupError::Directory { reason, .. } | SetupError::Key { reason, .. } => reason.clone(),
            SetupError::NotWritable { uid, .. } => format!("not writable by uid {uid}"),
            SetupError::EmptyMediaRoot { .. } => self.to_string(),
        }
    }
}

/// Which of Pulp's directories a start prepares. Every role writes
/// WORKING_DIRECTORY (task directories, upload temporary files, the content
/// app's current directory) and a local MEDIA_ROOT (api uploads, the content
/// app's on-demand downloads, worker tasks); only collectstatic, in the api's
/// start phase, writes STATIC_ROOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directories {
    /// Create STATIC_ROOT when missing. Not being able to write it is no
    /// error: the report says so, and the api decides about collectstatic.
    pub static_root: bool,
}

/// What setup did, for the log.
#[derive(Debug, Default)]
pub struct SetupReport {
    pub created_directories: Vec<PathBuf>,
    pub created_key: Option<PathBuf>,
    /// Why STATIC_ROOT cannot be written, when it was wanted and cannot.
    pub static_root_unwritable: Option<SetupError>,
}

/// Create the directories every role writes when missing (group 0 may write
/// them, as the images do for arbitrary UIDs) and check that they are
/// writable; try the same for STATIC_ROOT when wanted; create the encryption
/// key when it does not exist.
pub fn prepare_local(
    settings: &PulpSettings,
    wanted: Directories,
) -> Result<SetupReport, SetupError> {
    let mut report = SetupReport::default();
    for dir in required_directories(settings)? {
        if ensure_directory(dir)? {
            report.created_directories.push(dir.to_path_buf());
        }
    }
    if wanted.static_root {
        let dir = &settings.static_root.value;
        match ensure_directory(dir) {
            Ok(true) => report.created_directories.push(dir.clone()),
            Ok(false) => {}
            Err(error) => report.static_root_unwritable = Some(error),
        }
    }
    let key = &settings.db_encryption_key.value;
    if create_key_if_missing(key)? {
        report.created_key = Some(key.clone());
    }
    Ok(report)
}

/// MEDIA_ROOT when artifacts are files there, and WORKING_DIRECTORY.
fn required_directories(settings: &PulpSettings) -> Result<Vec<&Path>, SetupError> {
    let mut dirs = Vec::new();
    match &settings.media_root.value {
        MediaRoot::Local(path) => dirs.push(path.as_path()),
        MediaRoot::NotUsed => {}
        MediaRoot::Empty => {
            return Err(SetupError::EmptyMediaRoot {
                origin: settings.media_root.source.clone(),
                backend: settings
                    .default_storage
                    .backend
                    .as_ref()
                    .map_or_else(|| "file-system storage".into(), |b| b.value.clone()),
            });
        }
    }
    dirs.push(&settings.working_directory.value);
    Ok(dirs)
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
    // A random temporary name: every replica is PID 1 of its own container,
    // so a name made of the pid is the same in all of them.
    let result = (|| {
        let mut file = tempfile::Builder::new()
            .prefix(".pulp-entrypoint-key.")
            .permissions(std::fs::Permissions::from_mode(0o640))
            .tempfile_in(dir)?;
        file.write_all(encoded.as_bytes())?;
        file.as_file().sync_all()?;
        // link(2): fails if the key appeared meanwhile, never replaces it.
        file.persist_noclobber(path).map_err(|error| error.error)
    })();
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(fail(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;

    /// A site whose three directories are below a temporary directory,
    /// with `extra` settings lines after them (later assignments win).
    struct Site {
        dir: tempfile::TempDir,
    }

    impl Site {
        fn new() -> Site {
            Site {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.dir.path().join(relative)
        }

        fn settings(&self, extra: &str) -> PulpSettings {
            let file = self.path("settings.py");
            std::fs::write(
                &file,
                format!(
                    "MEDIA_ROOT = '{root}/media'\nWORKING_DIRECTORY = '{root}/tmp'\nSTATIC_ROOT = '{root}/static'\nDB_ENCRYPTION_KEY = '{root}/key'\n{extra}\n",
                    root = self.dir.path().display()
                ),
            )
            .unwrap();
            crate::settings::load(&Environment::from_pairs([(
                "PULP_SETTINGS",
                file.display().to_string(),
            )]))
            .unwrap()
        }

        /// A regular file, so that nothing below it can be created, even by root.
        fn file_in_the_way(&self) -> PathBuf {
            let file = self.path("a-file");
            std::fs::write(&file, "").unwrap();
            file
        }
    }

    const API: Directories = Directories { static_root: true };
    const WORKER: Directories = Directories { static_root: false };

    /// Run `check` while `dir` cannot be written. Root writes through any
    /// mode, so as root `dir` becomes a read-only bind mount, in a mount
    /// namespace of a thread of its own (gone with the thread); otherwise its
    /// mode becomes 0555 for the duration.
    fn while_read_only(dir: &Path, check: impl FnOnce() + Send) {
        use nix::mount::{MsFlags, mount};
        if !nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            check();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
            return;
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                        .expect("as root, this test needs a mount namespace (CAP_SYS_ADMIN)");
                    // Private first, so that the bind mount stays in this namespace.
                    let none: Option<&str> = None;
                    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).unwrap();
                    mount(Some(dir), dir, none, MsFlags::MS_BIND, none).unwrap();
                    let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                    mount(none, dir, none, read_only, none).unwrap();
                    check();
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
    }

    #[test]
    fn content_and_worker_never_touch_static_root() {
        let site = Site::new();
        let static_root = site.file_in_the_way().join("static");
        let settings = site.settings(&format!("STATIC_ROOT = '{}'", static_root.display()));
        let report = prepare_local(&settings, WORKER).unwrap();
        assert_eq!(
            report.created_directories,
            [site.path("media"), site.path("tmp")]
        );
        assert!(report.static_root_unwritable.is_none());
    }

    #[test]
    fn an_uncreatable_static_root_is_reported_not_fatal() {
        let site = Site::new();
        let static_root = site.file_in_the_way().join("static");
        let settings = site.settings(&format!("STATIC_ROOT = '{}'", static_root.display()));
        let report = prepare_local(&settings, API).unwrap();
        let error = report.static_root_unwritable.expect("reported");
        assert!(matches!(error, SetupError::Directory { .. }), "{error}");
        assert!(site.path("media").is_dir() && site.path("tmp").is_dir());
    }

    #[test]
    fn a_read_only_static_root_is_reported_not_fatal() {
        let site = Site::new();
        let settings = site.settings("");
        std::fs::create_dir(site.path("static")).unwrap();
        while_read_only(&site.path("static"), || {
            let report = prepare_local(&settings, API).unwrap();
            let error = report.static_root_unwritable.expect("reported");
            assert!(matches!(error, SetupError::NotWritable { .. }), "{error}");
            assert!(error.reason().contains("not writable by uid"), "{error}");
        });
    }

    #[test]
    fn a_writable_static_root_is_created_for_the_api() {
        let site = Site::new();
        let report = prepare_local(&site.settings(""), API).unwrap();
        assert!(report.created_directories.contains(&site.path("static")));
        assert!(report.static_root_unwritable.is_none());
    }

    #[test]
    fn a_read_only_working_directory_stops_every_role() {
        let site = Site::new();
        let settings = site.settings("");
        std::fs::create_dir(site.path("tmp")).unwrap();
        while_read_only(&site.path("tmp"), || {
            for wanted in [API, WORKER] {
                let error = prepare_local(&settings, wanted).unwrap_err();
                assert!(matches!(error, SetupError::NotWritable { .. }), "{error}");
                assert!(error.to_string().contains("/tmp"), "{error}");
            }
        });
    }

    #[test]
    fn object_storage_needs_no_media_root() {
        let site = Site::new();
        let media = site.file_in_the_way().join("media");
        for storage in [
            "MEDIA_ROOT = ''\nSTORAGES = {'default': {'BACKEND': 'storages.backends.s3boto3.S3Boto3Storage'}}".to_string(),
            "MEDIA_ROOT = ''\nDEFAULT_FILE_STORAGE = 'storages.backends.s3boto3.S3Boto3Storage'".to_string(),
            // Not even a MEDIA_ROOT that is set: django-storages writes nothing locally.
            format!("MEDIA_ROOT = '{}'\nSTORAGES = {{'default': {{'BACKEND': 'storages.backends.azure_storage.AzureStorage'}}}}", media.display()),
        ] {
            let settings = site.settings(&storage);
            assert_eq!(settings.media_root.value, MediaRoot::NotUsed, "{storage}");
            let report = prepare_local(&settings, WORKER).unwrap();
            assert!(
                !report.created_directories.iter().any(|dir| dir.ends_with("media")),
                "{storage}: {:?}",
                report.created_directories
            );
        }
    }

    #[test]
    fn empty_media_root_with_file_system_storage_is_a_configuration_error() {
        let site = Site::new();
        let settings = site.settings("MEDIA_ROOT = ''");
        let error = prepare_local(&settings, WORKER).unwrap_err();
        assert!(error.is_configuration(), "{error}");
        let message = error.to_string();
        assert!(message.starts_with("MEDIA_ROOT is empty ("), "{message}");
        assert!(message.contains("settings.py:5"), "{message}");
        assert!(
            message.contains(crate::settings::FILE_SYSTEM_STORAGE),
            "{message}"
        );
        assert!(
            message.contains("set MEDIA_ROOT to a directory"),
            "{message}"
        );
        assert!(
            !site.path("tmp").exists(),
            "refused before creating anything"
        );
    }

    /// Replicas on one shared volume, each PID 1 (here: threads of one
    /// process, so they share the pid too): exactly one creates the key,
    /// and none returns before the key is there.
    #[test]
    fn replicas_creating_the_key_at_once_agree_on_one() {
        for _ in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("certs/database_fields.symmetric.key");
            let barrier = std::sync::Barrier::new(8);
            let created: Vec<bool> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let created = create_key_if_missing(&key).unwrap();
                            assert!(key.is_file(), "returned before the key existed");
                            created
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
            let entries: Vec<_> = std::fs::read_dir(key.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(entries.len(), 1, "temporary files left: {entries:?}");
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
    }

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
