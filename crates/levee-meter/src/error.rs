//! The meter's one error type.
//!
//! Owns: [`MeterError`]. Must never carry request data (paths, bodies) in a
//! message: only file paths and SQLite's own text.

/// Everything that can go wrong opening, flushing or reading the meters, or
/// installing the metrics recorder.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error(
        "meters database schema version {found} is newer than this binary supports \
         ({supported}); run a newer levee or move {path} aside"
    )]
    TooNew {
        found: i64,
        supported: i64,
        path: String,
    },

    #[error("meters storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The file cannot be used safely (not WAL, a schema it did not write).
    #[error("meters storage error: {0}")]
    Storage(String),

    #[error("meters i/o error: {0}")]
    Io(#[from] std::io::Error),

    #[error("could not install the metrics recorder: {0}")]
    Metrics(String),
}
