//! Where each node of a YAML document is: YAML path → line and column.
//!
//! serde gives us values, not positions, and `serde_norway` only knows the
//! position of the event it was reading when an error happened (for a
//! `try_from` newtype that is the enclosing key, not the value). Errors found
//! after deserialisation (the cross-field pass) have no position at all. So
//! the document is read a second time with `yaml-rust2`'s marked event
//! parser into a small tree of positions, looked up by path.
//!
//! The tree is built from the event stream with an explicit stack, never by
//! recursion, so deeply nested input cannot overflow the stack; nodes below
//! [`MAX_DEPTH`] are not recorded (no config key is that deep). Nesting
//! beyond [`MAX_NESTING`] is recorded in [`Spans::too_deep`] so the caller
//! can refuse the document before serde sees it: libyaml (under
//! serde_norway) takes quadratic time on deep flow nesting, and inside an
//! ignored section serde applies no depth limit of its own.

use std::collections::HashSet;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use super::error::{ConfigError, Segment, YamlPath};

/// Deeper than any Keel config path, shallower than anything that could hurt.
const MAX_DEPTH: usize = 64;

/// Nesting refused outright; serde_norway's own recursion limit is 128.
pub const MAX_NESTING: usize = 128;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 lines are 1-based, columns 0-based.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Scalar,
    Seq(Vec<usize>),
    Map(Vec<Entry>),
}

#[derive(Debug)]
struct Entry {
    /// `None` for a key that is not a scalar (complex keys).
    key: Option<String>,
    key_pos: Pos,
    value: usize,
}

#[derive(Debug)]
struct Node {
    pos: Pos,
    kind: Kind,
}

/// Positions of the nodes of the first document of a YAML text.
#[derive(Debug, Default)]
pub struct Spans {
    nodes: Vec<Node>,
    root: Option<usize>,
    /// Where nesting first went deeper than [`MAX_NESTING`] (or past
    /// yaml-rust2's own limit), if it did.
    pub too_deep: Option<Pos>,
}

enum Frame {
    Seq(usize),
    Map {
        node: usize,
        pending_key: Option<(Option<String>, Pos)>,
    },
    /// A container below `MAX_DEPTH` or used as a mapping key: its events
    /// are consumed without recording anything.
    Skip,
}

impl Spans {
    /// Reads positions from `text`. A YAML syntax error simply ends the
    /// tree where it happened: serde reports the error itself.
    pub fn build(text: &str) -> Spans {
        let mut spans = Spans::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, mark) = match parser.next_token() {
                Ok(x) => x,
                Err(e) => {
                    if e.info().contains("recursion limit") {
                        spans.too_deep = Some(Pos::from_marker(*e.marker()));
                    }
                    break;
                }
            };
            if stack.len() >= MAX_NESTING
                && matches!(event, Event::SequenceStart(..) | Event::MappingStart(..))
            {
                spans.too_deep = Some(Pos::from_marker(mark));
                break;
            }
            match event {
                Event::StreamEnd | Event::DocumentEnd => break,
                Event::Nothing | Event::StreamStart | Event::DocumentStart => {}
                Event::Scalar(value, ..) => spans.leaf(&mut stack, Some(value), mark),
                Event::Alias(_) => spans.leaf(&mut stack, None, mark),
                Event::SequenceStart(..) => spans.open(&mut stack, mark, Kind::Seq(Vec::new())),
                Event::MappingStart(..) => spans.open(&mut stack, mark, Kind::Map(Vec::new())),
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                }
            }
        }
        spans
    }

    fn push_node(&mut self, mark: Marker, kind: Kind) -> usize {
        self.nodes.push(Node {
            pos: Pos::from_marker(mark),
            kind,
        });
        self.nodes.len() - 1
    }

    /// Attaches a new node to the innermost open container. Returns false
    /// when the node is not recorded (it is a mapping key, or too deep).
    fn attach(&mut self, stack: &mut [Frame], node: usize) -> bool {
        match stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
                true
            }
            Some(Frame::Seq(seq)) => {
                if let Kind::Seq(items) = &mut self.nodes[*seq].kind {
                    items.push(node);
                }
                true
            }
            Some(Frame::Map {
                node: map,
                pending_key,
            }) => match pending_key.take() {
                Some((key, key_pos)) => {
                    let map = *map;
                    let first = matches!(&self.nodes[map].kind, Kind::Map(e) if e.is_empty());
                    // yaml-rust2 marks a block mapping one character after
                    // its first key; the key's own mark is where it starts.
                    if first && key_pos_before(&self.nodes[map], key_pos) {
                        self.nodes[map].pos = key_pos;
                    }
                    if let Kind::Map(entries) = &mut self.nodes[map].kind {
                        entries.push(Entry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                    true
                }
                None => false,
            },
            Some(Frame::Skip) => false,
        }
    }

    fn leaf(&mut self, stack: &mut [Frame], value: Option<String>, mark: Marker) {
        if let Some(Frame::Map { pending_key, .. }) = stack.last_mut() {
            if pending_key.is_none() {
                *pending_key = Some((value, Pos::from_marker(mark)));
                return;
            }
        }
        if matches!(stack.last(), Some(Frame::Skip)) {
            return;
        }
        let node = self.push_node(mark, Kind::Scalar);
        self.attach(stack, node);
    }

    fn open(&mut self, stack: &mut Vec<Frame>, mark: Marker, kind: Kind) {
        let is_key = matches!(
            stack.last(),
            Some(Frame::Map {
                pending_key: None,
                ..
            })
        );
        if is_key {
            // A complex key: remember that a key was there, record nothing
            // inside it.
            if let Some(Frame::Map { pending_key, .. }) = stack.last_mut() {
                *pending_key = Some((None, Pos::from_marker(mark)));
            }
            stack.push(Frame::Skip);
            return;
        }
        if stack.len() >= MAX_DEPTH || matches!(stack.last(), Some(Frame::Skip)) {
            stack.push(Frame::Skip);
            return;
        }
        let is_seq = matches!(kind, Kind::Seq(_));
        let node = self.push_node(mark, kind);
        if !self.attach(stack, node) {
            stack.push(Frame::Skip);
            return;
        }
        stack.push(if is_seq {
            Frame::Seq(node)
        } else {
            Frame::Map {
                node,
                pending_key: None,
            }
        });
    }

    fn find(&self, path: &[Segment]) -> Option<(usize, Option<Pos>)> {
        let mut node = self.root?;
        let mut key_pos = None;
        for segment in path {
            match (segment, &self.nodes.get(node)?.kind) {
                (Segment::Key(want), Kind::Map(entries)) => {
                    // The last occurrence wins, as for a YAML map read by serde.
                    let entry = entries
                        .iter()
                        .rev()
                        .find(|e| e.key.as_deref() == Some(want.as_str()))?;
                    key_pos = Some(entry.key_pos);
                    node = entry.value;
                }
                (Segment::Index(i), Kind::Seq(items)) => {
                    node = *items.get(*i)?;
                    key_pos = None;
                }
                _ => return None,
            }
        }
        Some((node, key_pos))
    }

    /// Where the value at `path` starts, if the path exists.
    pub fn value(&self, path: &YamlPath) -> Option<Pos> {
        let (node, _) = self.find(path.segments())?;
        self.nodes.get(node).map(|n| n.pos)
    }

    /// Where the key that ends `path` is, if the path exists and ends in a
    /// mapping key; for a sequence entry, where the entry starts.
    pub fn key(&self, path: &YamlPath) -> Option<Pos> {
        let (node, key_pos) = self.find(path.segments())?;
        key_pos.or_else(|| self.nodes.get(node).map(|n| n.pos))
    }

    /// The position of `path`, or of its nearest ancestor that exists.
    pub fn nearest(&self, path: &YamlPath) -> Option<Pos> {
        let segments = path.segments();
        (0..=segments.len())
            .rev()
            .find_map(|n| self.find(&segments[..n]))
            .and_then(|(node, _)| self.nodes.get(node).map(|n| n.pos))
    }

    /// Mapping keys that appear twice in the same mapping. serde rejects
    /// duplicates in structs itself, but a map (`env`, `extraArgs`,
    /// `initialCluster`) would silently keep the last value.
    pub fn duplicate_keys(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let Some(root) = self.root else {
            return errors;
        };
        // Depth-first over (node, path), with an explicit stack.
        let mut todo = vec![(root, YamlPath::root())];
        while let Some((node, path)) = todo.pop() {
            match self.nodes.get(node).map(|n| &n.kind) {
                Some(Kind::Map(entries)) => {
                    let mut seen = HashSet::new();
                    for entry in entries {
                        let Some(key) = &entry.key else { continue };
                        if !seen.insert(key.as_str()) {
                            errors.push(ConfigError {
                                path: path.key(key).to_string(),
                                line: Some(entry.key_pos.line),
                                column: Some(entry.key_pos.column),
                                message: format!("duplicate key `{key}`, expected each key once"),
                            });
                        }
                        todo.push((entry.value, path.key(key)));
                    }
                }
                Some(Kind::Seq(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        todo.push((*item, path.index(i)));
                    }
                }
                _ => {}
            }
        }
        errors
    }
}

/// Whether the first key's mark lies before the mapping's own mark (block
/// style, where yaml-rust2 marks the mapping after its first key).
fn key_pos_before(map: &Node, key: Pos) -> bool {
    (key.line, key.column) < (map.pos.line, map.pos.column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &[&str]) -> YamlPath {
        YamlPath(
            s.iter()
                .map(|p| match p.parse::<usize>() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Key((*p).to_owned()),
                })
                .collect(),
        )
    }

    #[test]
    fn positions() {
        let text = "a:\n  b: 1\n  c:\n    - x: 1\n      y: [1, {z: 2}]\n    - {}\n";
        let s = Spans::build(text);
        type Case<'a> = (&'a [&'a str], (usize, usize), (usize, usize));
        let cases: &[Case] = &[
            (&["a"], (1, 1), (2, 3)),
            (&["a", "b"], (2, 3), (2, 6)),
            (&["a", "c"], (3, 3), (4, 5)),
            (&["a", "c", "0"], (4, 7), (4, 7)),
            (&["a", "c", "0", "y"], (5, 7), (5, 10)),
            (&["a", "c", "0", "y", "1", "z"], (5, 15), (5, 18)),
            (&["a", "c", "1"], (6, 7), (6, 7)),
        ];
        for (p, key, value) in cases {
            let p = path(p);
            let v = s.value(&p).unwrap();
            let k = s.key(&p).unwrap();
            assert_eq!((k.line, k.column), *key, "key of {p}");
            assert_eq!((v.line, v.column), *value, "value of {p}");
        }
        assert_eq!(s.value(&path(&["a", "nope"])), None);
        let n = s.nearest(&path(&["a", "c", "0", "nope", "3"])).unwrap();
        assert_eq!((n.line, n.column), (4, 7));
    }

    #[test]
    fn duplicates() {
        let s = Spans::build("env:\n  A: 1\n  B: 2\n  A: 3\n");
        let errors = s.duplicate_keys();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "env.A (line 4, column 3): duplicate key `A`, expected each key once"
        );
    }

    #[test]
    fn deep_nesting_and_garbage_do_not_panic() {
        let deep = "[".repeat(100_000);
        assert!(Spans::build(&deep).too_deep.is_some());
        let deep = "a: ".to_owned() + &"{a: ".repeat(129) + &"}".repeat(129);
        assert_eq!(
            Spans::build(&deep).too_deep,
            Some(Pos {
                line: 1,
                column: 4 + 4 * 127
            })
        );
        let deep_map: String = (0..1000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        let _ = Spans::build(&deep_map);
        let _ = Spans::build("? [a, b]\n: c\n*x : y\n");
        let _ = Spans::build("a: &x [1, *x]\n");
        let _ = Spans::build("\u{0}\u{feff}:::- - ]]}}");
    }
}
