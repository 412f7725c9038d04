//! Writing results: JSON documents on stdout, and output files written whole or not at all.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Prints one JSON document on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}

/// Prints `doc` as JSON with `--json`, otherwise the line `text`.
pub fn report(json: bool, doc: serde_json::Value, text: &str) -> Result<()> {
    if json {
        print_json(&doc)
    } else {
        println!("{text}");
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsync'd and
/// renamed, so a failure never leaves a partial output that looks complete.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomically_with(path, |file| Ok(file.write_all(bytes)?))
}

/// Like [`write_file_atomically`], for output produced by `fill` (streamed, checked as it
/// goes): if `fill` fails, the temporary file is removed and `path` is untouched.
pub fn write_file_atomically_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<T>,
) -> Result<T> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.kith-tmp{}", std::process::id()));
    let cannot = || format!("cannot write {}", path.display());
    let mut file = std::fs::File::create(&tmp).with_context(cannot)?;
    let result = fill(&mut file).and_then(|value| {
        (|| -> Result<()> {
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        })()
        .with_context(cannot)?;
        Ok(value)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole input file, refusing one larger than `limit` before reading it.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > limit {
        anyhow::bail!(
            "{} is {size} bytes, over the limit of {limit} (max_content_file in kith.toml [limits])",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
