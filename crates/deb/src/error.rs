//! The error type of this crate.

use std::io;

/// Everything that can go wrong while reading a `.deb` or a dpkg database file.
///
/// Messages name the archive member, the path inside it and what was wrong, so
/// that a user can tell a damaged download from a hostile package.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebError {
    /// The input does not start with the `ar` magic `"!<arch>\n"`.
    #[error("not a .deb: the input does not start with the ar magic \"!<arch>\\n\"")]
    BadMagic,

    /// An `ar` member header is cut short by the end of the input.
    #[error("truncated ar archive: member header at offset {offset} has {available} of 60 bytes")]
    TruncatedArHeader {
        /// Byte offset of the header in the input.
        offset: usize,
        /// How many bytes were left.
        available: usize,
    },

    /// An `ar` member header is not well formed.
    #[error("malformed ar member header at offset {offset}: {reason}")]
    BadArHeader {
        /// Byte offset of the header in the input.
        offset: usize,
        /// What was wrong with it.
        reason: String,
    },

    /// An `ar` member claims more bytes than the input holds.
    #[error(
        "truncated ar archive: member {member:?} at offset {offset} claims {size} bytes but only {available} remain"
    )]
    ArMemberTooLarge {
        /// Member name.
        member: String,
        /// Byte offset of the member's data in the input.
        offset: usize,
        /// The size from the header.
        size: u64,
        /// Bytes left in the input.
        available: usize,
    },

    /// A required member (`debian-binary`, `control.tar*`, `data.tar*`) is absent.
    #[error("missing member {member} in the .deb")]
    MissingMember {
        /// Which member is missing.
        member: &'static str,
    },

    /// A member appears where it is not allowed (wrong order, duplicate, unknown name).
    #[error("unexpected ar member {member:?}: {reason}")]
    UnexpectedMember {
        /// Member name (lossily decoded).
        member: String,
        /// Why it is not acceptable.
        reason: &'static str,
    },

    /// `debian-binary` does not hold a supported format version.
    #[error("unsupported debian-binary {found:?}: expected format version \"2.x\"")]
    BadDebianBinary {
        /// What it held (lossily decoded, possibly shortened).
        found: String,
    },

    /// A member uses a compression this crate does not read.
    #[error(
        "ar member {member}: unsupported compression {compression} (supported: xz, gzip, zstd, none)"
    )]
    UnsupportedCompression {
        /// Member name.
        member: String,
        /// The compression suffix, e.g. `bzip2`.
        compression: String,
    },

    /// The compressed stream of a member is corrupt.
    #[error("cannot decompress {member}: {source}")]
    Decompress {
        /// Member name.
        member: String,
        /// The decompressor's error.
        #[source]
        source: io::Error,
    },

    /// A member decompresses to more than the allowed number of bytes: a
    /// decompression bomb, refused as soon as it passes the bound.
    #[error(
        "{member} decompresses to more than {limit} bytes, the bound for a member of {compressed} compressed bytes; refused as a decompression bomb"
    )]
    DecompressionLimit {
        /// Member name.
        member: String,
        /// The limit in bytes.
        limit: u64,
        /// The member's compressed size.
        compressed: u64,
    },

    /// The whole package decompresses to more than the allowed number of bytes.
    #[error(
        "the package decompresses to more than {limit} bytes (while reading {member}); refused"
    )]
    PackageTooLarge {
        /// Member being read when the bound was passed.
        member: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// Reading the `.deb` itself failed.
    #[error("cannot read the .deb: {source}")]
    Read {
        /// The reader's error.
        #[source]
        source: io::Error,
    },

    /// The tar stream of a member is malformed.
    #[error("malformed tar in {member}: {source}")]
    Tar {
        /// Member name.
        member: String,
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },

    /// A path (or link target) in a tar member is not valid UTF-8.
    #[error("non-UTF-8 path {path:?} in {member}")]
    NonUtf8Path {
        /// Member name.
        member: String,
        /// The path, decoded lossily.
        path: String,
    },

    /// A path in a tar member is unsafe or not usable.
    #[error("unsafe path {path:?} in {member}: {reason}")]
    UnsafePath {
        /// Member name.
        member: String,
        /// The path as found in the archive.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A tar entry of a kind that cannot be installed into an image (device node, fifo, ...).
    #[error("{kind} {path} in {member} is not supported")]
    UnsupportedEntry {
        /// Member name.
        member: String,
        /// Normalized path of the entry.
        path: String,
        /// What kind of entry it is, e.g. `device node`.
        kind: String,
    },

    /// A hard link whose target is not an earlier regular file.
    #[error(
        "hard link {path} in {member} points to {target}, which is not an earlier regular file"
    )]
    BadHardlink {
        /// Member name.
        member: String,
        /// Normalized path of the link.
        path: String,
        /// Normalized path of the target.
        target: String,
    },

    /// A symbolic link with an unusable target.
    #[error("symlink {path} in {member}: {reason}")]
    BadSymlink {
        /// Member name.
        member: String,
        /// Normalized path of the link.
        path: String,
        /// What is wrong with the target.
        reason: &'static str,
    },

    /// The same path appears twice, and not as two directories.
    #[error("duplicate path {path} in {member}: first a {first}, then a {second}")]
    DuplicatePath {
        /// Member name.
        member: String,
        /// Normalized path.
        path: String,
        /// Kind of the first entry.
        first: &'static str,
        /// Kind of the second entry.
        second: &'static str,
    },

    /// An entry sits beneath an earlier entry that is not a directory.
    #[error("path {path} in {member} lies beneath {parent}, which is a {parent_kind}")]
    BeneathNonDirectory {
        /// Member name.
        member: String,
        /// Normalized path of the entry.
        path: String,
        /// Normalized path of the non-directory ancestor.
        parent: String,
        /// Kind of the ancestor.
        parent_kind: &'static str,
    },

    /// A numeric header field does not fit (uid/gid above `u32::MAX`).
    #[error("{field} {value} of {path} in {member} is out of range")]
    BadNumber {
        /// Member name.
        member: String,
        /// Normalized path of the entry.
        path: String,
        /// `uid` or `gid`.
        field: &'static str,
        /// The value found.
        value: u64,
    },

    /// A control.tar member is not a regular file or directory.
    #[error("{path} in {member} is a {kind}; only regular files are allowed in control.tar")]
    BadControlMember {
        /// Member name.
        member: String,
        /// Path inside control.tar.
        path: String,
        /// Kind of entry.
        kind: String,
    },

    /// A control.tar member that must be text is not UTF-8.
    #[error("{file} in {member} is not valid UTF-8")]
    NotUtf8 {
        /// Member name.
        member: String,
        /// File inside control.tar, e.g. `control`.
        file: &'static str,
    },

    /// control.tar holds no `control` file.
    #[error("{member} has no control file")]
    MissingControlFile {
        /// Member name.
        member: String,
    },

    /// The `control` file does not parse.
    #[error("malformed control file in {member}: {source}")]
    BadControl {
        /// Member name.
        member: String,
        /// The parse error.
        #[source]
        source: Box<DebError>,
    },

    /// The `control` file holds zero or several paragraphs.
    #[error("control file in {member} has {count} paragraphs, expected exactly 1")]
    ControlParagraphs {
        /// Member name.
        member: String,
        /// Number of paragraphs found.
        count: usize,
    },

    /// A required control field is absent or empty.
    #[error("control file lacks required field {field}")]
    MissingField {
        /// Field name.
        field: &'static str,
    },

    /// A control field has a value dpkg would reject.
    #[error("control field {field} has invalid value {value:?}: {reason}")]
    BadFieldValue {
        /// Field name.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A line of the control.tar `conffiles` file is not usable.
    #[error("conffiles line {line}: {reason}: {text:?}")]
    BadConffiles {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// deb822 syntax error.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// A field name that deb822 does not allow.
    #[error("line {line}: invalid field name {name:?}: {reason}")]
    InvalidFieldName {
        /// 1-based line number (0 when the name came from [`crate::Stanza::set`]).
        line: usize,
        /// The name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A field appears twice in one stanza.
    #[error("line {line}: duplicate field {name:?} in one stanza")]
    DuplicateField {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The name.
        name: String,
    },

    /// A value given to [`crate::Stanza::set`] would not render as valid deb822.
    #[error("invalid value for field {name:?}: {reason}")]
    InvalidFieldValue {
        /// Field name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}
