//! Output files (`report --html FILE`, `trace --out FILE`): the one way the tool writes a
//! file, with the same rules for every command.
//!
//! - A regular file, or no file, at the path: written atomically (a temp file beside it,
//!   synced, then renamed over the path), so that a reader never sees half a file and a
//!   failed write leaves the old file as it was.
//! - Anything else at the path is refused, untouched: a directory, a FIFO, a socket, a
//!   device (`/dev/full`, `/dev/null`), and a symbolic link. A symbolic link is refused
//!   rather than followed or replaced: following it would write wherever the link points
//!   (in a shared directory such as `/tmp`, wherever someone else made it point), and
//!   replacing it would silently turn the user's link into a file. The error names the
//!   link's target, so writing there is one edit away.
//! - The run store (the `--store` file, or its `-wal`, `-shm` or `-journal` companions) is
//!   never written over, whatever path names it: compared by device and inode, so a hard
//!   link or another spelling of the path is caught too.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::CliError;

/// Writes `bytes` to `path` by the rules above; `store` is the run store's path.
///
/// # Errors
/// `cannot write PATH: why`, one line.
pub fn write_file(path: &Path, store: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let existing = check_target(path, store)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| cannot(path, "the path names no file"))?;
    let temp = temp_path(&dir, &name.to_string_lossy());
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        if let Some(meta) = &existing {
            // The new file keeps the old one's permissions.
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        // Checked again just before the rename: what was a file may have been replaced.
        check_target(path, store).map_err(|e| io::Error::other(e.message))?;
        std::fs::rename(&temp, path)?;
        // The rename itself made durable (best effort: not every system opens directories).
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: io::Error| {
        let _ = std::fs::remove_file(&temp);
        let message = e.to_string();
        if message.starts_with("cannot write ") {
            CliError::new(message)
        } else {
            cannot(path, &message)
        }
    })
}

fn cannot(path: &Path, why: &str) -> CliError {
    CliError::new(format!("cannot write {}: {why}", path.display()))
}

/// What is at `path` now, when it may be replaced: nothing (`None`) or a regular file that
/// is not the store.
fn check_target(path: &Path, store: &Path) -> Result<Option<Metadata>, CliError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(path, &e.to_string())),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(cannot(
            path,
            &format!(
                "it is a symbolic link{target}; output files are not written through links: \
                 name the file itself"
            ),
        ));
    }
    if !kind.is_file() {
        return Err(cannot(
            path,
            &format!("it is {}, not a regular file", kind_name(&meta)),
        ));
    }
    if is_store(&meta, store) {
        return Err(cannot(
            path,
            &format!(
                "it is the run store ({}); name another file",
                store.display()
            ),
        ));
    }
    Ok(Some(meta))
}

/// Whether `meta` is the file of the store at `store` or of one of its companions.
#[cfg(unix)]
fn is_store(meta: &Metadata, store: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let mut paths = vec![store.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        paths.push(PathBuf::from(p));
    }
    paths
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|s| s.dev() == meta.dev() && s.ino() == meta.ino()))
}

#[cfg(not(unix))]
fn is_store(_meta: &Metadata, store: &Path) -> bool {
    let _ = store;
    false
}

/// "a directory", "a FIFO", ...: what a non-regular file is.
fn kind_name(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
    }
    "a special file"
}

/// `dir/.name.<pid>.<n>.tmp`.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}
