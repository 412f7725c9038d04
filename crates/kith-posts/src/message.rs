//! The exchange messages, each the payload of one Datt envelope (command in [`Message::command`]):
//! - `announce`: hashes of posts the sender holds (`[count u16][hash 32]*`);
//! - `getdata`: hashes of posts the sender wants (same layout);
//! - `postdata`: one post item.
//!
//! Decoders check the declared count against [`MAX_HASHES`] and the length against the
//! payload before reading anything else.

use crate::post::PostHash;

/// The most hashes one `announce` or `getdata` carries.
pub const MAX_HASHES: usize = 256;

/// Envelope commands.
pub const ANNOUNCE: &str = "announce";
/// See [`ANNOUNCE`].
pub const GETDATA: &str = "getdata";
/// See [`ANNOUNCE`].
pub const POSTDATA: &str = "postdata";

/// One exchange message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Posts the sender holds.
    Announce(Vec<PostHash>),
    /// Posts the sender wants.
    GetData(Vec<PostHash>),
    /// One post item.
    PostData(Vec<u8>),
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not one of the three commands.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// Over [`MAX_HASHES`], or a length that does not match the count.
    #[error("malformed hash list")]
    BadList,
}

impl Message {
    /// Its envelope command.
    pub fn command(&self) -> &'static str {
        match self {
            Message::Announce(_) => ANNOUNCE,
            Message::GetData(_) => GETDATA,
            Message::PostData(_) => POSTDATA,
        }
    }

    /// Its envelope payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Announce(hashes) | Message::GetData(hashes) => {
                let hashes = &hashes[..hashes.len().min(MAX_HASHES)];
                let mut out = Vec::with_capacity(2 + 32 * hashes.len());
                out.extend_from_slice(&(hashes.len() as u16).to_be_bytes());
                for h in hashes {
                    out.extend_from_slice(h);
                }
                out
            }
            Message::PostData(item) => item.clone(),
        }
    }

    /// Reads a payload of `command`.
    pub fn decode(command: &str, payload: &[u8]) -> Result<Message, MessageError> {
        match command {
            ANNOUNCE => decode_list(payload).map(Message::Announce),
            GETDATA => decode_list(payload).map(Message::GetData),
            POSTDATA => Ok(Message::PostData(payload.to_vec())),
            other => Err(MessageError::UnknownCommand(
                other.chars().take(12).collect(),
            )),
        }
    }
}

fn decode_list(payload: &[u8]) -> Result<Vec<PostHash>, MessageError> {
    let count = u16::from_be_bytes(
        payload
            .get(..2)
            .ok_or(MessageError::BadList)?
            .try_into()
            .expect("2 bytes"),
    ) as usize;
    if count > MAX_HASHES || payload.len() != 2 + 32 * count {
        return Err(MessageError::BadList);
    }
    Ok(payload[2..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_bad_ones_are_refused() {
        let m = Message::Announce(vec![[1; 32], [2; 32]]);
        assert_eq!(Message::decode(ANNOUNCE, &m.encode()).unwrap(), m);
        assert_eq!(Message::decode(GETDATA, &[]), Err(MessageError::BadList));
        assert_eq!(
            Message::decode(GETDATA, &[0, 1, 5]),
            Err(MessageError::BadList)
        );
        let mut big = 300u16.to_be_bytes().to_vec();
        big.extend(std::iter::repeat_n(0u8, 300 * 32));
        assert_eq!(Message::decode(ANNOUNCE, &big), Err(MessageError::BadList));
        assert!(Message::decode("bogus", &[]).is_err());
    }
}
