//! The peer's key file: a PKCS#8 PEM ed25519 private key, readable by its owner only.
//!
//! Creating never overwrites (a peer's key *is* its identity; losing it makes a new peer), and
//! the file is created with mode 0600 from the start, not chmod-ed afterwards. Loading refuses
//! a file that group or others can read, as ssh does, with the command that fixes it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use vecino_proto::{Identity, IdentityError};

/// File name of the key inside the data directory.
pub const KEY_FILE_NAME: &str = "identity.pem";

/// Why a key file could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// `create` found a file already there.
    #[error(
        "{0} already exists; refusing to overwrite a peer's key (move it away or choose another path)"
    )]
    Exists(PathBuf),
    /// `load` found nothing.
    #[error(
        "no key file at {0}; `vecino init` creates a new identity (`vecino keygen` a key alone)"
    )]
    NotFound(PathBuf),
    /// Group or others may read the key.
    #[error("{path} is readable by others (mode {mode:04o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is there but empty (a half-done copy, `touch`).
    #[error(
        "key file {0} is empty: put the peer's key there, or remove it and run `vecino init` for a new identity"
    )]
    Empty(PathBuf),
    /// The key path names a directory.
    #[error(
        "key path {0} is a directory, not a key file (a data directory keeps its key in `{KEY_FILE_NAME}`)"
    )]
    IsDir(PathBuf),
    /// The file is not a key.
    // The cause is part of the message and deliberately not a `source()`: error printers that
    // walk the chain would print it twice.
    #[error("{path} is not a usable key: {error}")]
    Parse {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        error: IdentityError,
    },
    /// Reading or writing failed.
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |error| KeyFileError::Io { path: path.to_owned(), error }
}

/// The default data directory: `$XDG_DATA_HOME/vecino` (`~/.local/share/vecino` on Linux).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "vecino").map(|d| d.data_dir().to_owned())
}

/// The default key path: `identity.pem` in the default data directory.
pub fn default_key_path() -> Option<PathBuf> {
    default_data_dir().map(|d| d.join(KEY_FILE_NAME))
}

/// Generates a fresh key from the OS's randomness and writes it to `path` (mode 0600), creating
/// missing parent directories (mode 0700). Fails if `path` exists.
pub fn create(path: &Path) -> Result<Identity, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| io_err(path)(io::Error::other(format!("no OS randomness: {e}"))))?;
    let identity = Identity::from_seed(seed);
    write_new(path, &identity)?;
    Ok(identity)
}

/// Writes `identity` to a new file at `path` (mode 0600). Fails if `path` exists.
pub fn write_new(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent).map_err(io_err(parent))?;
    }
    let pem = identity
        .to_pkcs8_pem()
        .map_err(|error| KeyFileError::Parse { path: path.to_owned(), error })?;
    let mut file = match open_new_private(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists(path.to_owned()));
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    file.write_all(pem.as_bytes()).and_then(|()| file.sync_all()).map_err(io_err(path))?;
    Ok(())
}

/// Reads the key at `path`, refusing one that others can read.
pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeyFileError::NotFound(path.to_owned()));
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.is_dir() {
        return Err(KeyFileError::IsDir(path.to_owned()));
    }
    check_private(path, &meta)?;
    if meta.len() == 0 {
        return Err(KeyFileError::Empty(path.to_owned()));
    }
    // A PEM key is ~120 bytes; anything far larger is not a key and is not read whole.
    if meta.len() > 16 * 1024 {
        return Err(KeyFileError::Parse {
            path: path.to_owned(),
            error: IdentityError::Pem(format!("file is {} bytes, too large for a key", meta.len())),
        });
    }
    let pem = fs::read_to_string(path).map_err(io_err(path))?;
    Identity::from_pkcs8_pem(&pem)
        .map_err(|error| KeyFileError::Parse { path: path.to_owned(), error })
}

/// Loads the key at `path`, or creates it if there is none (what `vecino run` does on first start).
pub fn load_or_create(path: &Path) -> Result<(Identity, bool), KeyFileError> {
    match load(path) {
        Ok(id) => Ok((id, false)),
        Err(KeyFileError::NotFound(_)) => create(path).map(|id| (id, true)),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn open_new_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_new_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_peer_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir").join(KEY_FILE_NAME);
        let id = create(&path).unwrap();
        assert_eq!(load(&path).unwrap().public(), id.public());
        assert!(matches!(create(&path), Err(KeyFileError::Exists(_))));
        assert_eq!(load(&path).unwrap().public(), id.public(), "the key survived the refusal");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dmode, 0o700);
        }
    }

    #[test]
    fn load_or_create_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
    }

    #[cfg(unix)]
    #[test]
    fn open_permissions_and_garbage_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::TooOpen { mode: 0o644, .. })));
        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "not a key").unwrap();
        fs::set_permissions(&junk, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&junk), Err(KeyFileError::Parse { .. })));
        assert!(matches!(load(&dir.path().join("none")), Err(KeyFileError::NotFound(_))));
    }

    #[test]
    fn empty_files_and_directories_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        drop(open_new_private(&empty).unwrap());
        let e = load(&empty).unwrap_err();
        assert!(matches!(e, KeyFileError::Empty(_)), "{e}");
        assert!(e.to_string().starts_with(&format!("key file {} is empty", empty.display())));
        // Loading never creates over an empty file either.
        assert!(matches!(load_or_create(&empty), Err(KeyFileError::Empty(_))));
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, KeyFileError::IsDir(_)), "{e}");
        assert!(
            e.to_string().starts_with(&format!("key path {} is a directory", dir.path().display()))
        );
        assert!(matches!(load_or_create(dir.path()), Err(KeyFileError::IsDir(_))));
        // The OS error is in the message once and is not also a source (printed twice by `{:#}`).
        let e = KeyFileError::Io { path: "/x".into(), error: io::Error::other("boom") };
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.to_string(), "/x: boom");
    }
}
