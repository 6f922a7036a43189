//! `keel --talosconfig FILE [--context NAME] --nodes IP[,IP] <command>`:
//! the node API's client, with a Talos user's credentials. Human-readable
//! output by default, `--json` for scripts (one JSON document per node:
//! the API's own answer).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::api::client::{LogLine, NodeClient};
use crate::api::status::Status;
use crate::api::talosconfig;

/// Options before (or after) the command.
#[derive(Debug, Default)]
pub struct Global {
    pub talosconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub nodes: Vec<String>,
    pub json: bool,
}

pub const COMMANDS: &[&str] = &["status", "logs", "bootstrap", "reboot", "shutdown"];

/// Runs one node command; the exit code is 0 when every node answered
/// (and accepted), 1 otherwise.
pub fn run(global: Global, command: &str, parser: &mut lexopt::Parser) -> anyhow::Result<i32> {
    use lexopt::prelude::*;
    let mut global = global;
    let mut follow = false;
    let mut lines: Option<usize> = Some(50);
    let mut source = "keel".to_owned();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("follow") | Short('f') if command == "logs" => follow = true,
            Long("lines") | Long("tail") if command == "logs" => {
                let v = parser.value()?.string()?;
                lines = if v == "all" { None } else { Some(v.parse()?) };
            }
            Long("etcd") if command == "logs" => source = "etcd".to_owned(),
            Long("source") if command == "logs" => source = parser.value()?.string()?,
            Long("json") => global.json = true,
            Long("nodes") | Short('n') => global.nodes = split(parser.value()?)?,
            Long("talosconfig") => global.talosconfig = Some(parser.value()?.into()),
            Long("context") => global.context = Some(parser.value()?.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let path = global
        .talosconfig
        .clone()
        .unwrap_or_else(talosconfig::default_path);
    let creds = talosconfig::load(&path, global.context.as_deref())?;
    let nodes = if !global.nodes.is_empty() {
        global.nodes.clone()
    } else if !creds.nodes.is_empty() {
        creds.nodes.clone()
    } else {
        creds.endpoints.clone()
    };
    if nodes.is_empty() {
        anyhow::bail!(
            "no node to ask: give --nodes IP[,IP], or nodes/endpoints in context {} of {}",
            creds.context,
            path.display()
        );
    }
    if follow && nodes.len() > 1 {
        anyhow::bail!("logs --follow follows one node; give one --nodes IP");
    }
    let mut failed = 0;
    for node in &nodes {
        let client = NodeClient::new(&creds, node)?;
        let result = match command {
            "status" => client.status().map(|s| {
                if global.json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else {
                    print!("{}", render_status(node, &s));
                }
            }),
            "logs" => client.logs(&source, lines, follow, |l| {
                if global.json {
                    println!("{}", serde_json::to_string(&l).unwrap_or_default());
                } else {
                    println!("{}", render_line(node, nodes.len() > 1, &l));
                }
                true
            }),
            action => client.act(action).map(|m| {
                if global.json {
                    println!("{}", serde_json::json!({"node": node, "message": m}));
                } else {
                    println!("{node}: {m}");
                }
            }),
        };
        if let Err(e) = result {
            failed += 1;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({"node": node, "error": e.to_string()})
                );
            } else {
                eprintln!("keel: {e}");
            }
        }
    }
    Ok(i32::from(failed > 0))
}

/// `--nodes a,b --nodes c`.
pub fn split(v: OsString) -> anyhow::Result<Vec<String>> {
    Ok(v.into_string()
        .map_err(|_| anyhow::anyhow!("--nodes: not UTF-8"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn render_line(node: &str, prefix: bool, l: &LogLine) -> String {
    if let Some(n) = l.missed {
        return format!("[{node}: {n} lines missed: the reader fell behind]");
    }
    let level = match l.level.as_str() {
        "error" => " ERROR",
        "warn" => " WARN",
        _ => "",
    };
    if prefix {
        format!("{node}: [{:>10.3}]{level} {}", l.at_s, l.text)
    } else {
        format!("[{:>10.3}]{level} {}", l.at_s, l.text)
    }
}

/// `3m12s`.
pub fn human(secs: f64) -> String {
    // Whole seconds; the sign and fraction matter not for an uptime.
    let s =
        std::time::Duration::try_from_secs_f64(secs.max(0.0).round()).map_or(0, |d| d.as_secs());
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// The human view of one node's status.
pub fn render_status(node: &str, s: &Status) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("  {k:<9} {v}\n"));
    let rss = s
        .node
        .rss_kb
        .map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let head = format!(
        "{node}: {} (keel {}), up {}, PID 1 RSS {rss}\n",
        s.node.hostname,
        s.node.version,
        human(s.node.uptime_s)
    );
    if let Some(c) = &s.config {
        let w = match c.warnings.len() {
            0 => String::new(),
            n => format!(
                "; {n} warning{}: {}",
                if n == 1 { "" } else { "s" },
                c.warnings.join("; ")
            ),
        };
        row("config", format!("from {}{w}", c.source));
    } else {
        row("config", "none yet".to_owned());
    }
    let boot: Vec<String> = s
        .boot
        .iter()
        .map(|p| format!("{} {} ms", p.name, p.ms))
        .collect();
    row("boot", boot.join(", "));
    for l in s.links.iter().filter(|l| l.name != "lo") {
        let alt = if l.altnames.is_empty() {
            String::new()
        } else {
            format!(" ({})", l.altnames.join(", "))
        };
        let state = match (l.up, l.carrier) {
            (true, true) => "up",
            (true, false) => "up, no carrier",
            _ => "down",
        };
        row(
            "link",
            format!(
                "{}{alt}: {state}, {} {}",
                l.name,
                l.mac.as_deref().unwrap_or("-"),
                l.addresses.join(" ")
            ),
        );
    }
    for r in &s.routes {
        row("route", r.clone());
    }
    let e = &s.etcd;
    let mut etcd = e.state.clone();
    if let Some(m) = &e.member {
        etcd += &format!(", member {m}");
    }
    if let Some(id) = &e.id {
        etcd += &format!(" ({id}{})", if e.learner { ", learner" } else { "" });
    }
    if let Some(c) = &e.cluster_id {
        etcd += &format!(", cluster {c}");
    }
    if e.is_leader {
        etcd += ", leader";
    } else if let Some(l) = &e.leader {
        let name = e
            .members
            .iter()
            .find(|m| &m.id == l)
            .map_or(l.as_str(), |m| m.name.as_str());
        etcd += &format!(", leader {name}");
    }
    if !e.members.is_empty() {
        let names: Vec<String> = e
            .members
            .iter()
            .map(|m| {
                let n = if m.name.is_empty() {
                    m.id.as_str()
                } else {
                    m.name.as_str()
                };
                if m.learner {
                    format!("{n} (learner)")
                } else {
                    n.to_owned()
                }
            })
            .collect();
        etcd += &format!("; {} members: {}", names.len(), names.join(", "));
    }
    if let Some(d) = &e.detail {
        etcd += &format!("; {d}");
    }
    row("etcd", etcd);
    for v in &s.vips {
        let mut line = match (v.role.as_str(), &v.holder) {
            ("holder", _) => format!("{}: held by this node ({})", v.ip, v.identity),
            (role, Some(h)) => format!("{}: {role}, held by {h}", v.ip),
            (role, None) => format!("{}: {role}, no holder", v.ip),
        };
        if let Some(t) = v.holder_for_s {
            line += &format!(" for {}", human(t));
        }
        if let Some(t) = v.last_failover_ago_s {
            line += &format!(", last failover {} ago", human(t));
        }
        row("vip", line);
    }
    head + &out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            (0.4, "0s"),
            (59.0, "59s"),
            (192.0, "3m12s"),
            (3600.0, "1h00m"),
            (90061.0, "1d01h"),
            (-3.0, "0s"),
        ];
        for (s, want) in table {
            assert_eq!(human(s), want, "{s}");
        }
    }

    #[test]
    fn nodes_lists() {
        assert_eq!(
            split("10.5.0.11, 10.5.0.12,".into()).unwrap(),
            ["10.5.0.11", "10.5.0.12"]
        );
    }
}
