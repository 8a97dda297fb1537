//! Starting and stopping the `levee` child the bench measures: writes its
//! config into a scratch dir, reads the edge and admin addresses it prints,
//! and stops it by PID (SIGTERM, then SIGKILL after a bound).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token the bench's levee runs with (loopback only, bench only).
pub const ADMIN_TOKEN: &str = "levee-bench-admin-token-000000";

/// A running `levee serve` started by the bench.
#[derive(Debug)]
pub struct Levee {
    child: Child,
    pub edge: SocketAddr,
    pub admin: SocketAddr,
}

/// `[functions.<name>]` running `hello_fn`, with its `GET <path>` route.
pub fn hello_function(name: &str, path: &str, hello_fn: &Path, code: &Path) -> String {
    format!(
        "[functions.{name}]\ncommand = [\"{}\"]\ncode = \"{}\"\n\n[[routes]]\nroute = \"GET {path}\"\nfunction = \"{name}\"\n\n",
        hello_fn.display(),
        code.display()
    )
}

impl Levee {
    /// Writes `dir/levee.toml` (`[server]` on port 0 with `server_keys`,
    /// plus `body`) and starts `levee serve` on it with `LEVEE_LOG=warn`.
    pub async fn start(
        levee: &Path,
        dir: &Path,
        server_keys: &str,
        body: &str,
    ) -> anyhow::Result<Levee> {
        let config = dir.join("levee.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{server_keys}\n{body}"),
        )?;
        let stderr: PathBuf = dir.join("levee.stderr");
        let mut child = Command::new(levee)
            .args(["serve", "--config"])
            .arg(&config)
            .env("LEVEE_LOG", "warn")
            .env("LEVEE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", levee.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let (mut edge, mut admin) = (None, None);
        let read = async {
            while edge.is_none() || admin.is_none() {
                let Some(line) = lines.next_line().await? else {
                    bail!("levee exited: {}", std::fs::read_to_string(&stderr)?);
                };
                let addr = |p: &str| line.strip_prefix(p).and_then(|a| a.trim().parse().ok());
                edge = edge.or(addr("levee: edge listening on http://"));
                admin = admin.or(addr("levee: admin listening on http://"));
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .context("levee did not print its addresses within 30 s")??;
        Ok(Levee {
            child,
            edge: edge.unwrap_or_else(|| unreachable!()),
            admin: admin.unwrap_or_else(|| unreachable!()),
        })
    }

    /// SIGTERM to this child's PID, wait at most 15 s, then SIGKILL.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            Command::new("kill").arg(pid.to_string()).status().await?;
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("levee-bench: levee did not stop within 15 s; killing it");
            self.child.kill().await?;
        }
        Ok(())
    }
}
