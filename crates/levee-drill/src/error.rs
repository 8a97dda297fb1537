//! The drill's one error type. It owns the wording a user sees when a run is
//! refused or fails, and the exit code each error maps to; it must never
//! carry a panic's worth of surprise: every failure is a value here.

use std::path::PathBuf;

/// Why a drill did not run, or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// `--help` or `--version`: not a failure, the text to print.
    #[error("{0}")]
    Help(String),
    /// Bad or out-of-bounds arguments.
    #[error("{0}")]
    Usage(String),
    /// The target is not on this machine and the operator did not say they own it.
    #[error(
        "refusing to drill {target}: it resolves to {addr}, which is not a loopback address \
         (127.0.0.0/8 or ::1). A drill is an attack; run it only against what you own, and \
         say so with --i-own-this-target"
    )]
    NotLoopback {
        /// The URL as given.
        target: String,
        /// The first non-loopback address it resolved to.
        addr: std::net::IpAddr,
    },
    /// The target's host name did not resolve.
    #[error("cannot resolve the host of {target}: {reason}")]
    Resolve {
        /// The URL as given.
        target: String,
        /// What the resolver said.
        reason: String,
    },
    /// Levee's admin API could not be read.
    #[error("levee admin API {url}: {reason}")]
    Admin {
        /// The admin URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A report file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The async runtime could not be built.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl DrillError {
    /// 0 for help, 2 for arguments the operator must change (including a refused target), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DrillError::Help(_) => 0,
            DrillError::Usage(_) | DrillError::NotLoopback { .. } | DrillError::Resolve { .. } => 2,
            DrillError::Admin { .. } | DrillError::Io { .. } | DrillError::Runtime(_) => 1,
        }
    }
}
