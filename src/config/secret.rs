//! Where API key values come from: a secret name resolved against the Kubernetes
//! API's copy, the mounted directory, the environment and the config's inline values.
//! The value type itself is [`crate::secret::Secret`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::{KeyRef, KeyRefKind};
use super::read::{self, read_regular, ReadError, MAX_SECRET_BYTES};
use crate::secret::Secret;

/// A key value together with the name it is known by everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedKey {
    /// The secret name (`GEMINI_API_KEY_2`), or `NAME#n` for line `n` of a
    /// `keys_from` secret.
    pub name: String,
    pub secret: Secret,
}

/// Why a secret name could not be turned into a key. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?} not found (no file {path} and no environment variable {name})", path = .file.display())]
    NotFound { name: String, file: PathBuf },
    #[error("secret {name:?} not found (no secrets dir set and no environment variable {name})")]
    NotFoundNoDir { name: String },
    #[error("secret {name:?} is empty")]
    Empty { name: String },
    #[error("secret {name:?} could not be read: {reason}")]
    Unreadable { name: String, reason: String },
    /// The name is not shown: a name that fails the checks is often a pasted key.
    #[error("a secret name is not valid (letters, digits, '-', '_', '.'; the name is not shown)")]
    BadName { name: String },
    /// A lookup of a name the config did not name when its secrets were read: a bug.
    #[error("secret {name:?} was not read with this configuration")]
    NotRead { name: String },
}

/// Resolves secret names to values: the Secret's data read through the Kubernetes API
/// (when the reloader watches it), then `<dir>/NAME` (a mounted Secret, followed
/// through kubelet's symlinks), then the process environment, then the config's inline
/// `environment_variables`.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    pub dir: Option<PathBuf>,
    pub inline: BTreeMap<String, Secret>,
    /// The watched Secret's data as last read from the API server. The API sees a
    /// rotation about a minute before kubelet updates the files, so it goes first; a
    /// name it lacks still resolves from the files (the fallback).
    pub api: Option<Arc<BTreeMap<String, Secret>>>,
}

impl SecretSource {
    pub fn new(dir: Option<PathBuf>, inline: BTreeMap<String, Secret>) -> Self {
        Self { dir, inline, api: None }
    }

    /// The keys one reference stands for: one key, or one per non-empty line.
    pub fn resolve(&self, key: &KeyRef) -> Result<Vec<NamedKey>, SecretError> {
        match key.kind {
            // Written into the config: the value came with it, under a made-up name.
            KeyRefKind::Literal => match self.inline.get(&key.name) {
                Some(secret) => Ok(vec![NamedKey { name: key.name.clone(), secret: secret.clone() }]),
                None => Err(SecretError::NotFoundNoDir { name: key.name.clone() }),
            },
            KeyRefKind::Single => {
                let raw = self.read_raw(&key.name)?;
                let value = raw.trim();
                if value.is_empty() {
                    return Err(SecretError::Empty { name: key.name.clone() });
                }
                Ok(vec![NamedKey { name: key.name.clone(), secret: Secret::new(value) }])
            }
            KeyRefKind::Lines => {
                let raw = self.read_raw(&key.name)?;
                let keys: Vec<NamedKey> = raw
                    .lines()
                    .enumerate()
                    .filter_map(|(i, line)| {
                        let value = line.trim();
                        (!value.is_empty() && !value.starts_with('#'))
                            .then(|| NamedKey { name: format!("{}#{}", key.name, i + 1), secret: Secret::new(value) })
                    })
                    .collect();
                if keys.is_empty() {
                    return Err(SecretError::Empty { name: key.name.clone() });
                }
                Ok(keys)
            }
        }
    }

    /// A value that is not a key (a base URL, an API version) kept in a secret so a
    /// Secret update changes it: looked up like a key, trimmed, never empty.
    pub fn value(&self, name: &str) -> Result<String, SecretError> {
        let value = self.read_raw(name)?.trim().to_owned();
        if value.is_empty() {
            return Err(SecretError::Empty { name: name.to_owned() });
        }
        Ok(value)
    }

    fn read_raw(&self, name: &str) -> Result<String, SecretError> {
        if !is_valid_name(name) {
            return Err(SecretError::BadName { name: name.to_owned() });
        }
        let unreadable = |reason: String| SecretError::Unreadable { name: name.to_owned(), reason };
        if let Some(v) = self.api.as_ref().and_then(|api| api.get(name)) {
            return bounded(v.expose(), "the Kubernetes Secret's value").map_err(unreadable);
        }
        if let Some(dir) = &self.dir {
            match read_file(&dir.join(name)) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(reason) => return Err(unreadable(reason)),
            }
        }
        if let Some(v) = std::env::var_os(name) {
            let v = v.into_string().map_err(|_| unreadable("environment variable is not UTF-8".into()))?;
            return bounded(&v, "the environment variable").map_err(unreadable);
        }
        if let Some(v) = self.inline.get(name) {
            return bounded(v.expose(), "the environment_variables value").map_err(unreadable);
        }
        Err(match &self.dir {
            Some(dir) => SecretError::NotFound { name: name.to_owned(), file: dir.join(name) },
            None => SecretError::NotFoundNoDir { name: name.to_owned() },
        })
    }
}

/// Reads a secret file, following symlinks, without blocking and within
/// [`MAX_SECRET_BYTES`]. `Ok(None)` when it does not exist.
fn read_file(path: &Path) -> Result<Option<String>, String> {
    match read_regular(path, MAX_SECRET_BYTES) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| format!("{} is not UTF-8", path.display())),
        Err(ReadError::NotFound) => Ok(None),
        Err(ReadError::Refused(reason)) => Err(reason),
    }
}

/// Holds values from the API, the environment and the config to the same bound as
/// files, so where a key comes from does not change what is accepted.
fn bounded(value: &str, what: &str) -> Result<String, String> {
    if value.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!("{what} is larger than the limit of {}", read::size(MAX_SECRET_BYTES)));
    }
    Ok(value.to_owned())
}

/// Secret names must be plain file names: no path separators, no `..`, no hidden
/// kubelet entries.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Origin;

    fn key(name: &str, kind: KeyRefKind) -> KeyRef {
        KeyRef { name: name.into(), kind, origin: Origin::default(), implicit: false }
    }

    #[test]
    fn named_key_debug_redacts() {
        let nk = NamedKey { name: "K".into(), secret: Secret::new("sk-very-secret-value") };
        assert!(!format!("{nk:?}").contains("very-secret"));
    }

    #[test]
    fn file_through_symlink_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..data_x");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("K1"), "  sk-one\n").unwrap();
        std::os::unix::fs::symlink(data.join("K1"), dir.path().join("K1")).unwrap();
        let src = SecretSource::new(Some(dir.path().into()), BTreeMap::new());
        let got = src.resolve(&key("K1", KeyRefKind::Single)).unwrap();
        assert_eq!(got[0].secret.expose(), "sk-one");
        assert_eq!(got[0].name, "K1");
    }

    #[test]
    fn empty_file_is_an_error_and_lines_pool_names_by_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("EMPTY"), "\n  \n").unwrap();
        std::fs::write(dir.path().join("POOL"), "a1\n\n# comment\nb2\n").unwrap();
        let src = SecretSource::new(Some(dir.path().into()), BTreeMap::new());
        assert!(matches!(src.resolve(&key("EMPTY", KeyRefKind::Single)), Err(SecretError::Empty { .. })));
        let pool = src.resolve(&key("POOL", KeyRefKind::Lines)).unwrap();
        let names: Vec<_> = pool.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["POOL#1", "POOL#4"]);
    }

    #[test]
    fn missing_and_bad_names_never_show_values() {
        let mut inline = BTreeMap::new();
        inline.insert("INLINE_ONLY_X".to_string(), Secret::new("inline-value"));
        let src = SecretSource::new(None, inline);
        assert_eq!(src.resolve(&key("INLINE_ONLY_X", KeyRefKind::Single)).unwrap()[0].secret.expose(), "inline-value");
        let err = src.resolve(&key("KEYRELAY_SURELY_UNSET_42", KeyRefKind::Single)).unwrap_err();
        assert!(err.to_string().contains("KEYRELAY_SURELY_UNSET_42"));
        assert!(matches!(src.resolve(&key("../etc/passwd", KeyRefKind::Single)), Err(SecretError::BadName { .. })));
    }
}
