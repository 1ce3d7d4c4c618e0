//! Reading Debian binary packages (`.deb`) and rendering the dpkg database,
//! without ever running maintainer scripts.
//!
//! [`Deb::parse`] takes the bytes of a `.deb` and returns its control stanza,
//! the other control.tar members (maintainer scripts, `md5sums`, `conffiles`,
//! ...) and every data.tar entry with its contents. The methods of [`Deb`] then
//! produce what dpkg itself would write when installing the package: the
//! `/var/lib/dpkg/status` stanza ([`Deb::status_stanza`]), and the
//! `/var/lib/dpkg/info/<name>.list` and `.md5sums` files.
//!
//! Input is treated as hostile: malformed or malicious archives give a typed
//! [`DebError`] naming the member and path at fault, never a panic, and
//! decompression is bounded ([`Limits`]).
//!
//! [`parse_stanzas`] and [`render_status`] read and write whole deb822 files
//! such as a base image's `/var/lib/dpkg/status`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ar;
mod compress;
mod deb;
mod error;
mod stanza;

pub use deb::{ContentSink, DataEntry, Deb, EntryKind, FileData, Limits, MemorySink, NullSink};
pub use error::DebError;
pub use stanza::{Stanza, parse_stanzas, render_status};
