//! The text table of `kith bench transfer`.

use super::{Figure, TransferResult};

/// Prints the run as a table: each ceiling and the transfer, with the transfer's throughput
/// as a fraction of each ceiling, then the peak memory of both nodes.
pub fn print_table(r: &TransferResult) {
    let path = match (r.rtt_ms, r.rate_mb_s) {
        (0, None) => "over loopback".to_owned(),
        (rtt, None) => format!("across a {rtt} ms round trip"),
        (rtt, Some(rate)) => format!("across a {rtt} ms round trip, {rate} MB/s per source"),
    };
    println!(
        "kith bench transfer: {} bytes ({}{}), {} items ({} fetched), from {} source(s) {path}",
        r.bytes,
        human_bytes(r.bytes),
        if r.files > 1 {
            format!(", a folder of {} files", r.files)
        } else {
            String::new()
        },
        r.items,
        r.items_fetched,
        r.sources
    );
    println!(
        "{:<40} {:>9} {:>8} {:>14}",
        "", "seconds", "GB/s", "transfer/this"
    );
    let row = |name: &str, figure: &Figure, ratio: Option<f64>| {
        let ratio = ratio.map_or_else(String::new, |r| format!("{r:.3}"));
        println!(
            "{name:<40} {:>9.3} {:>8.3} {ratio:>14}",
            figure.seconds, figure.gb_per_s
        );
    };
    let tcp = if r.rtt_ms == 0 && r.rate_mb_s.is_none() {
        "one TCP stream (loopback)"
    } else {
        "one TCP stream through one relay"
    };
    row(tcp, &r.raw_tcp, Some(r.ratios.raw_tcp));
    row("SHA-256 (1 core)", &r.sha256, Some(r.ratios.sha256));
    row(
        "disk write + sync (ratio: half of it)",
        &r.disk_write,
        Some(r.ratios.half_disk),
    );
    row(
        "ChaCha20-Poly1305 seal (1 core)",
        &r.chacha20_poly1305,
        Some(r.ratios.chacha20_poly1305),
    );
    if let Some(essential) = &r.essential {
        row(
            "essential work alone (no protocol)",
            essential,
            r.ratios.essential,
        );
    }
    row("file put (a source node's store)", &r.put, None);
    row("file get -o FILE (start to exit)", &r.transfer, None);
    println!(
        "ceiling min(SHA-256, TCP, disk/2) = {:.3} GB/s; transfer / ceiling = {:.3}",
        r.ceiling_gb_per_s, r.ratios.ceiling
    );
    if let Some(essential) = &r.essential {
        println!(
            "the essential work alone reaches {:.3} of the ceiling on this machine",
            essential.gb_per_s / r.ceiling_gb_per_s
        );
    }
    for share in &r.shares {
        println!(
            "  source {}: {} items, {}{}",
            &share.agent[..12.min(share.agent.len())],
            share.items,
            human_bytes(share.bytes),
            share
                .dropped
                .as_ref()
                .map_or(String::new(), |d| format!(" (dropped: {d})"))
        );
    }
    println!(
        "peak RSS (VmHWM): source node {}, fetching node {}; of which file-backed (the \
         executable's code and libraries, shared): {} and {}",
        human_bytes(r.peak_rss_source),
        human_bytes(r.peak_rss_fetcher),
        human_bytes(r.rss_file_source),
        human_bytes(r.rss_file_fetcher)
    );
    println!(
        "CPU during the transfer (user + system): source node {:.2} s, fetching node {:.2} s, \
         of {:.2} s wall clock; {:.2} ms per item fetched",
        r.cpu_seconds_source,
        r.cpu_seconds_fetcher,
        r.transfer.seconds,
        r.transfer.seconds * 1e3 / r.items_fetched.max(1) as f64
    );
    for (what, idle, busy) in [
        (
            "status (a database read)",
            &r.idle.status,
            &r.during_transfer.status,
        ),
        (
            "chat say (a database write)",
            &r.idle.chat_say,
            &r.during_transfer.chat_say,
        ),
    ] {
        println!(
            "fetching node, {what}: idle median {:.1} ms (p99 {:.1}); during the transfer median {:.1} ms (p99 {:.1}, max {:.1}, {} asked)",
            idle.median_ms, idle.p99_ms, busy.median_ms, busy.p99_ms, busy.max_ms, busy.count
        );
    }
    println!(
        "fetched copy verified (SHA-256 of the whole file): {}",
        r.hash
    );
}

/// `1.00 GiB`, `23.4 MiB`, `512 B`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}
