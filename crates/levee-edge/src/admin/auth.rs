//! Who may use the admin listener: whoever holds the admin token.
//!
//! The token comes from `LEVEE_ADMIN_TOKEN`, or from `data_dir/admin.token`,
//! which is generated (mode 0600) on first start. Clients send it as
//! `Authorization: Bearer <token>`. AWS SDK clients (boto3's Lambda client)
//! cannot send a bearer token; they sign with SigV4, so they authenticate by
//! using the token as their *access key id*: the `Credential=` of a SigV4
//! `Authorization` header must be the token. The signature itself is not
//! verified (that would need a shared secret key scheme; the token in the
//! clear is what a bearer token is too), so this is exactly as strong as the
//! bearer scheme and no stronger. A wrong or missing token is a bare 401.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Shortest token accepted from the environment.
pub const MIN_TOKEN_LEN: usize = 16;
/// Length of a generated token.
const TOKEN_LEN: usize = 48;

/// Where the admin token came from.
#[derive(Debug)]
pub enum TokenSource {
    /// `LEVEE_ADMIN_TOKEN`.
    Env,
    /// An existing token file.
    File(PathBuf),
    /// A token file written just now; its path is worth printing once.
    Created(PathBuf),
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `LEVEE_ADMIN_TOKEN` is set but too short or not printable ASCII.
    #[error("LEVEE_ADMIN_TOKEN must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces")]
    Weak,
    /// The token file is unreadable, not private, or could not be written.
    #[error("admin token file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn acceptable(token: &str) -> bool {
    token.len() >= MIN_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The admin token: `env_token` (the value of `LEVEE_ADMIN_TOKEN`) if set,
/// else the one in `data_dir/admin.token`, created if missing.
pub fn load_or_create(
    data_dir: &Path,
    env_token: Option<String>,
) -> Result<(String, TokenSource), TokenError> {
    if let Some(token) = env_token {
        return if acceptable(&token) {
            Ok((token, TokenSource::Env))
        } else {
            Err(TokenError::Weak)
        };
    }
    let path = data_dir.join("admin.token");
    let fail = |reason: String| TokenError::File {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map_err(|e| fail(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "mode {:o} lets others read it; chmod 600 it",
                    mode & 0o777
                )));
            }
            let token = text.trim().to_string();
            if !acceptable(&token) {
                return Err(fail(
                    "does not hold a usable token; delete it to get a new one".into(),
                ));
            }
            Ok((token, TokenSource::File(path)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let token = generate().map_err(|e| fail(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| fail(e.to_string()))?;
            file.write_all(token.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            Ok((token, TokenSource::Created(path)))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// A random alphanumeric token, each character uniform over 62.
fn generate() -> io::Result<String> {
    levee_store::key::random_alphanumeric(TOKEN_LEN).map_err(io::Error::other)
}

/// Whether the request's `Authorization` header carries `token`.
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let presented = if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim()
    } else if value.starts_with("AWS4-HMAC-SHA256 ") {
        match value
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
        {
            Some(key_id) => key_id,
            None => return false,
        }
    } else {
        return false;
    };
    constant_time_eq(presented.as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so response timing does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_sigv4_access_key_forms() {
        let t = "s3cr3t-token-0123456789";
        assert!(authorized(Some(format!("Bearer {t}").as_bytes()), t));
        let sig = format!("AWS4-HMAC-SHA256 Credential={t}/20261128/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=abc");
        assert!(authorized(Some(sig.as_bytes()), t));
        assert!(!authorized(Some(b"Bearer wrong-token-0123456789"), t));
        assert!(!authorized(Some(b"Basic Zm9vOmJhcg=="), t));
        assert!(!authorized(Some(b"AWS4-HMAC-SHA256 SignedHeaders=host"), t));
        assert!(!authorized(None, t));
        assert!(!authorized(Some(b"\xff\xfe"), t));
    }

    #[test]
    fn token_files_are_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("levee-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (first, src) = load_or_create(&dir, None).unwrap();
        assert!(matches!(src, TokenSource::Created(_)));
        assert_eq!(first.len(), TOKEN_LEN);
        let mode = std::fs::metadata(dir.join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, src) = load_or_create(&dir, None).unwrap();
        assert_eq!(again, first);
        assert!(matches!(src, TokenSource::File(_)));
        std::fs::set_permissions(
            dir.join("admin.token"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(load_or_create(&dir, None)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        assert!(matches!(
            load_or_create(&dir, Some("short".into())),
            Err(TokenError::Weak)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
