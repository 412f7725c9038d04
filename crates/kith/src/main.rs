//! The `kith` command: parses the command line, runs the command, maps errors to exit codes.
//!
//! Exit codes: 0 success; 1 the command failed (the one-line reason is on stderr); 2 the
//! command line itself was wrong (clap); 3 the command needs a running node and none runs.

mod cli;
mod commands;
mod env;
mod output;
mod progress;
mod shell;

use clap::Parser;
use kith_node::control::ControlError;

fn main() {
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    if let Err(error) = commands::run(cli) {
        let line = one_line(&error);
        let code = match error.downcast_ref::<ControlError>() {
            Some(ControlError::NotRunning { .. }) => 3,
            _ => 1,
        };
        if json {
            // A script that asked for JSON gets JSON, errors included.
            println!("{}", serde_json::json!({ "error": line, "exit": code }));
        } else {
            eprintln!("kith: {line}");
        }
        std::process::exit(code);
    }
}

/// The error and its causes on one line, outermost first, without repeating a cause that the
/// outer message already quotes.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
