//! The store's one error type.
//!
//! Owns: [`StoreError`] and the rule that every message is safe to show an
//! admin client — names and ids that came from a request are truncated and
//! escaped before they are embedded, so a hostile id can't make a huge or
//! terminal-garbling error message. Must never: carry a secret or a secret
//! hash in any message.

/// Longest piece of caller-supplied text quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 64;

/// Everything that can go wrong in the store.
///
/// The admin API maps variants to statuses with [`StoreError::http_status`]:
/// `NotFound` → 404, `Exists`/`InUse`/`LimitReached` → 409,
/// `Invalid`/`ConfigOwned` → 400, everything else → 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },

    #[error("{kind} '{id}' already exists")]
    Exists { kind: &'static str, id: String },

    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },

    #[error("{kind} '{id}' is in use: {message}")]
    InUse {
        kind: &'static str,
        id: String,
        message: String,
    },

    #[error("plan '{name}' comes from levee.toml; change it there, not through the API")]
    ConfigOwned { name: String },

    #[error(
        "plan '{name}' was created through the admin API; a levee.toml plan can't take its \
         name (delete the API plan or rename the config plan)"
    )]
    SourceConflict { name: String },

    #[error("at most {max} {what} can exist")]
    LimitReached { what: &'static str, max: usize },

    #[error(
        "database schema version {found} is newer than this binary supports ({supported}); \
         run a newer levee or restore a backup"
    )]
    TooNew { found: i64, supported: i64 },

    #[error("data directory is in use by another levee process (lock file {path})")]
    Locked { path: String },

    #[error("stored data is corrupt: {message}")]
    Corrupt { message: String },

    #[error("the operating system's random source failed: {0}")]
    Entropy(String),

    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The HTTP status an admin API should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::Exists { .. } | StoreError::InUse { .. } => 409,
            StoreError::LimitReached { .. } => 409,
            StoreError::Invalid { .. } | StoreError::ConfigOwned { .. } => 400,
            _ => 500,
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: &str) -> Self {
        StoreError::NotFound {
            kind,
            id: quote(id),
        }
    }

    pub(crate) fn exists(kind: &'static str, id: &str) -> Self {
        StoreError::Exists {
            kind,
            id: quote(id),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: quote(&field.into()),
            message: message.into(),
        }
    }
}

/// Caller-supplied text made safe to embed in a message.
pub(crate) fn quote(s: &str) -> String {
    crate::sqlite::quote(s, MAX_QUOTED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_ids_are_bounded_and_escaped() {
        let hostile = format!("a\u{1b}[2J{}", "x".repeat(10_000));
        let e = StoreError::not_found("key", &hostile);
        let msg = e.to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(!msg.contains('\u{1b}'), "{msg}");
        assert!(msg.contains('…'));
    }

    #[test]
    fn printable_text_is_kept_as_sent() {
        assert_eq!(quote("routes[\"GET /é\"]"), "routes[\"GET /é\"]");
        assert_eq!(quote("a\nb"), "a\\nb");
    }

    #[test]
    fn short_ids_are_shown_whole() {
        assert_eq!(
            StoreError::not_found("key", "key_0123").to_string(),
            "key 'key_0123' not found"
        );
    }

    #[test]
    fn statuses_follow_the_admin_contract() {
        assert_eq!(StoreError::not_found("plan", "p").http_status(), 404);
        assert_eq!(StoreError::exists("plan", "p").http_status(), 409);
        assert_eq!(StoreError::invalid("name", "bad").http_status(), 400);
        let owned = StoreError::ConfigOwned { name: "p".into() };
        assert_eq!(owned.http_status(), 400);
        let too_new = StoreError::TooNew {
            found: 9,
            supported: 2,
        };
        assert_eq!(too_new.http_status(), 500);
    }
}
