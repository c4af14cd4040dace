//! An API key value (or any value read from a secret) as the rest of the program
//! holds it.
//!
//! A [`Secret`] can be passed around, compared and stored, but it prints as
//! `<redacted>` everywhere and has no `Serialize`; the only way to the value is
//! [`Secret::expose`], called from one place: where the provider's auth header is
//! built. Its own module, below `config` and `provider`, because both (and `pool`,
//! `reload`) hold secrets; where secrets come from is `config::secret`'s business.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An API key value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The raw value. Only `provider::auth` should call this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A process-local hash of the value, to notice that a key changed under the same
    /// name without keeping or showing the value. Not stable across processes.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }

    /// The same in every process: names this value in state shared between replicas
    /// (SHA-256 over a domain-separation prefix and the value, first 128 bits, hex).
    /// Keys are long random strings, so nothing leads back from it to the value.
    pub fn shared_fingerprint(&self) -> String {
        use sha2::Digest;
        let digest =
            sha2::Sha256::new().chain_update(b"keyrelay/shared-key/v1\0").chain_update(self.0.as_bytes()).finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("sk-very-secret-value");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
    }
}
