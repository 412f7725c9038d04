//! A file's tree as a windowed fetch learns it: which items to ask for next, and the order
//! in which their contents make up the file.
//!
//! Items arrive out of order (many in flight, from several sources), but the output file is
//! written front to back, so the walk keeps two cursors over the same tree. The *request*
//! cursor ([`TreeWalk::next_unseen`]) goes depth first through what is known, each hash
//! once (a repeated chunk is fetched once and read back from the store for its other
//! places). The *output* cursor ([`TreeWalk::poll_output`]) hands out leaves in file order as
//! soon as everything before them is out; an item that turned out to be a list is replaced
//! by its children where it stands, whenever it arrives. Items already in the store are read
//! (verified) when the output reaches them. Leaf contents wait in the walk only between
//! their arrival and their turn, which the fetch's window bounds.

use bytes::Bytes;
use kith_store::tree::{parse_list, MAX_TREE_DEPTH};
use kith_store::{ContentHash, ItemKind, ItemType, StoredFile};
use std::collections::HashSet;

/// Why an item cannot be part of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TreeError {
    /// Not an item at all (no or an unknown type byte).
    #[error("item {0} has no valid type byte")]
    BadItem(ContentHash),
    /// A list whose lines are not hashes.
    #[error("list item {0} is malformed")]
    BadList(ContentHash),
    /// Lists nested too deep.
    #[error("{0}: lists nested deeper than {MAX_TREE_DEPTH} levels")]
    TooDeep(ContentHash),
}

/// What the output cursor has next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// The next bytes of the file (a leaf's content).
    Write {
        /// The leaf.
        hash: ContentHash,
        /// Its content.
        content: Bytes,
    },
    /// The next item is in the store (already there, or fetched for an earlier place):
    /// read it and give it to [`TreeWalk::read_done`].
    Read(ContentHash),
}

#[derive(Debug)]
enum Slot {
    Unseen(ContentHash),
    /// Asked for.
    Waiting(ContentHash),
    /// In the store before the fetch began.
    Present(ContentHash),
    /// A hash met earlier in this walk.
    Repeat(ContentHash),
    /// Being read for the output.
    Reading(ContentHash),
    Leaf(ContentHash, Bytes),
    List(Box<Frame>),
    Done,
}

#[derive(Debug)]
struct Frame {
    slots: Vec<Slot>,
    /// First slot not output yet.
    out: usize,
    /// First slot the request cursor has not looked at.
    req: usize,
    depth: usize,
}

impl Frame {
    fn new(hashes: Vec<ContentHash>, depth: usize) -> Frame {
        Frame {
            slots: hashes.into_iter().map(Slot::Unseen).collect(),
            out: 0,
            req: 0,
            depth,
        }
    }
}

enum Output {
    Ready(Step),
    Blocked,
    Finished,
}

/// The walk (see the module docs).
#[derive(Debug)]
pub(super) struct TreeWalk {
    root_hash: ContentHash,
    root: Frame,
    seen: HashSet<ContentHash>,
    /// Every distinct item, in the order first seen (the root first).
    items: Vec<ContentHash>,
    size: u64,
    kind: Option<ItemKind>,
    finished: bool,
}

impl TreeWalk {
    /// The walk of the file `root`.
    pub(super) fn new(root: ContentHash) -> TreeWalk {
        TreeWalk {
            root_hash: root,
            root: Frame::new(vec![root], 0),
            seen: HashSet::new(),
            items: Vec::new(),
            size: 0,
            kind: None,
            finished: false,
        }
    }

    /// The next item to ask for (or to find in the store: then [`mark_present`]), depth
    /// first through what is known; `None` until more of the tree is known.
    ///
    /// [`mark_present`]: TreeWalk::mark_present
    pub(super) fn next_unseen(&mut self) -> Option<ContentHash> {
        next_unseen(&mut self.root, &mut self.seen, &mut self.items)
    }

    /// An item [`next_unseen`](Self::next_unseen) gave is in the store already: it is read
    /// when the output reaches it.
    pub(super) fn mark_present(&mut self, hash: ContentHash) {
        if let Some(slot) = find(
            &mut self.root,
            &|s| matches!(s, Slot::Waiting(h) if *h == hash),
        ) {
            *slot = Slot::Present(hash);
        }
    }

    /// An item asked for arrived (verified): a leaf waits for its turn, a list's children
    /// take its place. Returns the item's kind.
    pub(super) fn arrived(
        &mut self,
        hash: ContentHash,
        item: Bytes,
    ) -> Result<ItemKind, TreeError> {
        self.resolve(hash, item, |s| matches!(s, Slot::Waiting(h) if *h == hash))
    }

    /// A [`Step::Read`] finished: the item, verified.
    pub(super) fn read_done(
        &mut self,
        hash: ContentHash,
        item: Bytes,
    ) -> Result<ItemKind, TreeError> {
        self.resolve(hash, item, |s| matches!(s, Slot::Reading(h) if *h == hash))
    }

    fn resolve(
        &mut self,
        hash: ContentHash,
        item: Bytes,
        which: impl Fn(&Slot) -> bool,
    ) -> Result<ItemKind, TreeError> {
        let (&type_byte, content) = item.split_first().ok_or(TreeError::BadItem(hash))?;
        let kind = ItemType::from_byte(type_byte)
            .map_err(|_| TreeError::BadItem(hash))?
            .kind();
        let (slot, depth) =
            find_with_depth(&mut self.root, &which).ok_or(TreeError::BadItem(hash))?;
        if hash == self.root_hash && self.kind.is_none() {
            self.kind = Some(kind);
        }
        if kind == ItemKind::List {
            if depth >= MAX_TREE_DEPTH {
                return Err(TreeError::TooDeep(hash));
            }
            let children = parse_list(content).map_err(|_| TreeError::BadList(hash))?;
            *slot = Slot::List(Box::new(Frame::new(children, depth + 1)));
        } else {
            *slot = Slot::Leaf(hash, item.slice(1..));
        }
        Ok(kind)
    }

    /// The next step of the output, in file order; `None` while the next item is not here
    /// (or when the file is complete).
    pub(super) fn poll_output(&mut self) -> Option<Step> {
        if self.finished {
            return None;
        }
        match poll_output(&mut self.root) {
            Output::Ready(step) => {
                if let Step::Write { content, .. } = &step {
                    self.size += content.len() as u64;
                }
                Some(step)
            }
            Output::Blocked => None,
            Output::Finished => {
                self.finished = true;
                None
            }
        }
    }

    /// Every item of the file has been output.
    pub(super) fn is_complete(&self) -> bool {
        self.finished
    }

    /// What the file is, once complete (every item was verified on the way).
    pub(super) fn into_stored(self) -> Option<StoredFile> {
        Some(StoredFile {
            hash: self.root_hash,
            kind: self.kind?,
            size: self.size,
            items: self.items,
        })
    }

    /// Items of the file seen so far.
    pub(super) fn items_seen(&self) -> u64 {
        self.items.len() as u64
    }
}

fn next_unseen(
    frame: &mut Frame,
    seen: &mut HashSet<ContentHash>,
    items: &mut Vec<ContentHash>,
) -> Option<ContentHash> {
    for i in frame.out..frame.req {
        if let Slot::List(sub) = &mut frame.slots[i] {
            if let Some(hash) = next_unseen(sub, seen, items) {
                return Some(hash);
            }
        }
    }
    while frame.req < frame.slots.len() {
        let i = frame.req;
        frame.req += 1;
        if let Slot::Unseen(hash) = frame.slots[i] {
            if seen.insert(hash) {
                items.push(hash);
                frame.slots[i] = Slot::Waiting(hash);
                return Some(hash);
            }
            frame.slots[i] = Slot::Repeat(hash);
        }
    }
    None
}

fn poll_output(frame: &mut Frame) -> Output {
    while frame.out < frame.slots.len() {
        let slot = &mut frame.slots[frame.out];
        match slot {
            Slot::Done => frame.out += 1,
            Slot::Leaf(..) => {
                let Slot::Leaf(hash, content) = std::mem::replace(slot, Slot::Done) else {
                    unreachable!()
                };
                frame.out += 1;
                return Output::Ready(Step::Write { hash, content });
            }
            Slot::Present(hash) | Slot::Repeat(hash) => {
                let hash = *hash;
                *slot = Slot::Reading(hash);
                return Output::Ready(Step::Read(hash));
            }
            Slot::Reading(_) | Slot::Waiting(_) | Slot::Unseen(_) => return Output::Blocked,
            Slot::List(sub) => match poll_output(sub) {
                Output::Finished => {
                    *slot = Slot::Done;
                    frame.out += 1;
                }
                other => return other,
            },
        }
    }
    Output::Finished
}

fn find<'a>(frame: &'a mut Frame, which: &dyn Fn(&Slot) -> bool) -> Option<&'a mut Slot> {
    find_with_depth(frame, which).map(|(slot, _)| slot)
}

/// The slot `which` picks, among those between the output and the request cursors of every
/// frame (where asked-for and present items are), and the depth of its frame.
fn find_with_depth<'a>(
    frame: &'a mut Frame,
    which: &dyn Fn(&Slot) -> bool,
) -> Option<(&'a mut Slot, usize)> {
    let mut path = Vec::new();
    if !locate(frame, which, &mut path) {
        return None;
    }
    let mut frame = frame;
    let (last, inner) = path.split_last()?;
    for &i in inner {
        match &mut frame.slots[i] {
            Slot::List(sub) => frame = sub,
            _ => return None,
        }
    }
    let depth = frame.depth;
    Some((&mut frame.slots[*last], depth))
}

/// Fills `path` with the indices that lead to the slot `which` picks.
fn locate(frame: &Frame, which: &dyn Fn(&Slot) -> bool, path: &mut Vec<usize>) -> bool {
    for i in frame.out..frame.req {
        path.push(i);
        if which(&frame.slots[i]) {
            return true;
        }
        if let Slot::List(sub) = &frame.slots[i] {
            if locate(sub, which, path) {
                return true;
            }
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> ContentHash {
        ContentHash([n; 32])
    }

    fn leaf(content: &[u8]) -> Bytes {
        let mut b = vec![1u8];
        b.extend_from_slice(content);
        Bytes::from(b)
    }

    fn list(children: &[ContentHash]) -> Bytes {
        let lines: Vec<String> = children.iter().map(|c| c.to_hex()).collect();
        let mut b = vec![2u8];
        b.extend_from_slice(lines.join("\n").as_bytes());
        Bytes::from(b)
    }

    fn drain(walk: &mut TreeWalk) -> Vec<Step> {
        std::iter::from_fn(|| walk.poll_output()).collect()
    }

    fn written(steps: &[Step]) -> Vec<u8> {
        steps
            .iter()
            .flat_map(|s| match s {
                Step::Write { content, .. } => content.to_vec(),
                Step::Read(_) => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn leaves_come_out_in_file_order_whatever_order_they_arrive_in() {
        let mut walk = TreeWalk::new(h(1));
        assert_eq!(walk.next_unseen(), Some(h(1)));
        assert_eq!(
            walk.next_unseen(),
            None,
            "nothing known beyond the root yet"
        );
        walk.arrived(h(1), list(&[h(2), h(3), h(4)])).unwrap();
        let asked: Vec<_> = std::iter::from_fn(|| walk.next_unseen()).collect();
        assert_eq!(asked, [h(2), h(3), h(4)]);
        walk.arrived(h(4), leaf(b"ccc")).unwrap();
        walk.arrived(h(3), leaf(b"bb")).unwrap();
        assert!(drain(&mut walk).is_empty(), "the first leaf is not here");
        walk.arrived(h(2), leaf(b"a")).unwrap();
        assert_eq!(written(&drain(&mut walk)), b"abbccc");
        assert!(walk.is_complete());
        let stored = walk.into_stored().unwrap();
        assert_eq!(stored.kind, ItemKind::List);
        assert_eq!(stored.size, 6);
        assert_eq!(stored.items, [h(1), h(2), h(3), h(4)]);
    }

    #[test]
    fn a_list_that_arrives_late_takes_its_place_before_later_siblings() {
        let mut walk = TreeWalk::new(h(1));
        walk.next_unseen();
        walk.arrived(h(1), list(&[h(2), h(3)])).unwrap();
        assert_eq!(walk.next_unseen(), Some(h(2)));
        assert_eq!(walk.next_unseen(), Some(h(3)));
        walk.arrived(h(3), leaf(b"z")).unwrap();
        // h(2) is a list: its children come before h(3)'s content.
        walk.arrived(h(2), list(&[h(5), h(6)])).unwrap();
        assert_eq!(walk.next_unseen(), Some(h(5)));
        assert_eq!(walk.next_unseen(), Some(h(6)));
        walk.arrived(h(6), leaf(b"y")).unwrap();
        walk.arrived(h(5), leaf(b"x")).unwrap();
        assert_eq!(written(&drain(&mut walk)), b"xyz");
        assert!(walk.is_complete());
    }

    #[test]
    fn repeated_and_present_items_are_read_back_at_their_turn() {
        let mut walk = TreeWalk::new(h(1));
        walk.next_unseen();
        walk.arrived(h(1), list(&[h(2), h(3), h(2)])).unwrap();
        assert_eq!(walk.next_unseen(), Some(h(2)));
        assert_eq!(walk.next_unseen(), Some(h(3)));
        assert_eq!(
            walk.next_unseen(),
            None,
            "the repeat is not asked for again"
        );
        walk.mark_present(h(3));
        walk.arrived(h(2), leaf(b"a")).unwrap();
        let steps = drain(&mut walk);
        assert_eq!(written(&steps), b"a");
        assert_eq!(steps.last(), Some(&Step::Read(h(3))));
        walk.read_done(h(3), leaf(b"b")).unwrap();
        let steps = drain(&mut walk);
        assert_eq!(written(&steps), b"b");
        assert_eq!(steps.last(), Some(&Step::Read(h(2))));
        walk.read_done(h(2), leaf(b"a")).unwrap();
        assert_eq!(written(&drain(&mut walk)), b"a");
        assert!(walk.is_complete());
        assert_eq!(walk.into_stored().unwrap().size, 3);
    }

    #[test]
    fn a_present_list_is_expanded_when_read() {
        let mut walk = TreeWalk::new(h(1));
        walk.next_unseen();
        walk.mark_present(h(1));
        assert_eq!(drain(&mut walk), [Step::Read(h(1))]);
        walk.read_done(h(1), list(&[h(2)])).unwrap();
        assert_eq!(walk.next_unseen(), Some(h(2)));
        walk.arrived(h(2), leaf(b"q")).unwrap();
        assert_eq!(written(&drain(&mut walk)), b"q");
        assert!(walk.is_complete());
    }

    #[test]
    fn malformed_and_endless_trees_are_refused() {
        let mut walk = TreeWalk::new(h(1));
        walk.next_unseen();
        assert_eq!(
            walk.arrived(h(1), Bytes::from_static(b"\x02not a list")),
            Err(TreeError::BadList(h(1)))
        );
        assert!(walk.arrived(h(9), leaf(b"x")).is_err(), "not asked for");
        // A chain of lists deeper than the bound.
        let mut walk = TreeWalk::new(h(0));
        let mut next = walk.next_unseen().unwrap();
        let mut depth = 0u8;
        loop {
            depth += 1;
            match walk.arrived(next, list(&[h(depth)])) {
                Ok(_) => next = walk.next_unseen().unwrap(),
                Err(e) => {
                    assert!(matches!(e, TreeError::TooDeep(_)));
                    break;
                }
            }
        }
        assert_eq!(depth as usize, MAX_TREE_DEPTH + 1);
    }
}
