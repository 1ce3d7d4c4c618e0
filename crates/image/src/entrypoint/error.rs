//! Why an entrypoint cannot start, or could not be checked.

use std::io;

/// Why the entrypoint check failed.
#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    /// The image cannot start its entrypoint: a sentence naming the file at
    /// fault and what is wrong with it (or the check limit it exceeded).
    #[error("{0}")]
    Refused(String),
    /// A file of the image (or the host file behind it) could not be read.
    #[error("{what}: {source}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    /// An ELF file whose headers the loader could not use.
    #[error("{what}: {source}")]
    Elf {
        what: String,
        #[source]
        source: ElfError,
    },
    /// A failure while checking a program a script runs (through `env`).
    #[error("{what}: {source}")]
    Via {
        what: String,
        #[source]
        source: Box<EntrypointError>,
    },
    #[error(transparent)]
    SymlinkLoop(#[from] crate::tree::SymlinkLoop),
    /// Base image files needed by the check could not be extracted.
    #[error("reading the base: {0}")]
    Base(#[source] crate::base::LayerError),
}

pub(super) fn refused(message: String) -> EntrypointError {
    EntrypointError::Refused(message)
}

pub(super) fn read_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> EntrypointError {
    let what = what.to_string();
    move |source| EntrypointError::Read { what, source }
}

pub(super) fn elf_err(what: impl std::fmt::Display) -> impl FnOnce(ElfError) -> EntrypointError {
    let what = what.to_string();
    move |source| EntrypointError::Elf { what, source }
}

/// Why an ELF file's loader-relevant headers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("too short for an ELF header")]
    TooShort,
    #[error("unknown ELF class {0}")]
    UnknownClass(u8),
    #[error("malformed ELF: {0}")]
    Malformed(#[source] object::read::Error),
    #[error("PT_INTERP is implausibly long")]
    LongInterp,
    #[error("the dynamic segment is implausibly large")]
    LargeDynamic,
    #[error("the dynamic string table is implausibly large")]
    LargeStrtab,
    #[error("the dynamic string table is outside the file")]
    StrtabOutside,
    #[error("a dynamic string is outside its table")]
    StringOutside,
}
