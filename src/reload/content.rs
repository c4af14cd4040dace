//! Reading everything a snapshot depends on (the config text and every secret it
//! names) and hashing it, so a re-scan or an event that changed nothing costs one read
//! and no new generation.
//!
//! The hash is seeded with per-process random [`HashSeeds`] and fed only key
//! *fingerprints*, so it says nothing about a key value even if it were shown; it is
//! never shown anyway.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hasher};

use super::api_source::ApiData;
use super::Sources;
use crate::config::{
    self, Config, ConfigErrors, Diagnostic, KubernetesSource, Origin, ResolvedSecrets, SecretSource, ServerSettings,
};
use crate::pool::Snapshot;

/// A 128-bit content hash: two independently keyed SipHash passes, so an accidental
/// collision (a rotation taken for a no-op) is out of reach.
#[derive(Clone, Debug)]
pub(crate) struct HashSeeds(RandomState, RandomState);

impl HashSeeds {
    pub(crate) fn new() -> Self {
        HashSeeds(RandomState::new(), RandomState::new())
    }

    fn digest(&self) -> Digest {
        Digest(self.0.build_hasher(), self.1.build_hasher())
    }
}

struct Digest(DefaultHasher, DefaultHasher);

impl Digest {
    /// Length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.write(s.as_bytes());
        self.1.write(s.as_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.write_u64(v);
        self.1.write_u64(v);
    }

    /// A value or why there is none; the two cannot collide.
    fn result(&mut self, value: Result<&str, &str>) {
        self.u64(u64::from(value.is_ok()));
        self.str(value.unwrap_or_else(|e| e));
    }

    fn finish(&self) -> u128 {
        (u128::from(self.0.finish()) << 64) | u128::from(self.1.finish())
    }
}

/// One read of the sources: its hash, and the parsed config or every error.
pub(crate) struct Read {
    pub hash: u128,
    pub result: Result<Parsed, Vec<Diagnostic>>,
}

/// A config that parsed, with every secret it names as read for this hash.
pub(crate) struct Parsed {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    pub secrets: ResolvedSecrets,
}

/// Reads the config (the API's ConfigMap text if known, else the file) and every secret
/// it names, once each, hashing all of it. `--listen`/`--admin` are applied.
pub(crate) fn read(sources: &Sources, api: &ApiData, hash_seeds: &HashSeeds) -> Read {
    let mut digest = hash_seeds.digest();
    let (source, text) = match &api.config {
        Some((label, text)) => (label.clone(), Ok(text.to_string())),
        None => (sources.config.clone(), config::read_config_text(&sources.config)),
    };
    digest.str(&source.to_string_lossy());
    let text = match text {
        Ok(text) => text,
        Err(message) => {
            digest.str(&message);
            let d = Diagnostic { file: source, origin: Origin::default(), message };
            return Read { hash: digest.finish(), result: Err(vec![d]) };
        }
    };
    digest.str(&text);
    // `model: os.environ/NAME` is read with the config (it decides the provider): the
    // value it was read with, found or not, is part of the hash.
    let mut early = SecretSource::new(sources.secrets_dir.clone(), Default::default());
    early.api = api.secret.clone();
    let (loaded, consulted) = config::load_str_with_secrets(&text, &source, Some(&early));
    for (name, value) in consulted {
        digest.str(&name);
        digest.result(value.as_deref().map_err(String::as_str));
    }
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(ConfigErrors(errors)) => return Read { hash: digest.finish(), result: Err(errors) },
    };
    let mut config = loaded.config;
    if let Some(listen) = sources.listen {
        config.server.listen = listen;
    }
    if let Some(admin) = sources.admin {
        config.server.admin = admin;
    }
    let mut source = SecretSource::new(sources.secrets_dir.clone(), config.inline_secrets.clone());
    source.api = api.secret.clone();
    let secrets = ResolvedSecrets::read(&config, &source);
    hash_secrets(&mut digest, &secrets);
    let result = config::resolve_params(&config, &secrets).map(|resolved| {
        let mut warnings = loaded.warnings;
        warnings.extend(resolved.warnings);
        Parsed { config: resolved.config, warnings, secrets }
    });
    Read { hash: digest.finish(), result }
}

/// Hashes every secret as read: name and fingerprint of each key (a `keys_from`
/// secret gives several), the value of each parameter from a secret (not a key, and a
/// new URL must be a change), or the error text when one does not resolve (a missing
/// file that appears later is then a change).
fn hash_secrets(digest: &mut Digest, secrets: &ResolvedSecrets) {
    for (name, kind, keys) in secrets.keys() {
        digest.str(name);
        digest.u64(kind as u64);
        match keys {
            Ok(keys) => {
                for key in keys {
                    digest.str(&key.name);
                    digest.u64(key.secret.fingerprint());
                }
            }
            Err(e) => digest.str(&e.to_string()),
        }
    }
    for (name, value) in secrets.values() {
        digest.str(name);
        match value {
            Ok(value) => digest.result(Ok(value)),
            Err(e) => digest.result(Err(&e.to_string())),
        }
    }
}

/// The first configuration and what the reloader needs to continue from it.
pub struct Initial {
    /// The first routing snapshot, or, when the sources do not load,
    /// [`Snapshot::unconfigured`] with their errors.
    pub snapshot: Snapshot,
    /// Warnings of the first config (ignored LiteLLM keys, ...), for the caller to log.
    pub warnings: Vec<Diagnostic>,
    pub seed: Seed,
}

/// What the reloader starts from: the config in effect (for settings that only a
/// restart changes) and the hash of what was read.
pub struct Seed {
    pub(crate) config: Config,
    pub(crate) hash: u128,
    pub(crate) hash_seeds: HashSeeds,
}

impl Seed {
    /// The `kubernetes:` section of the first config, which decides the API watch.
    pub fn kubernetes(&self) -> Option<&KubernetesSource> {
        self.config.kubernetes.as_ref()
    }
}

/// Reads the first configuration. It never fails: sources that do not load give an
/// unconfigured snapshot whose process settings come from the flags, else from the
/// parts of the config that are sound (see [`config::process_settings_despite_errors`]),
/// else the defaults.
pub(crate) fn load_initial(sources: &Sources) -> Initial {
    let hash_seeds = HashSeeds::new();
    let read = read(sources, &ApiData::default(), &hash_seeds);
    let (config, errors, warnings) = match read.result {
        Ok(parsed) => match Snapshot::build(&parsed.config, &parsed.secrets, None) {
            Ok(snapshot) => {
                let seed = Seed { config: parsed.config, hash: read.hash, hash_seeds };
                return Initial { snapshot, warnings: parsed.warnings, seed };
            }
            // Only secrets are missing: the config itself is sound.
            Err(errors) => (parsed.config, errors, parsed.warnings),
        },
        Err(errors) => (unconfigured(sources), errors, Vec::new()),
    };
    let snapshot = Snapshot::unconfigured(config.server.clone(), errors);
    Initial { snapshot, warnings, seed: Seed { config, hash: read.hash, hash_seeds } }
}

/// A config with no models, carrying the process settings to start with.
fn unconfigured(sources: &Sources) -> Config {
    // A second read: if the text changed since the first, its hash differs and the
    // reloader reads it again anyway.
    let (mut server, kubernetes) = match config::read_config_text(&sources.config) {
        Ok(text) => config::process_settings_despite_errors(&text, &sources.config),
        Err(_) => (ServerSettings::default(), None),
    };
    if let Some(listen) = sources.listen {
        server.listen = listen;
    }
    if let Some(admin) = sources.admin {
        server.admin = admin;
    }
    Config {
        source: sources.config.clone(),
        server,
        models: Default::default(),
        inline_secrets: Default::default(),
        kubernetes,
        shared: None,
    }
}
