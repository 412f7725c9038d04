//! `kith content sign|verify|seal|open`: the Datt signed and sealed layouts.

use super::Env;
use crate::cli::ContentCommand;
use crate::output::{read_bounded, report, write_file_atomically};
use anyhow::{anyhow, Context, Result};
use kith_crypto::content;
use serde_json::json;

/// Runs one `kith content` subcommand.
pub fn run(env: &Env, command: ContentCommand) -> Result<()> {
    let limit = env.config.node_limits.max_content_file;
    match command {
        ContentCommand::Sign { file, output } => {
            let data = read_bounded(&file, limit)?;
            let identity = env.identity()?;
            let signed = content::sign(identity.content_key(), &data)?;
            write_file_atomically(&output, &signed)?;
            report(
                env.json,
                json!({"signed": output, "signer": hex::encode(identity.content_public())}),
                &format!("signed {} bytes into {}", data.len(), output.display()),
            )
        }
        ContentCommand::Verify { file } => {
            let bytes = read_bounded(&file, limit.saturating_add(1024))?;
            let signed = content::verify(&bytes)
                .map_err(|e| anyhow!("{} is not valid signed content: {e}", file.display()))?;
            report(
                env.json,
                json!({"valid": true, "signer": hex::encode(signed.signer), "len": signed.data.len()}),
                &format!("valid signature by {}", hex::encode(signed.signer)),
            )
        }
        ContentCommand::Seal { to, file, output } => {
            let receiver = parse_public_key(&to)?;
            let data = read_bounded(&file, limit)?;
            let identity = env.identity()?;
            let sealed = content::seal(
                identity.content_key(),
                &receiver,
                &data,
                &mut rand::rngs::OsRng,
            )?;
            write_file_atomically(&output, &sealed)?;
            report(
                env.json,
                json!({"sealed": output, "to": to}),
                &format!(
                    "sealed {} bytes for {to} into {}",
                    data.len(),
                    output.display()
                ),
            )
        }
        ContentCommand::Open { file, output } => {
            let bytes = read_bounded(&file, limit.saturating_add(1024))?;
            let identity = env.identity()?;
            let opened = content::open(identity.content_key(), &bytes)
                .map_err(|e| anyhow!("cannot open {}: {e}", file.display()))?;
            write_file_atomically(&output, &opened.data)?;
            report(
                env.json,
                json!({"opened": output, "sender": hex::encode(opened.sender), "len": opened.data.len()}),
                &format!(
                    "opened {} bytes from {} into {}",
                    opened.data.len(),
                    hex::encode(opened.sender),
                    output.display()
                ),
            )
        }
    }
}

fn parse_public_key(text: &str) -> Result<[u8; 33]> {
    let bytes = hex::decode(text.trim()).context("--to is not hex")?;
    bytes.try_into().map_err(|_| {
        anyhow!(
            "--to must be a 33-byte compressed secp256k1 key (66 hex digits), as `kith id` prints"
        )
    })
}
