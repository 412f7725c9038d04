//! The flags of `kith bench`, and the size parser other flags share.

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `kith bench ...`: measurements of this machine and this build.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Move a file from one node to another over a secure link on loopback (two `kith up`
    /// processes in temporary data dirs), next to raw TCP loopback, SHA-256 and
    /// ChaCha20-Poly1305 measured in the same run; reports throughput, ratios and the peak
    /// memory of both nodes.
    Transfer(TransferArgs),
    /// Secure-link handshakes per second against a node (N + KK over TCP loopback, many at a
    /// time), next to X25519 on one core measured in the same run.
    Handshakes(HandshakesArgs),
}

/// `kith bench transfer` flags.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// File size: bytes, or a number with a unit (KiB, MiB, GiB; KB, MB, GB)
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Keep the temporary data dirs, node logs and file (the path is printed on stderr)
    #[arg(long)]
    pub keep: bool,
    /// Where the temporary directory is made (it needs about (3 + sources) x the size free)
    /// [default: the system temp dir]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Round trip between the fetching node and each source, in milliseconds: a built-in
    /// relay holds every byte half of it each way
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub rtt: u64,
    /// Each source's uplink, decimal megabytes per second: the relay paces each direction to
    /// it [default: unlimited]
    #[arg(long, value_name = "MB/S")]
    pub rate: Option<f64>,
    /// Nodes that hold the file, each behind its own relay; the fetching node takes it from
    /// all of them at once (`file get` without `--from`)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub sources: u64,
    /// The file becomes a folder of N files, SIZE/N bytes each (`kith file put DIR`, then
    /// `kith file get` of the folder): many small files cost round trips, not bytes
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub files: u64,
    /// A `[limits]` setting for every node, `KEY=VALUE` (repeatable), to see what a setting
    /// changes (e.g. `--limit fetch_window_bytes=50331648`)
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    pub limits: Vec<String>,
}

/// `kith bench handshakes` flags.
#[derive(Debug, Args)]
pub struct HandshakesArgs {
    /// Known-peer handshakes to run in all
    #[arg(long, default_value_t = 2_000)]
    pub count: usize,
    /// Handshakes in flight at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The kith executable that runs the node [default: this one]
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Keep the temporary data dir and node log
    #[arg(long)]
    pub keep: bool,
    /// A `[limits]` setting for the node, `KEY=VALUE` (repeatable), to see what a setting costs
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    pub limits: Vec<String>,
}

/// Parses `1073741824`, `1GiB`, `2MiB`, `64KiB`, `1GB`, `500MB`, `10KB` (also lower case and
/// with a space before the unit).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 1GiB, 2MiB or 1048576"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
