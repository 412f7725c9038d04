//! Answering a CIYAM session's store questions, shared by the peer port and secure links.
//!
//! Both drivers run the same [`Session`]; the questions about the local store (which tag is
//! which hash, do we hold an item, read it) have the same answers whoever asks, so they are
//! answered here once. What differs between the drivers (their own commands, where a received
//! item goes, `pip` addresses) stays with each driver.

use crate::clock::mono_now;
use crate::store::{Store, StoreFailure};
use bytes::Bytes;
use kith_proto::files::{Event, Session, SessionError};
use kith_store::{ContentHash, ItemType, StoreError};

/// Why a store question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreFailure),
    /// The session refused the answer.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Reads an item as the session wants it (type byte first), `None` when it is not stored.
/// The store's read verifies the item's hash.
pub async fn read_item(store: &Store, hash: ContentHash) -> Result<Option<Bytes>, StoreFailure> {
    store
        .run(move |s| match s.blobs().get_item_bytes(&hash) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
}

/// Stores one received item (type byte first, hash already verified by the session) durably,
/// as an item only: no file record.
pub async fn store_raw_item(store: &Store, item: Bytes) -> Result<(), StoreFailure> {
    store
        .run(move |s| {
            let (item_type, content) = split_item(&item)?;
            s.blobs().put_item(item_type, content).map(|_| ())
        })
        .await
}

/// Stores one received item like [`store_raw_item`], under the address the session computed
/// when the item arrived (it hashes every item before asking for it to be stored), so the
/// store does not hash the same megabyte again.
pub async fn store_received_item(
    store: &Store,
    hash: ContentHash,
    item: Bytes,
) -> Result<(), StoreFailure> {
    store
        .run(move |s| {
            let (item_type, content) = split_item(&item)?;
            s.blobs().put_hashed_item(hash, item_type, content)
        })
        .await
}

/// Splits an item into its type and content.
pub fn split_item(item: &[u8]) -> Result<(ItemType, &[u8]), StoreError> {
    let Some((&type_byte, content)) = item.split_first() else {
        return Err(StoreError::Config("empty item".into()));
    };
    let item_type = ItemType::from_byte(type_byte)
        .map_err(|e| StoreError::Config(format!("bad type byte {}", e.0)))?;
    Ok((item_type, content))
}

/// Answers the store questions ([`Event::ResolveTag`], [`Event::HaveItem`],
/// [`Event::ReadItem`]) on `session`; any other event is handed back for the driver. The
/// caller calls its port's `process` afterwards.
pub async fn answer_from_store(
    store: &Store,
    session: &mut Session,
    event: Event,
) -> Result<Option<Event>, AnswerError> {
    match event {
        // No tags on this node yet: tags name blockchain files in the reference.
        Event::ResolveTag { .. } => session.answer_tag(mono_now(), None)?,
        Event::HaveItem { hash } => {
            let have = store.run(move |s| s.blobs().contains(&hash)).await?;
            session.answer_have(mono_now(), have)?
        }
        Event::ReadItem { hash } => {
            let item = read_item(store, hash).await?;
            session.supply_verified_item(mono_now(), item)?
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
