//! The operator CLI: what the binary does when it is neither PID 1 nor the
//! kernel's modprobe helper.
//!
//! Arguments are parsed with `lexopt` rather than clap: the same binary is
//! PID 1 inside a small initramfs, and a handful of subcommands do not
//! justify clap's size.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cmdline::Cmdline;

const USAGE: &str = "\
usage: keel <command> [options]

commands:
  cmdline [--file FILE]   print the parsed kernel command line
                          (default FILE: /proc/cmdline)
  version                 print the version
  help                    print this help

As PID 1 keel boots the node; started as `modprobe` it loads kernel modules.";

/// Runs the CLI; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("keel: {e:#}");
            2
        }
    }
}

fn run(args: Vec<OsString>) -> anyhow::Result<()> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let command = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help")) | Some(Short('h')) | None => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "cmdline" => {
            let mut file = PathBuf::from("/proc/cmdline");
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("file") | Short('f') => file = parser.value()?.into(),
                    _ => return Err(arg.unexpected().into()),
                }
            }
            let c = Cmdline::read(&file)?;
            print!("{c}");
            Ok(())
        }
        "version" | "--version" => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => anyhow::bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}
