//! The CLI's side of the admin API: one request per command, with errors a
//! person can act on (where the server is expected, where the token lives).

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;

/// The largest admin answer read (a long usage report is a few MiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The admin listener's URL.
    #[arg(
        long,
        global = true,
        env = "LEVEE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin: String,
    /// The admin token; defaults to the contents of DATA_DIR/admin.token.
    #[arg(long, global = true, env = "LEVEE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where `levee serve` keeps its data (to find admin.token).
    #[arg(long, global = true, default_value = ".levee")]
    pub data_dir: PathBuf,
    /// CAs (PEM) to trust for an https:// admin URL ([admin_tls]); default
    /// the system's bundle.
    #[arg(long, global = true, env = "LEVEE_ADMIN_CA")]
    pub admin_ca: Option<PathBuf>,
}

impl AdminArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let path = self.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .with_context(|| {
                format!(
                    "no admin token: pass --token, set LEVEE_ADMIN_TOKEN, or point --data-dir at the server's data_dir (could not read {})",
                    path.display()
                )
            })
    }

    /// Sends `method path` with an optional JSON body; returns the JSON
    /// answer of a 2xx, or an error that says what to do.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let payload = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send(method, path, payload, "application/json").await
    }

    /// Like [`AdminArgs::call`], with a raw body.
    pub async fn call_raw(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(method, path, body, "application/octet-stream")
            .await
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        let url = format!("{}{path}", self.admin.trim_end_matches('/'));
        let req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, content_type);
        let payload = Bytes::from(body);
        let req = req
            .body(Full::new(payload))
            .with_context(|| format!("bad admin URL `{url}`"))?;
        let tls = if self.admin.starts_with("https://") {
            let client = levee_edge::fetch::tls_client(self.admin_ca.as_deref())
                .map_err(anyhow::Error::msg)
                .context("loading the CAs for the admin URL (--admin-ca)")?;
            Some(client)
        } else {
            None
        };
        let timeout = std::time::Duration::from_secs(30);
        let answer = levee_edge::fetch::send(req, tls.as_ref(), MAX_ANSWER_BYTES, timeout)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the admin API at {}: is `levee serve` running? (set --admin or LEVEE_ADMIN_URL)",
                    self.admin
                )
            })?;
        let (status, bytes) = (answer.status, answer.body);
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if status == http::StatusCode::UNAUTHORIZED {
            bail!("the admin token was refused: pass --token or set LEVEE_ADMIN_TOKEN (the server's token is in its data_dir/admin.token)");
        }
        if !status.is_success() {
            let message = doc["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{status}: {message}");
        }
        Ok(doc)
    }
}
