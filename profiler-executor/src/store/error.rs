//! What can go wrong with the run store.

use std::fmt;

/// A run store failure. Every variant's message is one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (open, schema, query).
    Sqlite {
        /// The database file (or `:memory:`).
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored JSON column could not be read back (or a value could not be written as
    /// JSON).
    Json {
        /// The run the column belongs to.
        run_id: String,
        /// The column.
        column: &'static str,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// [`open_existing`](crate::store::RunStore::open_existing): there is no file at the
    /// path.
    Missing {
        /// The path given.
        path: String,
    },
    /// [`open_existing`](crate::store::RunStore::open_existing): the file is an SQLite
    /// database without the run store's tables.
    NotARunStore {
        /// The database file.
        path: String,
    },
    /// The path names something that cannot be a store (a directory, a FIFO, a device).
    NotAFile {
        /// The path given.
        path: String,
        /// What it is.
        cause: &'static str,
    },
    /// [`open`](crate::store::RunStore::open): the store can only be read (a read-only
    /// file, directory or disk), and a writer needs to write it.
    ReadOnly {
        /// The database file.
        path: String,
    },
    /// [`open_existing`](crate::store::RunStore::open_existing): a writer (of a version
    /// before WAL mode) was killed mid-write and left a hot journal, which only a writer
    /// can roll back.
    HotJournal {
        /// The database file.
        path: String,
    },
    /// No run has this id, or an id starting with it.
    RunNotFound {
        /// The database file.
        path: String,
        /// The id (or start of an id) asked for.
        id: String,
    },
    /// Several runs have an id starting with this prefix.
    AmbiguousRunId {
        /// The prefix asked for.
        prefix: String,
        /// How many runs match.
        count: usize,
        /// The ids of a few of them (at most [`AMBIGUOUS_IDS_SHOWN`]).
        examples: Vec<String>,
    },
}

/// How many of the matching ids a [`StoreError::AmbiguousRunId`] names.
pub const AMBIGUOUS_IDS_SHOWN: usize = 3;

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sqlite { path, source } => {
                // SQLite's messages are one line; keep ours one line whatever they hold.
                let message = source.to_string().replace('\n', " ");
                write!(f, "run store {path}: {message}")
            }
            StoreError::Json {
                run_id,
                column,
                source,
            } => write!(
                f,
                "run {run_id}: column `{column}` holds bad JSON (corrupt record): {source}"
            ),
            StoreError::Missing { path } => {
                write!(f, "no run store at {path}: the file does not exist")
            }
            StoreError::NotARunStore { path } => {
                write!(
                    f,
                    "{path} is not a run store (it has no workflow_runs table)"
                )
            }
            StoreError::NotAFile { path, cause } => {
                write!(f, "run store {path}: {cause}")
            }
            StoreError::ReadOnly { path } => write!(
                f,
                "run store {path}: read-only (a read-only file, directory or disk); runs cannot be stored"
            ),
            StoreError::HotJournal { path } => write!(
                f,
                "run store {path}: a writer was killed mid-write and left {path}-journal; \
                 run any workflow on the store once to roll it back"
            ),
            StoreError::RunNotFound { path, id } => {
                write!(f, "no run with an id starting with `{id}` in {path}")
            }
            StoreError::AmbiguousRunId {
                prefix,
                count,
                examples,
            } => {
                write!(
                    f,
                    "run id `{prefix}` is ambiguous: {count} runs start with it ({}",
                    examples.join(", ")
                )?;
                if *count > examples.len() {
                    f.write_str(", ...")?;
                }
                f.write_str("); type more of the id")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite { source, .. } => Some(source),
            StoreError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}
