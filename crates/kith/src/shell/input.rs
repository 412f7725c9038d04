//! Where `kith shell` reads its commands: a line editor with history on a terminal, plain
//! lines from anything else.
//!
//! From a pipe the shell must print nothing but the peer's responses (scripts and the seed
//! transcripts compare its output line for line), so [`LineSource::interactive`] tells the
//! caller whether prompts and banners are wanted at all.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

/// A source of command lines.
pub enum LineSource {
    /// A terminal: line editing and history (saved in the data dir).
    Terminal {
        /// The editor.
        editor: Box<rustyline::DefaultEditor>,
        /// Where history is kept between sessions.
        history: Option<PathBuf>,
    },
    /// A pipe or file: one command per line, no prompt, no echo.
    Pipe(std::io::StdinLock<'static>),
}

impl LineSource {
    /// A terminal editor when stdin is a terminal, plain lines otherwise.
    pub fn open(history: Option<PathBuf>) -> LineSource {
        if std::io::stdin().is_terminal() {
            if let Ok(mut editor) = rustyline::DefaultEditor::new() {
                if let Some(path) = &history {
                    let _ = editor.load_history(path);
                }
                return LineSource::Terminal {
                    editor: Box::new(editor),
                    history,
                };
            }
        }
        LineSource::Pipe(std::io::stdin().lock())
    }

    /// True for a person at a terminal.
    pub fn interactive(&self) -> bool {
        matches!(self, LineSource::Terminal { .. })
    }

    /// The next line without its end, or `None` at end of input (Ctrl-D, end of the pipe).
    /// Ctrl-C on a terminal gives an empty line, as shells do.
    pub fn next_line(&mut self, prompt: &str) -> Option<String> {
        match self {
            LineSource::Terminal { editor, .. } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Some(line)
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Some(String::new()),
                Err(_) => None,
            },
            LineSource::Pipe(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) => None,
                    Err(e) => {
                        eprintln!("kith: cannot read the input: {e}");
                        None
                    }
                    Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
                }
            }
        }
    }
}

impl Drop for LineSource {
    fn drop(&mut self) {
        if let LineSource::Terminal {
            editor,
            history: Some(path),
        } = self
        {
            let _ = editor.save_history(path);
        }
    }
}
