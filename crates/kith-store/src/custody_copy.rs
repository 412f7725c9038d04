//! Encrypted custody copies of whole files, of any size (`../shared/spec/ciyam-peer.md`,
//! `peer_persist_file`; the cipher is [`kith_crypto::custody`], format `KC1`).
//!
//! # Design
//!
//! A file in the store is a tree: one blob, or lists naming chunk blobs (and lists of lists).
//! The custodian `get`s the owner's items one at a time, depth first in file order, exactly
//! as a fetch walks a tree ([`TreeCursor`]), and appends each to ONE `KC1` stream as it
//! arrives ([`CopyWriter`]). The plaintext of that stream is the *item stream*:
//!
//! ```text
//! record = type byte as hashed (0x01 blob | 0x02 list, without the 0x04/0x08 flags)
//!          || u32 big-endian content length || content
//! stream = the record of every item of the file's tree, root first, depth first in file
//!          order (an item used twice appears twice)
//! ```
//!
//! The encrypted stream (`KC1` header, then frames of at most 64 KiB of plaintext) is written
//! into the custodian's store as a file of its own ([`crate::writer::FileWriter`], leaves typed
//! as encrypted blobs `0x05`): one item when it fits, a tree otherwise, cut into items no
//! larger than the largest item the owner sent (so the owner's store can take them back,
//! whatever either side's `max_item`). The copy's address is that file's address; the pull
//! request names it. Why this design:
//!
//! - **The custodian cannot read the content and never writes it:** every item is encrypted
//!   in memory before any byte of it reaches the disk, and the key comes from a fresh secret
//!   it forgets at once (ECDH with the owner's key). The list items, which name the chunks, are
//!   part of the encrypted stream too. Memory is one item, one 64 KiB plaintext chunk, one
//!   parsed list per tree level and the writer's chunk, whatever the file size.
//! - **The owner verifies everything:** [`open_copy`] decrypts the stream chunk by chunk
//!   (each chunk authenticated) and checks every record against the hash the tree says it
//!   must have, starting from the original hash, before any of its bytes reach the output.
//!   The owner's result is therefore exactly the file it persisted, however the custodian's
//!   or the owner's `max_item` is set today; a copy that is truncated, padded, reordered or of
//!   another file fails with a [`CopyError`].
//! - **One copy, one pull request:** the reference's request formats stay as they are.

use std::io::{self, Write};

use kith_crypto::custody::{
    CustodyDecryptor, CustodyEncryptor, CustodyError, CustodyHeader, DEFAULT_CHUNK_LEN, HEADER_LEN,
};
use kith_crypto::identity::ContentKey;
use rand::{CryptoRng, RngCore};

use crate::address::{ContentHash, ItemKind, ItemType};
use crate::blobs::BlobStore;
use crate::error::StoreError;
use crate::tree::{parse_list, StoredFile, MAX_TREE_DEPTH};
use crate::writer::FileWriter;

/// Bytes in front of every record of the item stream: type byte and u32 length.
pub const RECORD_HEADER_LEN: usize = 5;

/// Why a custody copy could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The cipher refused (for the owner: a chunk failed authentication, the copy is
    /// truncated or has trailing bytes).
    #[error(transparent)]
    Crypto(#[from] CustodyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the plain content out failed.
    #[error("cannot write the content: {0}")]
    Output(io::Error),
    /// A record is longer than the item size allowed.
    #[error("item {index} of the copy is {len} bytes, more than the maximum of {max}")]
    RecordTooLong {
        /// Position of the item in the stream, from 0.
        index: u64,
        /// Its declared length.
        len: u64,
        /// The largest content allowed.
        max: usize,
    },
    /// A record's type byte is not a plain blob or list.
    #[error("item {index} of the copy has the bad type byte {byte:#04x}")]
    BadType {
        /// Position of the item, from 0.
        index: u64,
        /// The byte.
        byte: u8,
    },
    /// An item is not the one the file's tree names at that place.
    #[error("item {index} of the copy is not {expected}, the item the file needs there")]
    HashMismatch {
        /// Position of the item, from 0.
        index: u64,
        /// The address the tree names.
        expected: ContentHash,
    },
    /// A list item does not parse.
    #[error("list item {hash} is malformed: {reason}")]
    BadList {
        /// The list.
        hash: ContentHash,
        /// What is wrong.
        reason: String,
    },
    /// Lists nested deeper than [`MAX_TREE_DEPTH`].
    #[error("lists nested deeper than {MAX_TREE_DEPTH} levels")]
    TooDeep,
    /// Items follow the end of the file's tree.
    #[error("the copy holds more than the file")]
    TrailingItems,
    /// The stream ended before the file's tree did.
    #[error("the copy ends before the file does")]
    Truncated,
    /// The copy would be larger than allowed (the custodian's quota).
    #[error("the copy would exceed {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
}

/// Where a walk over a file's tree is: which item comes next. Depth first, in file order;
/// memory is one parsed list per level.
#[derive(Debug, Clone)]
pub struct TreeCursor {
    next: Option<ContentHash>,
    stack: Vec<(Vec<ContentHash>, usize)>,
    items: u64,
}

impl TreeCursor {
    /// A walk of the file whose address is `root`.
    pub fn new(root: ContentHash) -> TreeCursor {
        TreeCursor {
            next: Some(root),
            stack: Vec::new(),
            items: 0,
        }
    }

    /// The item that must come next; `None` once the whole tree has been seen.
    pub fn expected(&self) -> Option<ContentHash> {
        self.next
    }

    /// Items accepted so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Takes the next item (type and content): checks it is the expected one, descends into
    /// it if it is a list, and moves on.
    pub fn accept(&mut self, item_type: ItemType, content: &[u8]) -> Result<(), CopyError> {
        let index = self.items;
        let expected = self.next.ok_or(CopyError::TrailingItems)?;
        if ContentHash::compute(item_type, content) != expected {
            return Err(CopyError::HashMismatch { index, expected });
        }
        if item_type.kind() == ItemKind::List {
            if self.stack.len() >= MAX_TREE_DEPTH {
                return Err(CopyError::TooDeep);
            }
            let hashes = parse_list(content).map_err(|e| CopyError::BadList {
                hash: expected,
                reason: e.to_string(),
            })?;
            self.stack.push((hashes, 0));
        }
        self.items += 1;
        self.next = loop {
            let Some((hashes, next)) = self.stack.last_mut() else {
                break None;
            };
            if let Some(hash) = hashes.get(*next).copied() {
                *next += 1;
                break Some(hash);
            }
            self.stack.pop();
        };
        Ok(())
    }
}

/// The header of an item-stream record.
pub fn record_header(item_type: ItemType, len: usize) -> Result<[u8; 5], CopyError> {
    let len32 = u32::try_from(len).map_err(|_| CopyError::RecordTooLong {
        index: 0,
        len: len as u64,
        max: u32::MAX as usize,
    })?;
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0] = item_type.hash_byte();
    header[1..].copy_from_slice(&len32.to_be_bytes());
    Ok(header)
}

/// The custodian's side: encrypts a file's items, as they arrive, into one copy in the store.
///
/// The copy is cut into items no larger than the largest item the owner sent (nor than the
/// custodian's own): the owner's store took items that large, so it can take the copy's back,
/// whatever the two `max_item` settings are. The cut is chosen when the first item of the copy
/// must be written; until then the sealed bytes wait in memory (at most one item and one
/// chunk).
pub struct CopyWriter {
    encryptor: CustodyEncryptor,
    /// Plaintext not yet sealed (at most one chunk).
    plain: Vec<u8>,
    store: BlobStore,
    /// Sealed bytes waiting for the cut to be chosen.
    head: Vec<u8>,
    file: Option<FileWriter>,
    /// The largest item of the owner's file so far, type byte included.
    largest_item: usize,
    sealed: u64,
    max_size: u64,
}

impl std::fmt::Debug for CopyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyWriter")
            .field("encryptor", &self.encryptor)
            .field("file", &self.file)
            .finish()
    }
}

impl CopyWriter {
    /// Starts a copy of the file `original` for the owner `owner` (compressed public key) in
    /// `store`, at most `max_size` bytes: draws the fresh key pair and writes the header.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(
        store: BlobStore,
        owner: &[u8; 33],
        original: &ContentHash,
        max_size: u64,
        rng: &mut R,
    ) -> Result<CopyWriter, CopyError> {
        let (header, encryptor) = CustodyEncryptor::new(owner, &original.0, rng)?;
        let mut writer = CopyWriter {
            encryptor,
            plain: Vec::with_capacity(DEFAULT_CHUNK_LEN),
            store,
            head: Vec::new(),
            file: None,
            largest_item: 0,
            sealed: 0,
            max_size,
        };
        writer.write_sealed(&header.to_bytes())?;
        Ok(writer)
    }

    /// The custodian's fresh public key (the pull request's peer key).
    pub fn custodian_key(&self) -> [u8; 33] {
        self.encryptor.header().custodian_key()
    }

    /// Copy bytes sealed so far.
    pub fn size(&self) -> u64 {
        self.sealed
    }

    /// Appends one item of the file (the next one of its tree) to the copy.
    pub fn append_item(&mut self, item_type: ItemType, content: &[u8]) -> Result<(), CopyError> {
        self.largest_item = self.largest_item.max(content.len() + 1);
        self.push_plain(&record_header(item_type, content.len())?)?;
        self.push_plain(content)
    }

    fn push_plain(&mut self, mut bytes: &[u8]) -> Result<(), CopyError> {
        while !bytes.is_empty() {
            if self.plain.len() == DEFAULT_CHUNK_LEN {
                // More follows, so this chunk is not the last.
                let frame = self.encryptor.encrypt_chunk(&self.plain, false)?;
                self.plain.clear();
                self.write_sealed(&frame)?;
            }
            let take = (DEFAULT_CHUNK_LEN - self.plain.len()).min(bytes.len());
            self.plain.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    fn write_sealed(&mut self, bytes: &[u8]) -> Result<(), CopyError> {
        if self.sealed + bytes.len() as u64 > self.max_size {
            return Err(CopyError::TooLarge { max: self.max_size });
        }
        self.sealed += bytes.len() as u64;
        match self.file.as_mut() {
            Some(file) => file.write(bytes)?,
            None => {
                self.head.extend_from_slice(bytes);
                if self.head.len() >= self.item_size() {
                    self.open_file()?;
                }
            }
        }
        Ok(())
    }

    /// The size of the copy's items: the owner's largest item, within the store's bounds.
    fn item_size(&self) -> usize {
        self.largest_item
            .clamp(crate::blobs::MIN_MAX_ITEM_SIZE, self.store.max_item_size())
    }

    /// Chooses the cut and writes what waited.
    fn open_file(&mut self) -> Result<&mut FileWriter, CopyError> {
        if self.file.is_none() {
            let encrypted = ItemType::BLOB
                .with_flags(ItemType::FLAG_ENCRYPTED)
                .map_err(|e| StoreError::Config(e.to_string()))?;
            let mut file =
                FileWriter::with_item_size(self.store.clone(), encrypted, self.item_size())?;
            file.write(&std::mem::take(&mut self.head))?;
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => Ok(file),
            None => Err(StoreError::Config("no copy file".into()).into()),
        }
    }

    /// Seals the last chunk and stores the rest of the copy durably; returns its address,
    /// size and items.
    pub fn finish(mut self) -> Result<StoredFile, CopyError> {
        let frame = self.encryptor.encrypt_chunk(&self.plain, true)?;
        self.plain.clear();
        self.write_sealed(&frame)?;
        self.open_file()?;
        match self.file.take() {
            Some(file) => Ok(file.finish()?),
            None => Err(StoreError::Config("no copy file".into()).into()),
        }
    }

    /// Gives up, removing the items written so far (they are encrypted under a key nobody
    /// has, so no other file can share them).
    pub fn abort(self) -> Result<(), CopyError> {
        match self.file {
            Some(file) => Ok(file.abort()?),
            None => Ok(()),
        }
    }
}

/// Parses and verifies an item stream as it is decrypted, handing on the content of every
/// blob it completes. Buffers at most one record.
#[derive(Debug)]
pub struct ItemStreamReader {
    cursor: TreeCursor,
    max_content: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl ItemStreamReader {
    /// A reader of the stream of the file `original`, whose items hold at most `max_content`
    /// bytes each.
    pub fn new(original: ContentHash, max_content: usize) -> ItemStreamReader {
        ItemStreamReader {
            cursor: TreeCursor::new(original),
            max_content,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Takes the next plaintext bytes, split anywhere; `out` gets the content of each blob
    /// as soon as it is verified, in file order.
    pub fn update(
        &mut self,
        mut input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        if self.failed {
            return Err(CopyError::TrailingItems);
        }
        let result = (|| {
            while !input.is_empty() {
                let want = self.record_len()?.unwrap_or(RECORD_HEADER_LEN);
                let take = want.saturating_sub(self.buf.len()).min(input.len());
                self.buf.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.record_len()? == Some(self.buf.len()) {
                    let record = std::mem::take(&mut self.buf);
                    let item_type =
                        ItemType::from_byte(record[0]).map_err(|e| CopyError::BadType {
                            index: self.cursor.items(),
                            byte: e.0,
                        })?;
                    let content = &record[RECORD_HEADER_LEN..];
                    self.cursor.accept(item_type, content)?;
                    if item_type.kind() == ItemKind::Blob {
                        out(content)?;
                    }
                }
            }
            Ok(())
        })();
        if result.is_err() {
            self.failed = true;
            self.buf = Vec::new();
        }
        result
    }

    /// The whole length of the record being buffered, once its header is in.
    fn record_len(&self) -> Result<Option<usize>, CopyError> {
        let Some(header) = self.buf.get(..RECORD_HEADER_LEN) else {
            return Ok(None);
        };
        let index = self.cursor.items();
        if self.cursor.expected().is_none() {
            return Err(CopyError::TrailingItems);
        }
        if header[0] & !0x03 != 0 || !matches!(header[0], 0x01 | 0x02) {
            return Err(CopyError::BadType {
                index,
                byte: header[0],
            });
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as u64;
        if len > self.max_content as u64 {
            return Err(CopyError::RecordTooLong {
                index,
                len,
                max: self.max_content,
            });
        }
        Ok(Some(RECORD_HEADER_LEN + len as usize))
    }

    /// Checks that the whole tree came and nothing is left over.
    pub fn finish(&self) -> Result<(), CopyError> {
        if self.failed {
            return Err(CopyError::TrailingItems);
        }
        if self.cursor.expected().is_some() || !self.buf.is_empty() {
            return Err(CopyError::Truncated);
        }
        Ok(())
    }
}

/// The owner's side: decrypts the copy `copy` (stored here) of the file `original` with the
/// owner key, verifies it item by item, and writes the file's bytes to `out`. Returns the
/// number of bytes written. On error `out` may hold a verified prefix of the file: callers
/// writing to a path use a temporary file. `max_item` bounds one item of the original (use
/// the largest item size the file may have been stored with).
pub fn open_copy(
    blobs: &BlobStore,
    copy: &ContentHash,
    owner: &ContentKey,
    original: &ContentHash,
    max_item: usize,
    out: &mut dyn Write,
) -> Result<u64, CopyError> {
    let mut sink = OpenSink {
        header: Vec::with_capacity(HEADER_LEN),
        decryptor: None,
        reader: ItemStreamReader::new(*original, max_item.saturating_sub(1)),
        owner,
        original,
        out,
        written: 0,
        error: None,
    };
    if let Err(e) = blobs.read_file(copy, &mut sink) {
        return Err(sink.error.take().unwrap_or(CopyError::Store(e)));
    }
    match &sink.decryptor {
        Some(decryptor) => decryptor.finish()?,
        None => return Err(CustodyError::Truncated.into()),
    }
    sink.reader.finish()?;
    Ok(sink.written)
}

/// What [`open_copy`] streams the copy's bytes into.
struct OpenSink<'a> {
    header: Vec<u8>,
    decryptor: Option<CustodyDecryptor>,
    reader: ItemStreamReader,
    owner: &'a ContentKey,
    original: &'a ContentHash,
    out: &'a mut dyn Write,
    written: u64,
    error: Option<CopyError>,
}

impl OpenSink<'_> {
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), CopyError> {
        if self.decryptor.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            let header = CustodyHeader::parse(&self.header)?;
            self.decryptor = Some(CustodyDecryptor::new(
                self.owner,
                &self.original.0,
                &header,
            )?);
        }
        let Some(decryptor) = self.decryptor.as_mut() else {
            return Ok(());
        };
        let plain = zeroize::Zeroizing::new(decryptor.update(bytes)?);
        let out = &mut *self.out;
        let written = &mut self.written;
        self.reader.update(&plain, &mut |content| {
            out.write_all(content).map_err(CopyError::Output)?;
            *written += content.len() as u64;
            Ok(())
        })
    }
}

impl Write for OpenSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.feed(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                self.error = Some(e);
                Err(io::Error::other("custody copy rejected"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
