//! Every secret a config names, read once per reload.
//!
//! The reloader hashes this map and the snapshot is built from it, so what is hashed
//! is what serves: a secret that changes while a snapshot is being built is simply the
//! next reload's content, and building a snapshot does no I/O.

use std::collections::BTreeMap;

use super::model::{Config, KeyRef, KeyRefKind};
use super::secret::{NamedKey, SecretError, SecretSource};

/// What each secret name resolved to when it was read, found or not (an error is
/// content too: a missing file that appears later is a change).
#[derive(Debug, Clone, Default)]
pub struct ResolvedSecrets {
    /// A key reference (`api_key`, `keys_from`, a shared-state password...) by name and
    /// kind: one key, or one per line.
    keys: BTreeMap<(String, KeyRefKind), Result<Vec<NamedKey>, SecretError>>,
    /// Parameters that are not keys (`api_base: os.environ/NAME`), trimmed.
    values: BTreeMap<String, Result<String, SecretError>>,
}

impl ResolvedSecrets {
    /// Reads every secret `config` names from `source`: the keys of every deployment,
    /// the shared-state settings' secrets and every parameter kept in a secret.
    pub fn read(config: &Config, source: &SecretSource) -> Self {
        let deployments = config.models.values().flat_map(|m| &m.deployments);
        let shared = config.shared_settings().map(|s| s.secret_refs()).unwrap_or_default();
        let mut resolved = ResolvedSecrets::default();
        for key in deployments.clone().flat_map(|d| &d.keys).chain(&shared) {
            resolved.keys.entry((key.name.clone(), key.kind)).or_insert_with(|| source.resolve(key));
        }
        for param in deployments.flat_map(|d| &d.from_secrets) {
            resolved.values.entry(param.name.clone()).or_insert_with(|| source.value(&param.name));
        }
        resolved
    }

    /// The keys one reference stands for, as read.
    pub fn resolve(&self, key: &KeyRef) -> Result<Vec<NamedKey>, SecretError> {
        match self.keys.get(&(key.name.clone(), key.kind)) {
            Some(result) => result.clone(),
            None => Err(SecretError::NotRead { name: key.name.clone() }),
        }
    }

    /// A parameter's value, as read.
    pub fn value(&self, name: &str) -> Result<String, SecretError> {
        match self.values.get(name) {
            Some(result) => result.clone(),
            None => Err(SecretError::NotRead { name: name.to_owned() }),
        }
    }

    /// Every key reference read and its outcome, in a stable order (for the hash).
    pub fn keys(&self) -> impl Iterator<Item = (&str, KeyRefKind, &Result<Vec<NamedKey>, SecretError>)> {
        self.keys.iter().map(|((name, kind), result)| (name.as_str(), *kind, result))
    }

    /// Every parameter read and its outcome, in a stable order (for the hash).
    pub fn values(&self) -> impl Iterator<Item = (&str, &Result<String, SecretError>)> {
        self.values.iter().map(|(name, result)| (name.as_str(), result))
    }
}
