//! API keys: their public record, their secrets and how secrets are hashed.
//!
//! Owns: [`KeyInfo`], secret and id generation from the OS random source,
//! the secret hash, and the cheap shape check that turns garbage away before
//! any hashing. Must never: store, log, serialize or return a secret except
//! the one time it is generated (create and rotate), and never keep the hash
//! in a type that is serialized.
//!
//! # Why SHA-256 and not a password hash
//! A password hash (argon2, bcrypt) is deliberately slow because passwords
//! are guessable: slowing each guess is the only defence if the table leaks.
//! These secrets are 40 characters drawn uniformly from 62 by the OS (~238
//! bits): no dictionary exists and brute force over 2^238 is impossible at any
//! speed, so a slow hash would buy nothing and cost microseconds on every
//! request. One SHA-256 keeps a leaked table useless and the hot path cheap.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// Length of generated secrets. API Gateway accepts 30–128 alphanumeric
/// characters; 40 gives ~238 bits of entropy.
pub const SECRET_LEN: usize = 40;
/// Shortest and longest secret `authenticate` will even hash (API Gateway's
/// bounds); anything else is refused without work.
pub const MIN_SECRET_LEN: usize = 30;
pub const MAX_SECRET_LEN: usize = 128;
/// Characters of the secret kept in clear for display ("which key is this?").
/// 6 of 40 characters leaves ~202 bits unknown.
pub const PREFIX_LEN: usize = 6;
/// Longest key display name, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 128;
/// Most keys a store holds. The in-memory index costs ≈ 400 B per key with
/// short names and ≤ ~900 B with maximal ones (see [`crate::index`]), so at
/// this cap it holds ≈ 0.4–0.9 GiB; a typical deployment's thousands of keys
/// take a few MiB.
pub const MAX_KEYS: usize = 1_000_000;
/// `key_` + 16 hex digits.
pub const KEY_ID_LEN: usize = 20;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// SHA-256 of a secret.
pub(crate) type SecretHash = [u8; 32];

/// An API key as admins and the pipeline see it: never the secret, never the
/// hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub enabled: bool,
    /// The secret's first [`PREFIX_LEN`] characters, for display.
    pub prefix: String,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
}

pub(crate) fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Could `secret` be a key at all? Shape only: 30–128 ASCII alphanumerics.
pub(crate) fn plausible_secret(secret: &str) -> bool {
    (MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A fresh secret: [`SECRET_LEN`] characters, each uniform over 62.
pub(crate) fn generate_secret() -> Result<String, StoreError> {
    random_alphanumeric(SECRET_LEN)
}

/// `len` (≤ 256) characters from the OS's randomness, each uniform over
/// A–Z a–z 0–9: for secrets and tokens.
pub fn random_alphanumeric(len: usize) -> Result<String, StoreError> {
    // Rejection sampling: bytes ≥ 248 (= 4 × 62) are discarded so `b % 62`
    // is unbiased. 64 bytes per round leave ~56 usable on average; the loop
    // is bounded so a broken random source can't spin forever.
    const ROUNDS: usize = 32;
    let len = len.min(256);
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    for _ in 0..ROUNDS {
        getrandom::fill(&mut buf).map_err(|e| StoreError::Entropy(e.to_string()))?;
        for &b in &buf {
            if out.len() == len {
                return Ok(out);
            }
            if b < 248 {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    if out.len() == len {
        return Ok(out);
    }
    Err(StoreError::Entropy(
        "random source kept returning out-of-range bytes".into(),
    ))
}

/// A fresh key id: `key_` + 16 hex digits (64 random bits).
pub(crate) fn generate_key_id() -> Result<String, StoreError> {
    let n = getrandom::u64().map_err(|e| StoreError::Entropy(e.to_string()))?;
    Ok(format!("key_{n:016x}"))
}

pub(crate) fn prefix_of(secret: &str) -> String {
    secret.chars().take(PREFIX_LEN).collect()
}

/// 1–128 characters, no control characters.
pub(crate) fn validate_key_name(name: &str) -> Result<(), StoreError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_KEY_NAME_CHARS {
        return Err(StoreError::invalid(
            "name",
            format!("must be 1 to {MAX_KEY_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "name",
            "may not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_40_alphanumerics_and_distinct() {
        let a = generate_secret().expect("random works");
        let b = generate_secret().expect("random works");
        assert_eq!(a.len(), SECRET_LEN);
        assert!(plausible_secret(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn secret_characters_cover_the_alphabet() {
        // 200 secrets × 40 chars = 8000 draws over 62 symbols: every symbol
        // missing would mean a broken mapping (chance of a miss ≈ 62·e^-129).
        let mut seen = [false; 128];
        for _ in 0..200 {
            for b in generate_secret().expect("random works").bytes() {
                seen[usize::from(b)] = true;
            }
        }
        for &c in ALPHABET {
            assert!(seen[usize::from(c)], "never drew {}", char::from(c));
        }
    }

    #[test]
    fn key_ids_have_the_documented_shape() {
        let id = generate_key_id().expect("random works");
        assert_eq!(id.len(), KEY_ID_LEN);
        assert!(id.starts_with("key_"));
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn implausible_secrets_are_refused_without_hashing() {
        assert!(!plausible_secret(""));
        assert!(!plausible_secret(&"a".repeat(29)));
        assert!(plausible_secret(&"a".repeat(30)));
        assert!(plausible_secret(&"a".repeat(128)));
        assert!(!plausible_secret(&"a".repeat(129)));
        assert!(!plausible_secret(&format!("{}-", "a".repeat(35))));
        assert!(!plausible_secret(&"é".repeat(20)));
    }

    #[test]
    fn hash_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let h = hash_secret("abc");
        assert_eq!(h[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(h[28..], [0xf2, 0x00, 0x15, 0xad]);
    }

    #[test]
    fn key_names_are_bounded() {
        assert!(validate_key_name("ci bot — staging").is_ok());
        assert!(validate_key_name("").is_err());
        assert!(validate_key_name(&"é".repeat(128)).is_ok());
        assert!(validate_key_name(&"é".repeat(129)).is_err());
        assert!(validate_key_name("a\tb").is_err());
    }

    #[test]
    fn prefix_is_the_first_six_characters() {
        assert_eq!(prefix_of("AbCdEfGhIj"), "AbCdEf");
    }
}
