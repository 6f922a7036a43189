//! The kernel command line, parsed the way the kernel itself splits it.
//!
//! The rules follow `next_arg()` in the kernel's `lib/cmdline.c` and
//! `parse_args()` in `kernel/params.c`:
//! - parameters are separated by runs of whitespace;
//! - a double quote toggles "in quotes", so both `"a=b c"` and `a="b c"`
//!   yield key `a`, value `b c`, and the quote characters are removed;
//! - a parameter without `=` is a flag;
//! - a bare `--` ends the kernel's parameters: everything after it is handed
//!   to init as arguments (`/proc/cmdline` still shows it).
//!
//! Keys may repeat (`keel.environment=A=1 keel.environment=B=2`); the parsed
//! value keeps every occurrence in order, and [`Cmdline::get`] returns the last
//! one, which is how the kernel treats a repeated `core_param`.

use std::fmt;
use std::path::Path;

/// One `key[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    /// `None` for a flag (`quiet`); `Some("")` for `key=`.
    pub value: Option<String>,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    params: Vec<Param>,
    /// Arguments after `--`, passed to init.
    init_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("cannot read kernel command line from {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Cmdline {
    /// Parses a command line string.
    pub fn parse(text: &str) -> Cmdline {
        let mut out = Cmdline::default();
        let mut after_dashes = false;
        for word in split(text) {
            if after_dashes {
                out.init_args.push(word.raw);
                continue;
            }
            if word.raw == "--" && !word.quoted {
                after_dashes = true;
                continue;
            }
            out.params.push(word.into_param());
        }
        out
    }

    /// Reads and parses a file such as `/proc/cmdline`.
    pub fn read(path: &Path) -> Result<Cmdline, CmdlineError> {
        std::fs::read_to_string(path)
            .map(|s| Cmdline::parse(&s))
            .map_err(|source| CmdlineError::Read {
                path: path.display().to_string(),
                source,
            })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn init_args(&self) -> &[String] {
        &self.init_args
    }

    /// The value of the last occurrence of `key`. A flag yields `Some("")`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|p| p.key == key)
            .map(|p| p.value.as_deref().unwrap_or(""))
    }

    /// Every value given for `key`, in order (flags are skipped).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |p| p.key == key)
            .filter_map(|p| p.value.as_deref())
    }

    /// True when `key` is present, with or without a value.
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|p| p.key == key)
    }

    /// A boolean parameter: a bare flag, `1`, `y`, `yes`, `on` and `true`
    /// are true (the spellings `kstrtobool()` accepts).
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => matches!(
                v.to_ascii_lowercase().as_str(),
                "" | "1" | "y" | "yes" | "on" | "true"
            ),
        }
    }

    /// Parameters addressed to a loadable module, `module.param=value`, as
    /// modprobe(8) reads them from `/proc/cmdline`. Dashes and underscores in
    /// the module name are equivalent, as everywhere in kmod.
    pub fn module_params(&self, module: &str) -> Vec<String> {
        let want = module.replace('-', "_");
        self.params
            .iter()
            .filter_map(|p| {
                let (m, param) = p.key.split_once('.')?;
                (m.replace('-', "_") == want).then(|| match &p.value {
                    Some(v) if v.contains(char::is_whitespace) => format!("{param}=\"{v}\""),
                    Some(v) => format!("{param}={v}"),
                    None => param.to_string(),
                })
            })
            .collect()
    }
}

impl fmt::Display for Cmdline {
    /// One parameter per line, values with whitespace re-quoted, then the
    /// init arguments: what `keel cmdline` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.params {
            match &p.value {
                None => writeln!(f, "{}", p.key)?,
                Some(v) if v.is_empty() || v.contains(char::is_whitespace) => {
                    writeln!(f, "{}=\"{}\"", p.key, v)?
                }
                Some(v) => writeln!(f, "{}={}", p.key, v)?,
            }
        }
        if !self.init_args.is_empty() {
            writeln!(f, "-- {}", self.init_args.join(" "))?;
        }
        Ok(())
    }
}

struct Word {
    raw: String,
    quoted: bool,
    /// Byte offset of the first unquoted `=` in `raw`, if any.
    eq: Option<usize>,
}

impl Word {
    fn into_param(self) -> Param {
        match self.eq {
            Some(i) => Param {
                key: self.raw[..i].to_string(),
                value: Some(self.raw[i + 1..].to_string()),
            },
            None => Param {
                key: self.raw,
                value: None,
            },
        }
    }
}

/// Splits like the kernel's `next_arg()`: whitespace outside quotes ends a
/// word, quotes are dropped, and the first `=` seen outside or inside quotes
/// separates key from value (the kernel only looks for the first `=`).
fn split(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut in_quote = false;
    let mut quoted = false;
    let mut eq = None;
    for c in text.chars() {
        if c == '"' {
            in_quote = !in_quote;
            in_word = true;
            quoted = true;
            continue;
        }
        if c.is_whitespace() && !in_quote {
            if in_word {
                words.push(Word {
                    raw: std::mem::take(&mut cur),
                    quoted,
                    eq: eq.take(),
                });
            }
            in_word = false;
            quoted = false;
            continue;
        }
        if c == '=' && eq.is_none() {
            eq = Some(cur.len());
        }
        cur.push(c);
        in_word = true;
    }
    if in_word {
        words.push(Word {
            raw: cur,
            quoted,
            eq,
        });
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, value: Option<&str>) -> Param {
        Param {
            key: key.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn parse_table() {
        struct Case {
            name: &'static str,
            input: &'static str,
            params: Vec<Param>,
            init_args: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "empty",
                input: "",
                params: vec![],
                init_args: vec![],
            },
            Case {
                name: "trailing newline from /proc/cmdline",
                input: "console=ttyS0 quiet\n",
                params: vec![p("console", Some("ttyS0")), p("quiet", None)],
                init_args: vec![],
            },
            Case {
                name: "runs of whitespace and tabs",
                input: "  a=1 \t  b  ",
                params: vec![p("a", Some("1")), p("b", None)],
                init_args: vec![],
            },
            Case {
                name: "quoted value",
                input: r#"keel.hostname="node one" x=y"#,
                params: vec![p("keel.hostname", Some("node one")), p("x", Some("y"))],
                init_args: vec![],
            },
            Case {
                name: "whole parameter quoted",
                input: r#""dyndbg=file foo.c +p" z"#,
                params: vec![p("dyndbg", Some("file foo.c +p")), p("z", None)],
                init_args: vec![],
            },
            Case {
                name: "value containing =",
                input: "keel.environment=http_proxy=http://p:3128",
                params: vec![p("keel.environment", Some("http_proxy=http://p:3128"))],
                init_args: vec![],
            },
            Case {
                name: "empty value",
                input: "ip=",
                params: vec![p("ip", Some(""))],
                init_args: vec![],
            },
            Case {
                name: "repeated keys kept in order",
                input: "a=1 a=2 a",
                params: vec![p("a", Some("1")), p("a", Some("2")), p("a", None)],
                init_args: vec![],
            },
            Case {
                name: "everything after -- goes to init",
                input: "ro -- single a=b \"c d\"",
                params: vec![p("ro", None)],
                init_args: vec!["single", "a=b", "c d"],
            },
            Case {
                name: "quoted -- is a parameter",
                input: r#""--" x"#,
                params: vec![p("--", None), p("x", None)],
                init_args: vec![],
            },
            Case {
                name: "unterminated quote runs to the end",
                input: r#"a="b c"#,
                params: vec![p("a", Some("b c"))],
                init_args: vec![],
            },
        ];
        for c in cases {
            let got = Cmdline::parse(c.input);
            assert_eq!(got.params(), c.params.as_slice(), "case {}", c.name);
            assert_eq!(got.init_args(), c.init_args.as_slice(), "case {}", c.name);
        }
    }

    #[test]
    fn lookups() {
        let c = Cmdline::parse("a=1 a=2 f keel.panic=poweroff off=0 bonding.mode=4 e-x.y=\"1 2\"");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get_all("a").collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(c.get("f"), Some(""));
        assert_eq!(c.get("missing"), None);
        assert!(c.flag("f"));
        assert!(!c.flag("off"));
        assert!(!c.flag("missing"));
        assert!(c.has("keel.panic"));
        assert_eq!(c.module_params("bonding"), vec!["mode=4"]);
        assert_eq!(c.module_params("e_x"), vec!["y=\"1 2\""]);
    }

    #[test]
    fn display_round_trips() {
        let text = "console=ttyS0 quiet keel.hostname=\"a b\" e= -- x y";
        let c = Cmdline::parse(text);
        let shown = c.to_string();
        assert_eq!(
            shown,
            "console=ttyS0\nquiet\nkeel.hostname=\"a b\"\ne=\"\"\n-- x y\n"
        );
        let again = Cmdline::parse(&shown.replace('\n', " "));
        assert_eq!(again, c);
    }
}
