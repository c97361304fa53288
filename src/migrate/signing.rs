//! Signing services, as Pulp's images added them on first run: when
//! `PULP_SIGNING_KEY_FINGERPRINT` is set, `pulpcore-manager add-signing-service`
//! for the collection script and (with pulp_container) the container script.
//!
//! Which services are wanted is decided here without Python, once per start;
//! the coordinator adds, under the setup lock, those whose name has no row in
//! `core_signingservice`. A service is immutable in pulpcore, so an existing
//! row is never replaced, only reported when its key differs.

use std::path::{Path, PathBuf};

use crate::environment::Environment;

pub const FINGERPRINT_ENV: &str = "PULP_SIGNING_KEY_FINGERPRINT";

/// A signing service this start should make sure exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub script: PathBuf,
    /// `--class` of add-signing-service; `None`: pulpcore's default
    /// (`core:AsciiArmoredDetachedSigningService`).
    pub class: Option<&'static str>,
}

/// The key and the services to have for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    pub fingerprint: String,
    pub services: Vec<Service>,
}

/// A service left out, with the reason, for one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    NoScript { name: String, script: PathBuf },
    NoContainerApp { name: String },
    ContainerNotEnabled { name: String },
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::NoScript { name, script } => write!(
                f,
                "signing service '{name}' not added: its script {} does not exist (set signing_scripts_dir, or mount the script there)",
                script.display()
            ),
            Skipped::NoContainerApp { name } => write!(
                f,
                "signing service '{name}' not added: pulp_container is not installed"
            ),
            Skipped::ContainerNotEnabled { name } => write!(
                f,
                "signing service '{name}' not added: pulp_container is not in ENABLED_PLUGINS"
            ),
        }
    }
}

struct Kind {
    name_env: &'static str,
    default_name: &'static str,
    script: &'static str,
    class: Option<&'static str>,
    needs_container: bool,
}

/// The two services of Pulp's images, with their names and defaults.
const KINDS: [Kind; 2] = [
    Kind {
        name_env: "COLLECTION_SIGNING_SERVICE",
        default_name: "ansible-default",
        script: "collection_sign.sh",
        class: None,
        needs_container: false,
    },
    Kind {
        name_env: "CONTAINER_SIGNING_SERVICE",
        default_name: "container-default",
        script: "container_sign.sh",
        class: Some("container:ManifestSigningService"),
        needs_container: true,
    },
];

/// The services wanted for this environment (`None` without a fingerprint),
/// and those left out. Names empty or unset take the images' defaults, as
/// `${VAR:-default}` did.
pub fn wanted(
    env: &Environment,
    scripts_dir: &Path,
    container: Plugin,
) -> (Option<Signing>, Vec<Skipped>) {
    let Some(fingerprint) = env
        .get(FINGERPRINT_ENV)
        .map(str::trim)
        .filter(|f| !f.is_empty())
    else {
        return (None, Vec::new());
    };
    let mut services = Vec::new();
    let mut skipped = Vec::new();
    for kind in &KINDS {
        let name = env
            .get(kind.name_env)
            .filter(|name| !name.is_empty())
            .unwrap_or(kind.default_name)
            .to_string();
        let script = scripts_dir.join(kind.script);
        if kind.needs_container && container == Plugin::NotInstalled {
            skipped.push(Skipped::NoContainerApp { name });
        } else if kind.needs_container && container == Plugin::NotEnabled {
            skipped.push(Skipped::ContainerNotEnabled { name });
        } else if !script.is_file() {
            skipped.push(Skipped::NoScript { name, script });
        } else {
            services.push(Service {
                name,
                script,
                class: kind.class,
            });
        }
    }
    let signing = Signing {
        fingerprint: fingerprint.to_string(),
        services,
    };
    (Some(signing), skipped)
}

/// Whether pulpcore loads a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Loaded,
    NotInstalled,
    /// Installed, but left out of ENABLED_PLUGINS.
    NotEnabled,
}

/// Whether pulpcore loads pulp_container: importable from the Python that
/// runs `pulpcore-manager` (its package directory, found without Python),
/// and named in ENABLED_PLUGINS when that is set (as pulpcore's settings do).
pub fn container_plugin(package_roots: &[PathBuf], enabled: Option<&[String]>) -> Plugin {
    let installed = package_roots
        .iter()
        .any(|root| root.join("pulp_container/app").is_dir());
    match enabled {
        _ if !installed => Plugin::NotInstalled,
        Some(names) if !names.iter().any(|name| name == "pulp_container") => Plugin::NotEnabled,
        _ => Plugin::Loaded,
    }
}

impl Service {
    /// The `pulpcore-manager` arguments that add this service.
    pub fn add_args(&self, fingerprint: &str) -> Vec<String> {
        let mut args = vec![
            "add-signing-service".to_string(),
            self.name.clone(),
            self.script.to_string_lossy().into_owned(),
            fingerprint.to_string(),
        ];
        if let Some(class) = self.class {
            args.extend(["--class".to_string(), class.to_string()]);
        }
        args
    }
}

/// `(name, pubkey_fingerprint)` rows of `core_signingservice`.
pub type Existing = [(String, String)];

/// Names of the wanted services that have no row yet.
pub fn missing(signing: &Signing, existing: &Existing) -> Vec<String> {
    signing
        .services
        .iter()
        .filter(|service| !existing.iter().any(|(name, _)| *name == service.name))
        .map(|service| service.name.clone())
        .collect()
}

/// Wanted services that exist with another key: `(name, its fingerprint)`.
pub fn other_key(signing: &Signing, existing: &Existing) -> Vec<(String, String)> {
    existing
        .iter()
        .filter(|(name, stored)| {
            signing.services.iter().any(|s| s.name == *name)
                && is_other_key(&signing.fingerprint, stored)
        })
        .cloned()
        .collect()
}

/// True only when `configured` is a hex fingerprint or key id that `stored`
/// (pulpcore keeps the full fingerprint) does not end with. A user id such
/// as an e-mail address cannot be compared without gpg: not reported.
fn is_other_key(configured: &str, stored: &str) -> bool {
    let configured: String = configured
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    configured.len() >= 8
        && configured.chars().all(|c| c.is_ascii_hexdigit())
        && !stored.to_ascii_uppercase().ends_with(&configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPR: &str = "FFD044E34E74C622C753F3B0DDF0DEC020913743";

    fn scripts(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::write(dir.path().join(name), "#!/bin/sh\n").unwrap();
        }
        dir
    }

    #[test]
    fn nothing_without_a_fingerprint() {
        let dir = scripts(&["collection_sign.sh", "container_sign.sh"]);
        for env in [
            Environment::from_pairs([("COLLECTION_SIGNING_SERVICE", "x")]),
            Environment::from_pairs([(FINGERPRINT_ENV, " ")]),
        ] {
            assert_eq!(wanted(&env, dir.path(), Plugin::Loaded), (None, Vec::new()));
        }
    }

    #[test]
    fn both_services_with_default_names_and_the_images_arguments() {
        let dir = scripts(&["collection_sign.sh", "container_sign.sh"]);
        let env =
            Environment::from_pairs([(FINGERPRINT_ENV, FPR), ("COLLECTION_SIGNING_SERVICE", "")]);
        let (signing, skipped) = wanted(&env, dir.path(), Plugin::Loaded);
        let signing = signing.unwrap();
        assert!(skipped.is_empty());
        let args: Vec<Vec<String>> = signing
            .services
            .iter()
            .map(|s| s.add_args(&signing.fingerprint))
            .collect();
        let collection = dir.path().join("collection_sign.sh");
        let container = dir.path().join("container_sign.sh");
        assert_eq!(
            args,
            [
                vec![
                    "add-signing-service",
                    "ansible-default",
                    collection.to_str().unwrap(),
                    FPR
                ],
                vec![
                    "add-signing-service",
                    "container-default",
                    container.to_str().unwrap(),
                    FPR,
                    "--class",
                    "container:ManifestSigningService"
                ],
            ]
        );
    }

    #[test]
    fn missing_script_and_missing_container_app_are_skipped_with_a_reason() {
        let dir = scripts(&["container_sign.sh"]);
        let env = Environment::from_pairs([
            (FINGERPRINT_ENV, FPR),
            ("COLLECTION_SIGNING_SERVICE", "galaxy"),
        ]);
        let (signing, skipped) = wanted(&env, dir.path(), Plugin::NotInstalled);
        assert!(signing.unwrap().services.is_empty());
        assert_eq!(
            skipped,
            [
                Skipped::NoScript {
                    name: "galaxy".into(),
                    script: dir.path().join("collection_sign.sh"),
                },
                Skipped::NoContainerApp {
                    name: "container-default".into()
                },
            ]
        );
        assert!(skipped[0].to_string().contains("collection_sign.sh"));
    }

    #[test]
    fn container_app_is_found_by_its_package_directory_and_enabled_plugins() {
        let root = tempfile::tempdir().unwrap();
        let roots = vec![PathBuf::from("/nonexistent"), root.path().to_path_buf()];
        let only_file = ["pulp_file".to_string()];
        let both = ["pulp_file".to_string(), "pulp_container".to_string()];
        assert_eq!(container_plugin(&roots, None), Plugin::NotInstalled);
        assert_eq!(container_plugin(&roots, Some(&both)), Plugin::NotInstalled);
        std::fs::create_dir_all(root.path().join("pulp_container/app")).unwrap();
        assert_eq!(container_plugin(&roots, None), Plugin::Loaded);
        assert_eq!(container_plugin(&roots, Some(&both)), Plugin::Loaded);
        assert_eq!(
            container_plugin(&roots, Some(&only_file)),
            Plugin::NotEnabled
        );
    }

    #[test]
    fn a_disabled_container_app_skips_only_the_container_service() {
        let dir = scripts(&["collection_sign.sh", "container_sign.sh"]);
        let env = Environment::from_pairs([(FINGERPRINT_ENV, FPR)]);
        let (signing, skipped) = wanted(&env, dir.path(), Plugin::NotEnabled);
        let names: Vec<String> = signing
            .unwrap()
            .services
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["ansible-default"]);
        assert_eq!(
            skipped,
            [Skipped::ContainerNotEnabled {
                name: "container-default".into()
            }]
        );
        assert!(skipped[0].to_string().contains("ENABLED_PLUGINS"));
    }

    #[test]
    fn only_services_without_a_row_are_missing_and_other_keys_are_found() {
        let dir = scripts(&["collection_sign.sh", "container_sign.sh"]);
        let env = Environment::from_pairs([(FINGERPRINT_ENV, FPR)]);
        let signing = wanted(&env, dir.path(), Plugin::Loaded).0.unwrap();
        assert_eq!(
            missing(&signing, &[]),
            ["ansible-default", "container-default"]
        );
        let existing = [
            ("ansible-default".to_string(), FPR.to_string()),
            ("unrelated".to_string(), "0000".to_string()),
        ];
        assert_eq!(missing(&signing, &existing), ["container-default"]);
        assert!(other_key(&signing, &existing).is_empty());

        let rotated = [("ansible-default".to_string(), "AB".repeat(20))];
        assert_eq!(
            other_key(&signing, &rotated),
            [("ansible-default".to_string(), "AB".repeat(20))]
        );
    }

    #[test]
    fn key_comparison_accepts_key_ids_and_ignores_user_ids() {
        assert!(!is_other_key(FPR, FPR));
        assert!(!is_other_key(&FPR.to_lowercase(), FPR));
        assert!(!is_other_key("0xDDF0DEC020913743", FPR));
        assert!(!is_other_key(
            "FFD0 44E3 4E74 C622 C753  F3B0 DDF0 DEC0 2091 3743",
            FPR
        ));
        assert!(!is_other_key("test@example.com", FPR));
        assert!(is_other_key("0123456789ABCDEF", FPR));
    }
}
