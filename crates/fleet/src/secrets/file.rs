//! Files: a secret's file as `kiln serve` reads it at apply (no symlink, only a regular file,
//! neither world-readable nor world-writable, bounded, read through the checked descriptor),
//! and the HMAC key in `<state>/fleet/secret.key`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Largest secret value, in bytes.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The key file's name in `<state>/fleet/`.
pub const KEY_FILE: &str = "secret.key";

const KEY_LEN: usize = 32;

/// Why a secret's file was refused. Messages name the path, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("{} is a symbolic link; name the file itself", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{} is {what} (mode {mode:04o}); make it readable by its owner only, e.g. chmod 600", path.display())]
    Exposed {
        path: PathBuf,
        /// "world-readable", "world-writable" or both.
        what: &'static str,
        mode: u32,
    },
    #[error("{} is larger than {max} bytes", path.display(), max = MAX_SECRET_BYTES)]
    TooLarge { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

fn check_mode(path: &Path, mode: u32) -> Result<(), SecretFileError> {
    let what = match (mode & 0o004 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "world-readable",
        (false, true) => "world-writable",
        (true, true) => "world-readable and world-writable",
    };
    Err(SecretFileError::Exposed {
        path: path.to_path_buf(),
        what,
        mode: mode & 0o7777,
    })
}

/// Reads one secret's file: the last component must not be a symlink, the file must be a
/// regular file, neither world-readable nor world-writable, and at most [`MAX_SECRET_BYTES`].
/// The path is opened once with `O_PATH | O_NOFOLLOW` (which opens nothing for reading, so no
/// FIFO or device is ever opened) and checked through that descriptor; only a regular file is
/// then opened for reading, through `/proc/self/fd` (the same inode, whatever the path names
/// meanwhile). The value is read into memory that is zeroed when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    use std::os::fd::AsRawFd;
    let p = || path.to_path_buf();
    let io = |source: io::Error| SecretFileError::Io { path: p(), source };
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SecretFileError::NotFound { path: p() },
            _ => io(e),
        })?;
    let md = handle.metadata().map_err(io)?;
    if md.file_type().is_symlink() {
        return Err(SecretFileError::Symlink { path: p() });
    }
    if !md.is_file() {
        return Err(SecretFileError::NotRegular {
            path: p(),
            kind: kind_of(md.file_type()),
        });
    }
    check_mode(path, md.mode())?;
    if md.len() > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge { path: p() });
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .map_err(io)?;
    let opened = f.metadata().map_err(io)?;
    if (opened.dev(), opened.ino()) != (md.dev(), md.ino()) || !opened.is_file() {
        return Err(io(io::Error::other("the file changed while it was opened")));
    }
    // Room for the largest value up front: no reallocation leaves a copy behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET_BYTES as usize + 1));
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge { path: p() });
    }
    Ok(buf)
}

/// Why the HMAC key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("secret key {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "secret key {}: {why}; refusing to use it (remove it to have kiln serve create a new one: old HMACs then no longer match)",
        path.display()
    )]
    Refused { path: PathBuf, why: String },
    #[error("secret key {}: no randomness: {why}", path.display())]
    Random { path: PathBuf, why: String },
}

/// The daemon's 32-byte HMAC key (`<state>/fleet/secret.key`, mode 0600): each secret's
/// value is recorded only as its HMAC under it.
pub struct SecretKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Loads the key at `path`, creating it on first use (`O_EXCL`, mode 0600, 32 random
    /// bytes). An existing key must be a regular file (not a symlink) of this user, mode
    /// exactly 0600 and 32 bytes long.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretKeyError> {
        let io = |source: io::Error| SecretKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        match Self::load(path) {
            Err(SecretKeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|e| SecretKeyError::Random {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            // Someone else created it meanwhile: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(path)
                    .map_err(io)?;
                return Self::read(path, f);
            }
            Err(e) => return Err(io(e)),
        };
        // The mode given at create is cut by the umask (0277 would leave 0400, which
        // `load` refuses): set it on the descriptor.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| f.write_all(&key[..]))
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        Ok(SecretKey { key })
    }

    /// Loads the existing key at `path` (checked as for [`SecretKey::load_or_create`]).
    pub fn load(path: &Path) -> Result<SecretKey, SecretKeyError> {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => Self::read(path, f),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(SecretKeyError::Refused {
                path: path.to_path_buf(),
                why: "it is a symbolic link".into(),
            }),
            Err(source) => Err(SecretKeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn read(path: &Path, mut f: File) -> Result<SecretKey, SecretKeyError> {
        let refuse = |why: String| SecretKeyError::Refused {
            path: path.to_path_buf(),
            why,
        };
        let md = f.metadata().map_err(|source| SecretKeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !md.is_file() {
            return Err(refuse(format!("it is {}", kind_of(md.file_type()))));
        }
        if md.mode() & 0o7777 != 0o600 {
            return Err(refuse(format!(
                "its mode is {:04o}, not 0600",
                md.mode() & 0o7777
            )));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if md.uid() != euid {
            return Err(refuse(format!(
                "it belongs to uid {}, not to this user ({euid})",
                md.uid()
            )));
        }
        if md.len() != KEY_LEN as u64 {
            return Err(refuse(format!(
                "it holds {} bytes, not {KEY_LEN}",
                md.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        f.read_exact(&mut key[..])
            .map_err(|source| SecretKeyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SecretKey { key })
    }

    /// A key for tests.
    #[cfg(test)]
    pub(crate) fn fixed(b: u8) -> SecretKey {
        SecretKey {
            key: Zeroizing::new([b; KEY_LEN]),
        }
    }

    /// HMAC-SHA256 of `value` under this key, as 64 hex characters.
    pub fn hmac(&self, value: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key[..])
            .expect("HMAC takes keys of any length");
        m.update(value);
        hex::encode(m.finalize().into_bytes())
    }
}
