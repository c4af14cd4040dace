//! Watching the mounted directories for changes.
//!
//! kubelet never edits a mounted file: its AtomicWriter writes a new `..<timestamp>`
//! directory, points a `..data_tmp` symlink at it, renames that over `..data`, adjusts
//! the visible `NAME -> ..data/NAME` symlinks and removes the old directory. A watch on
//! `NAME` itself would follow the old inode and miss all of that, so the *directories*
//! are watched; any change in them only asks for a reload, and the reloader's content
//! hash decides whether anything really changed. Plain files edited in place or
//! replaced by an editor's rename show up the same way.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// The directory holding the config file (kubelet's mount point for a ConfigMap).
pub fn config_dir(config: &Path) -> PathBuf {
    match config.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Watches each directory (once, even if the config and secrets share one) and asks
/// for a reload on every change. `None` if no watch could be set up: the periodic
/// re-scan still picks changes up, only later.
pub fn watch_dirs(dirs: &[PathBuf], requests: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<Event>| match event {
        Ok(event) if !is_change(&event.kind) => {}
        Ok(_) => {
            let _ = requests.try_send(());
        }
        Err(e) => {
            // An overflowed or broken watch may have lost events: re-read to be sure.
            tracing::debug!(error = %e, "file watch error");
            let _ = requests.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch config and secret files; relying on the periodic re-scan");
            return None;
        }
    };
    let mut watched: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let identity = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if watched.contains(&identity) {
            continue;
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "watching for changes");
                watched.push(identity);
            }
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "cannot watch directory; relying on the periodic re-scan"
            ),
        }
    }
    (!watched.is_empty()).then_some(watcher)
}

/// Whether an event can mean new content. Opens and reads are not changes, and the
/// reloader's own reads produce them: counting them would reload in a loop.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    use super::*;

    #[test]
    fn reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn config_dir_of_a_bare_name_is_the_working_dir() {
        assert_eq!(config_dir(Path::new("config.yaml")), PathBuf::from("."));
        assert_eq!(config_dir(Path::new("/etc/keyrelay/config.yaml")), PathBuf::from("/etc/keyrelay"));
    }
}
