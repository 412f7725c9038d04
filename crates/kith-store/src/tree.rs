//! Files larger than one item: chunk blobs gathered by lists, and lists of lists.
//!
//! A file whose content fits in one item (max item size minus the type byte) is stored as a
//! single blob, so its hash is the reference's hash of the whole file. A larger file is cut into
//! chunks of exactly that capacity (the last one shorter); each chunk is a blob, and their
//! hashes go, as lowercase hex lines separated by `\n`, into a list item (type 0x02). When the
//! hashes do not fit in one list, full lists are themselves gathered by lists, level by level.
//!
//! The writer is streaming: it keeps one chunk buffer and, per tree level, one list being
//! filled; a full level is flushed to a list item at once. Memory is therefore bounded by the
//! item size times the tree depth (two or three levels even for terabytes), whatever the file
//! size. Hashing (`kith file hash`) and storing run the *same* code with a different sink, so
//! the two can never disagree about a file's address.
//!
//! The one thing that grows with the file is the list of distinct item hashes a put returns
//! (for the database's reference counts): 32 bytes per item, about 32 KiB per GiB of file.
//!
//! The reader walks the tree depth first with an explicit stack, verifying every item through
//! [`BlobStore::get_item`] before any of its bytes reach the output.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::address::{ContentHash, ItemKind, ItemType};
use crate::blobs::{sync_dir, BlobStore};
use crate::error::StoreError;

/// Lists nested deeper than this are treated as corrupt (a real tree of 1 MB items covering
/// an exabyte is 4 levels deep; this only guards against crafted chains).
pub const MAX_TREE_DEPTH: usize = 32;

/// Bytes one hash line takes in a list, separator included.
const LINE: usize = 65;

/// What storing a file produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The file's address (its single blob, or the root list).
    pub hash: ContentHash,
    /// Blob for a file that fits one item, list otherwise.
    pub kind: ItemKind,
    /// Content bytes of the whole file.
    pub size: u64,
    /// Every distinct item the file uses (root, inner lists, chunks), in first-use order.
    pub items: Vec<ContentHash>,
}

/// A malformed list item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("list line {line} does not start with a 64-digit hex hash")]
pub struct ListError {
    /// 1-based line number.
    pub line: usize,
}

/// Parses a list item's content: lines that each start with 64 hex digits, optionally followed
/// by a space and anything (the reference allows a name there). Lines are separated by `\n`;
/// a trailing `\n` and a `\r` before it are tolerated. Never panics.
pub fn parse_list(content: &[u8]) -> Result<Vec<ContentHash>, ListError> {
    let mut hashes = Vec::new();
    if content.is_empty() {
        return Ok(hashes);
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let error = ListError { line: index + 1 };
        let (head, rest) = line.split_at_checked(64).ok_or(error.clone())?;
        if !rest.is_empty() && rest[0] != b' ' {
            return Err(error);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(head, &mut bytes).map_err(|_| error)?;
        hashes.push(ContentHash(bytes));
    }
    Ok(hashes)
}

/// Where the items of a file go while it is being cut up.
pub(crate) trait ItemSink {
    fn put(&mut self, item_type: ItemType, content: &[u8]) -> Result<ContentHash, StoreError>;
}

/// Computes addresses only.
struct HashOnly;

impl ItemSink for HashOnly {
    fn put(&mut self, item_type: ItemType, content: &[u8]) -> Result<ContentHash, StoreError> {
        Ok(ContentHash::compute(item_type, content))
    }
}

/// Writes items to the store, remembering which ones, which it created, and which directories
/// need a final fsync.
struct Storing<'a> {
    store: &'a BlobStore,
    items: Vec<ContentHash>,
    seen: HashSet<ContentHash>,
    dirs: HashSet<PathBuf>,
    created: &'a mut Vec<ContentHash>,
}

impl ItemSink for Storing<'_> {
    fn put(&mut self, item_type: ItemType, content: &[u8]) -> Result<ContentHash, StoreError> {
        let (hash, dir) = self.store.put_item_deferred(item_type, content)?;
        if let Some(dir) = dir {
            self.dirs.insert(dir);
            self.created.push(hash);
        }
        if self.seen.insert(hash) {
            self.items.push(hash);
        }
        Ok(hash)
    }
}

struct Level {
    content: Vec<u8>,
    count: usize,
    first: Option<ContentHash>,
}

/// The stack of partially filled lists.
pub(crate) struct TreeBuilder {
    levels: Vec<Level>,
    per_list: usize,
}

impl TreeBuilder {
    pub(crate) fn new(max_item: usize) -> TreeBuilder {
        // n hashes take 65n - 1 bytes; the content capacity is max_item - 1.
        TreeBuilder {
            levels: Vec::new(),
            per_list: max_item / LINE,
        }
    }

    pub(crate) fn push(
        &mut self,
        mut level: usize,
        mut hash: ContentHash,
        sink: &mut dyn ItemSink,
    ) -> Result<(), StoreError> {
        loop {
            if self.levels.len() <= level {
                self.levels.push(Level {
                    content: Vec::new(),
                    count: 0,
                    first: None,
                });
            }
            let entry = &mut self.levels[level];
            if entry.count > 0 {
                entry.content.push(b'\n');
            } else {
                entry.first = Some(hash);
            }
            entry.content.extend_from_slice(hash.to_hex().as_bytes());
            entry.count += 1;
            if entry.count < self.per_list {
                return Ok(());
            }
            let full = std::mem::take(&mut entry.content);
            entry.count = 0;
            entry.first = None;
            hash = sink.put(ItemType::LIST, &full)?;
            level += 1;
        }
    }

    pub(crate) fn finish(mut self, sink: &mut dyn ItemSink) -> Result<ContentHash, StoreError> {
        if self.levels.is_empty() {
            return sink.put(ItemType::LIST, &[]);
        }
        let mut level = 0;
        loop {
            let top = self.levels.len().saturating_sub(1);
            let entry = &mut self.levels[level];
            let content = std::mem::take(&mut entry.content);
            let count = std::mem::take(&mut entry.count);
            let first = entry.first.take();
            if level == top {
                if let (1, Some(only), true) = (count, first, level > 0) {
                    // A single list at the top is the root itself.
                    return Ok(only);
                }
                return sink.put(ItemType::LIST, &content);
            }
            if count > 0 {
                let hash = sink.put(ItemType::LIST, &content)?;
                self.push(level + 1, hash, sink)?;
            }
            level += 1;
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(StoreError::Stream {
                    op: "read input",
                    source,
                })
            }
        }
    }
    Ok(filled)
}

/// Cuts `reader` into items and hands them to `sink`; returns (address, kind, size).
fn build(
    reader: &mut dyn Read,
    max_item: usize,
    sink: &mut dyn ItemSink,
) -> Result<(ContentHash, ItemKind, u64), StoreError> {
    let capacity = max_item - 1;
    let mut first = vec![0u8; capacity];
    let len = fill(reader, &mut first)?;
    if len < capacity {
        let hash = sink.put(ItemType::BLOB, &first[..len])?;
        return Ok((hash, ItemKind::Blob, len as u64));
    }
    let mut buf = vec![0u8; capacity];
    let mut len = fill(reader, &mut buf)?;
    if len == 0 {
        let hash = sink.put(ItemType::BLOB, &first)?;
        return Ok((hash, ItemKind::Blob, capacity as u64));
    }
    let mut tree = TreeBuilder::new(max_item);
    let hash = sink.put(ItemType::BLOB, &first)?;
    drop(first);
    tree.push(0, hash, sink)?;
    let mut size = capacity as u64;
    loop {
        let hash = sink.put(ItemType::BLOB, &buf[..len])?;
        tree.push(0, hash, sink)?;
        size += len as u64;
        if len < capacity {
            break;
        }
        len = fill(reader, &mut buf)?;
        if len == 0 {
            break;
        }
    }
    let root = tree.finish(sink)?;
    Ok((root, ItemKind::List, size))
}

/// The address a file would get in a store with this maximum item size, without storing it.
pub fn hash_file(reader: &mut dyn Read, max_item_size: usize) -> Result<ContentHash, StoreError> {
    if max_item_size < crate::blobs::MIN_MAX_ITEM_SIZE {
        return Err(StoreError::Config(format!(
            "maximum item size {max_item_size} is below the minimum of {}",
            crate::blobs::MIN_MAX_ITEM_SIZE
        )));
    }
    build(reader, max_item_size, &mut HashOnly).map(|(hash, _, _)| hash)
}

impl BlobStore {
    /// The address `reader`'s content would get in this store; stores nothing.
    pub fn hash_file(&self, reader: &mut dyn Read) -> Result<ContentHash, StoreError> {
        hash_file(reader, self.max_item_size())
    }

    /// Stores a file of any size, streaming, and returns its address and the items it uses.
    /// Every item is durable (file and directory fsync'd) when this returns. Holds the write
    /// lease throughout. On error, the items written so far stay (no record names them: the
    /// garbage collector takes them; [`crate::FileStore`]'s put removes them at once).
    pub fn put_file(&self, reader: &mut dyn Read) -> Result<StoredFile, StoreError> {
        let _lease = self.write_lease()?;
        self.put_file_tracked(reader, &mut Vec::new())
    }

    /// [`BlobStore::put_file`] for a caller that holds the write lease, and that learns in
    /// `created` which items this call wrote (those not already present), also on error.
    pub(crate) fn put_file_tracked(
        &self,
        reader: &mut dyn Read,
        created: &mut Vec<ContentHash>,
    ) -> Result<StoredFile, StoreError> {
        let mut sink = Storing {
            store: self,
            items: Vec::new(),
            seen: HashSet::new(),
            dirs: HashSet::new(),
            created,
        };
        let (hash, kind, size) = build(reader, self.max_item_size(), &mut sink)?;
        for dir in &sink.dirs {
            sync_dir(dir)?;
        }
        // The root was put last; list it first.
        let mut items = sink.items;
        if let Some(pos) = items.iter().position(|h| *h == hash) {
            items.remove(pos);
        }
        items.insert(0, hash);
        Ok(StoredFile {
            hash,
            kind,
            size,
            items,
        })
    }

    /// Walks the file `hash` whose items are already stored (received one by one from a peer,
    /// say), verifying every item, and returns what a put of the same file would have: its
    /// kind, content size and every distinct item it uses (root first). Memory is one item
    /// plus one parsed list per tree level, and 32 bytes per distinct item.
    pub fn walk_file(&self, hash: &ContentHash) -> Result<StoredFile, StoreError> {
        let root = self.get_item(hash)?;
        let mut seen = HashSet::from([*hash]);
        let mut items = vec![*hash];
        if root.item_type.kind() == ItemKind::Blob {
            return Ok(StoredFile {
                hash: *hash,
                kind: ItemKind::Blob,
                size: root.content.len() as u64,
                items,
            });
        }
        let parse = |hash: &ContentHash, content: &[u8]| {
            parse_list(content).map_err(|e| StoreError::corrupt(*hash, e.to_string()))
        };
        let mut size = 0u64;
        let mut stack = vec![(parse(hash, &root.content)?, 0usize)];
        drop(root);
        while let Some((hashes, next)) = stack.last_mut() {
            let Some(child) = hashes.get(*next).copied() else {
                stack.pop();
                continue;
            };
            *next += 1;
            let item = self.get_item(&child)?;
            if seen.insert(child) {
                items.push(child);
            }
            match item.item_type.kind() {
                ItemKind::Blob => size += item.content.len() as u64,
                ItemKind::List => {
                    if stack.len() >= MAX_TREE_DEPTH {
                        return Err(StoreError::corrupt(
                            child,
                            format!("lists nested deeper than {MAX_TREE_DEPTH} levels"),
                        ));
                    }
                    stack.push((parse(&child, &item.content)?, 0));
                }
            }
        }
        Ok(StoredFile {
            hash: *hash,
            kind: ItemKind::List,
            size,
            items,
        })
    }

    /// Adds to `into` the tree under `root` as far as it can be read: the root, and for every
    /// list reached, the list and every hash it names, present or not. Reads lists only (and
    /// the type byte of every other item), so marking a large file costs little; a missing or
    /// corrupt list is simply not descended into. For the garbage collector, which must keep
    /// every item of a custody copy although no row names them.
    pub(crate) fn mark_tree(&self, root: &ContentHash, into: &mut HashSet<ContentHash>) {
        let mut stack = vec![(*root, 0usize)];
        while let Some((hash, depth)) = stack.pop() {
            if !into.insert(hash) || depth >= MAX_TREE_DEPTH || !self.is_list(&hash) {
                continue;
            }
            let Ok(list) = self.get_item(&hash) else {
                continue;
            };
            if let Ok(children) = parse_list(&list.content) {
                stack.extend(children.into_iter().map(|child| (child, depth + 1)));
            }
        }
    }

    /// Whether the stored item `hash` has a list's type byte (unverified).
    pub(crate) fn is_list(&self, hash: &ContentHash) -> bool {
        let mut first = [0u8; 1];
        std::fs::File::open(self.path_for(hash))
            .and_then(|mut f| f.read_exact(&mut first))
            .is_ok()
            && ItemType::from_byte(first[0]).is_ok_and(|t| t.kind() == ItemKind::List)
    }

    /// Streams the file `hash` (a blob, or a tree of lists) to `out`, verifying every item
    /// before writing its bytes. Returns the number of content bytes written. On error, `out`
    /// may hold a prefix of the file: callers writing to a path use a temporary file.
    pub fn read_file(&self, hash: &ContentHash, out: &mut dyn Write) -> Result<u64, StoreError> {
        fn emit(out: &mut dyn Write, bytes: &[u8]) -> Result<u64, StoreError> {
            out.write_all(bytes).map_err(|source| StoreError::Stream {
                op: "write output",
                source,
            })?;
            Ok(bytes.len() as u64)
        }
        let root = self.get_item(hash)?;
        if root.item_type.kind() == ItemKind::Blob {
            return emit(out, &root.content);
        }
        let parse = |hash: &ContentHash, content: &[u8]| {
            parse_list(content).map_err(|e| StoreError::corrupt(*hash, e.to_string()))
        };
        let mut written = 0u64;
        let mut stack = vec![(parse(hash, &root.content)?, 0usize)];
        drop(root);
        while let Some((hashes, next)) = stack.last_mut() {
            let Some(child) = hashes.get(*next).copied() else {
                stack.pop();
                continue;
            };
            *next += 1;
            let item = self.get_item(&child)?;
            match item.item_type.kind() {
                ItemKind::Blob => written += emit(out, &item.content)?,
                ItemKind::List => {
                    if stack.len() >= MAX_TREE_DEPTH {
                        return Err(StoreError::corrupt(
                            child,
                            format!("lists nested deeper than {MAX_TREE_DEPTH} levels"),
                        ));
                    }
                    stack.push((parse(&child, &item.content)?, 0));
                }
            }
        }
        Ok(written)
    }
}
