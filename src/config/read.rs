//! Reading the config file and secret files without trusting what sits at the path.
//!
//! A mounted directory can hold anything: a FIFO (whose plain `open` blocks until a
//! writer appears, so a reload would hang forever and take shutdown with it), a
//! device, a directory, or a file far larger than any key. Every read here opens
//! without blocking, checks on the opened descriptor (after symlinks, so kubelet's
//! `NAME -> ..data/NAME` links work) that it is a regular file, and reads at most a
//! bound, so the worst a hostile path costs is one `open` and one `fstat`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

/// The largest secret (one key, or a `keys_from` pool of several hundred).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The largest config file; a ConfigMap cannot hold more than 1 MiB either.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a bounded read failed. Messages name the path, never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Nothing at the path (or a dangling symlink): callers may look elsewhere.
    NotFound,
    Refused(String),
}

/// Reads the regular file at `path` (following symlinks), refusing anything else and
/// anything larger than `max` bytes.
pub(crate) fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let shown = path.display();
    let file = open_nonblocking(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Refused(format!("{shown}: cannot open ({})", e.kind())),
    })?;
    let meta = file.metadata().map_err(|e| ReadError::Refused(format!("{shown}: cannot stat ({})", e.kind())))?;
    if !meta.is_file() {
        return Err(ReadError::Refused(format!("{shown} is {}, not a regular file", kind_of(&meta))));
    }
    let too_large = || ReadError::Refused(format!("{shown} is larger than the limit of {}", size(max)));
    if meta.len() > max {
        return Err(too_large());
    }
    // The file may grow between the stat and the read: read one byte past the bound
    // to notice.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Refused(format!("{shown}: read failed ({})", e.kind())))?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `O_NONBLOCK` makes opening a FIFO return at once instead of waiting for a writer;
/// `O_NOCTTY` keeps a terminal device from becoming the controlling terminal before
/// the file type is checked. Neither changes how a regular file is read.
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).open(path)
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// `65536` -> `64 KiB`.
pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("K");
        std::fs::write(&path, b"value\n").unwrap();
        assert_eq!(read_regular(&path, 6), Ok(b"value\n".to_vec()));
        let err = read_regular(&path, 5).unwrap_err();
        assert_eq!(err, ReadError::Refused(format!("{} is larger than the limit of 5 bytes", path.display())));
        assert_eq!(read_regular(&dir.path().join("absent"), 5), Err(ReadError::NotFound));
    }

    #[test]
    fn directories_sparse_giants_and_devices_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let ReadError::Refused(msg) = read_regular(dir.path(), MAX_SECRET_BYTES).unwrap_err() else { panic!() };
        assert!(msg.contains("a directory"), "{msg}");

        let giant = dir.path().join("giant");
        std::fs::File::create(&giant).unwrap().set_len(100 << 20).unwrap();
        let ReadError::Refused(msg) = read_regular(&giant, MAX_SECRET_BYTES).unwrap_err() else { panic!() };
        assert!(msg.contains("larger than the limit of 64 KiB"), "{msg}");

        #[cfg(unix)]
        {
            let ReadError::Refused(msg) = read_regular(Path::new("/dev/zero"), 10).unwrap_err() else { panic!() };
            assert!(msg.contains("a device"), "{msg}");
        }
    }

    /// A plain `open` of a FIFO with no writer never returns.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("K");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let ReadError::Refused(msg) = read_regular(&fifo, MAX_SECRET_BYTES).unwrap_err() else { panic!() };
        assert!(msg.contains("FIFO"), "{msg}");
    }

    #[test]
    fn sizes_read_as_units() {
        assert_eq!(size(MAX_SECRET_BYTES), "64 KiB");
        assert_eq!(size(MAX_CONFIG_BYTES), "1 MiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
