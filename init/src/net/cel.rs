//! The part of CEL (the Common Expression Language) that Talos's
//! `LinkAliasConfig` selectors use, written by hand.
//!
//! Why not a CEL crate: `cel-interpreter` 0.10 (the maintained one) pulls
//! in an ANTLR runtime (a release candidate), `regex`, `chrono` and `nom`;
//! a static musl program that only evaluates one expression with it is
//! 2.6 MB stripped (measured), which would grow PID 1 by half. Selectors
//! are one-line boolean expressions over one variable, so the subset below
//! covers Talos's documented examples and anything else is an error that
//! names the part Keel does not evaluate.
//!
//! Supported: the variable `link` with the fields of Talos's
//! `LinkStatusSpec` that sysfs gives Keel (`driver`, `hardware_addr`,
//! `permanent_addr` (bytes), `pciid` (also spelled `pci_id`), `bus_path`,
//! `type` (int; 1 is Ethernet), `kind` (`""` for physical links)); string,
//! int and bool literals; `==`, `!=`, `&&`, `||`, `!`, parentheses; the
//! functions `mac(bytes) -> string` (lowercase, colon-separated, like Go's
//! `net.HardwareAddr.String`) and `glob(pattern, string) -> bool` (only `*`
//! is special, as in Talos's go-glob); the string methods `startsWith`,
//! `endsWith` and `contains`.

use std::fmt;

use super::sysfs::LinkFacts;

/// A parse or type error, at a character offset of the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {at} of the selector)")]
pub struct CelError {
    pub at: usize,
    pub message: String,
}

/// Value types, for type checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Str,
    Bytes,
    Int,
    Bool,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Str => "string",
            Type::Bytes => "bytes",
            Type::Int => "int",
            Type::Bool => "bool",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
    Bool(bool),
}

/// A `link` field Keel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Driver,
    HardwareAddr,
    PermanentAddr,
    PciId,
    BusPath,
    Type,
    Kind,
}

const FIELDS: &[(&str, Field)] = &[
    ("driver", Field::Driver),
    ("hardware_addr", Field::HardwareAddr),
    ("permanent_addr", Field::PermanentAddr),
    ("pciid", Field::PciId),
    ("pci_id", Field::PciId),
    ("bus_path", Field::BusPath),
    ("type", Field::Type),
    ("kind", Field::Kind),
];

impl Field {
    fn ty(self) -> Type {
        match self {
            Field::HardwareAddr | Field::PermanentAddr => Type::Bytes,
            Field::Type => Type::Int,
            _ => Type::Str,
        }
    }

    fn value(self, l: &LinkFacts) -> Value {
        let mac = |m: Option<&String>| Value::Bytes(m.map(|m| parse_mac(m)).unwrap_or_default());
        match self {
            Field::Driver => Value::Str(l.driver().unwrap_or_default().to_owned()),
            Field::HardwareAddr => mac(l.address.as_ref()),
            // sysfs or ethtool's permanent address; Talos reads ethtool's.
            Field::PermanentAddr => mac(l.permanent_addr.as_ref()),
            Field::PciId => Value::Str(l.pci_id().unwrap_or_default().to_owned()),
            Field::BusPath => Value::Str(l.bus_path().unwrap_or_default().to_owned()),
            Field::Type => Value::Int(i64::from(l.arphrd)),
            Field::Kind => Value::Str(l.kind.clone().unwrap_or_default()),
        }
    }
}

fn parse_mac(s: &str) -> Vec<u8> {
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<Vec<u8>, _>>()
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Eq,
    Ne,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Mac,
    Glob,
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    Field(Field),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// A parsed, type-checked selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    root: Node,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expr {
    /// Parses and type-checks `text`; the result must be a bool.
    pub fn parse(text: &str) -> Result<Expr, CelError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: text.chars().count() + 1,
        };
        let root = p.or()?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(err(t.at, format!("unexpected {}", t.tok)));
        }
        match check(&root)? {
            Type::Bool => Ok(Expr {
                source: text.to_owned(),
                root,
            }),
            t => Err(err(1, format!("the selector is a {t}, expected a bool"))),
        }
    }

    /// Whether `link` matches.
    pub fn matches(&self, link: &LinkFacts) -> bool {
        matches!(eval(&self.root, link), Value::Bool(true))
    }
}

fn err(at: usize, message: impl Into<String>) -> CelError {
    CelError {
        at,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Int(i) => write!(f, "number {i}"),
            Tok::Op(o) => write!(f, "`{o}`"),
        }
    }
}

struct Token {
    tok: Tok,
    /// Character offset, 1-based.
    at: usize,
}

const OPS: &[&str] = &[
    "==", "!=", "&&", "||", "<=", ">=", "!", "(", ")", ",", ".", "<", ">", "+", "-", "*", "/", "%",
    "?", ":", "[", "]", "{", "}",
];

fn lex(text: &str) -> Result<Vec<Token>, CelError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(at, "unterminated string")),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&e @ ('\\' | '"' | '\'')) => s.push(e),
                            _ => return Err(err(i + 1, "unsupported escape in a string")),
                        }
                    }
                    Some(&ch) => s.push(ch),
                }
                i += 1;
            }
            i += 1;
            out.push(Token {
                tok: Tok::Str(s),
                at,
            });
        } else if c.is_ascii_digit() {
            let start = i;
            while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            let v = n.parse().map_err(|_| err(at, "number too large"))?;
            out.push(Token {
                tok: Tok::Int(v),
                at,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                at,
            });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPS
                .iter()
                .find(|o| rest.starts_with(**o))
                .ok_or_else(|| err(at, format!("unexpected character {c:?}")))?;
            i += op.chars().count();
            out.push(Token {
                tok: Tok::Op(op),
                at,
            });
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// One past the last character, where "ends too early" points.
    end: usize,
}

impl Parser {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token { tok: Tok::Op(o), .. }) if *o == op)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.at)
    }

    fn expect(&mut self, op: &str) -> Result<(), CelError> {
        if self.peek_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(err(self.at(), format!("expected `{op}`")))
        }
    }

    fn or(&mut self) -> Result<Node, CelError> {
        let mut left = self.and()?;
        while self.peek_op("||") {
            self.pos += 1;
            left = Node::Bin(BinOp::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, CelError> {
        let mut left = self.unary()?;
        while self.peek_op("&&") {
            self.pos += 1;
            left = Node::Bin(BinOp::And, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, CelError> {
        if self.peek_op("!") {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        let left = self.postfix()?;
        for (op, bin) in [("==", BinOp::Eq), ("!=", BinOp::Ne)] {
            if self.peek_op(op) {
                self.pos += 1;
                return Ok(Node::Bin(bin, Box::new(left), Box::new(self.postfix()?)));
            }
        }
        if let Some(Token {
            tok: Tok::Op(o),
            at,
        }) = self.tokens.get(self.pos)
        {
            if !["&&", "||", ")", ","].contains(o) {
                return Err(err(
                    *at,
                    format!("operator `{o}` is not supported by Keel's selector subset (==, !=, &&, ||, !)"),
                ));
            }
        }
        Ok(left)
    }

    /// A primary followed by `.method(args)` calls.
    fn postfix(&mut self) -> Result<Node, CelError> {
        let mut node = self.primary()?;
        while self.peek_op(".") {
            let at = self.at();
            self.pos += 1;
            let Some(Token {
                tok: Tok::Ident(name),
                at: name_at,
            }) = self.tokens.get(self.pos)
            else {
                return Err(err(at, "expected a method name after `.`"));
            };
            let (name, name_at) = (name.clone(), *name_at);
            self.pos += 1;
            let func = match name.as_str() {
                "startsWith" => Func::StartsWith,
                "endsWith" => Func::EndsWith,
                "contains" => Func::Contains,
                other => {
                    return Err(err(
                        name_at,
                        format!("method `{other}` is not supported by Keel's selector subset (startsWith, endsWith, contains)"),
                    ))
                }
            };
            let mut args = vec![node];
            args.extend(self.args()?);
            node = Node::Call(func, args);
        }
        Ok(node)
    }

    fn args(&mut self) -> Result<Vec<Node>, CelError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if !self.peek_op(")") {
            args.push(self.or()?);
            while self.peek_op(",") {
                self.pos += 1;
                args.push(self.or()?);
            }
        }
        self.expect(")")?;
        Ok(args)
    }

    fn primary(&mut self) -> Result<Node, CelError> {
        let Some(t) = self.tokens.get(self.pos) else {
            return Err(err(self.end, "the selector ends too early"));
        };
        let at = t.at;
        match t.tok.clone() {
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Node::Lit(Value::Str(s)))
            }
            Tok::Int(i) => {
                self.pos += 1;
                Ok(Node::Lit(Value::Int(i)))
            }
            Tok::Op("(") => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Op(o) => Err(err(at, format!("unexpected `{o}`"))),
            Tok::Ident(name) => {
                self.pos += 1;
                match name.as_str() {
                    "true" => Ok(Node::Lit(Value::Bool(true))),
                    "false" => Ok(Node::Lit(Value::Bool(false))),
                    "link" => {
                        self.expect(".")?;
                        let Some(Token {
                            tok: Tok::Ident(field),
                            at: field_at,
                        }) = self.tokens.get(self.pos)
                        else {
                            return Err(err(self.at(), "expected a field of `link`"));
                        };
                        let f = FIELDS
                            .iter()
                            .find(|(n, _)| n == field)
                            .map(|(_, f)| *f)
                            .ok_or_else(|| {
                                let known: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
                                err(
                                    *field_at,
                                    format!(
                                        "`link.{field}` is not a field Keel evaluates, expected one of: {}",
                                        known.join(", ")
                                    ),
                                )
                            })?;
                        self.pos += 1;
                        Ok(Node::Field(f))
                    }
                    "mac" | "glob" => {
                        let func = if name == "mac" { Func::Mac } else { Func::Glob };
                        Ok(Node::Call(func, self.args()?))
                    }
                    other if self.peek_op("(") => Err(err(
                        at,
                        format!("function `{other}` is not supported by Keel's selector subset (mac, glob)"),
                    )),
                    other => Err(err(
                        at,
                        format!("unknown name `{other}`, expected `link`"),
                    )),
                }
            }
        }
    }
}

fn check(n: &Node) -> Result<Type, CelError> {
    let want = |n: &Node, t: Type, what: &str| -> Result<(), CelError> {
        let got = check(n)?;
        if got == t {
            Ok(())
        } else {
            Err(err(1, format!("{what} takes a {t}, got a {got}")))
        }
    };
    Ok(match n {
        Node::Lit(Value::Str(_)) => Type::Str,
        Node::Lit(Value::Bytes(_)) => Type::Bytes,
        Node::Lit(Value::Int(_)) => Type::Int,
        Node::Lit(Value::Bool(_)) => Type::Bool,
        Node::Field(f) => f.ty(),
        Node::Not(inner) => {
            want(inner, Type::Bool, "`!`")?;
            Type::Bool
        }
        Node::Bin(op @ (BinOp::And | BinOp::Or), l, r) => {
            let name = if *op == BinOp::And { "`&&`" } else { "`||`" };
            want(l, Type::Bool, name)?;
            want(r, Type::Bool, name)?;
            Type::Bool
        }
        Node::Bin(_, l, r) => {
            let (lt, rt) = (check(l)?, check(r)?);
            if lt != rt {
                return Err(err(1, format!("cannot compare a {lt} with a {rt}")));
            }
            Type::Bool
        }
        Node::Call(f, args) => {
            let (params, ret, name): (&[Type], Type, &str) = match f {
                Func::Mac => (&[Type::Bytes], Type::Str, "mac()"),
                Func::Glob => (&[Type::Str, Type::Str], Type::Bool, "glob()"),
                Func::StartsWith => (&[Type::Str, Type::Str], Type::Bool, "startsWith()"),
                Func::EndsWith => (&[Type::Str, Type::Str], Type::Bool, "endsWith()"),
                Func::Contains => (&[Type::Str, Type::Str], Type::Bool, "contains()"),
            };
            if args.len() != params.len() {
                return Err(err(
                    1,
                    format!(
                        "{name} takes {} arguments, got {}",
                        params.len(),
                        args.len()
                    ),
                ));
            }
            for (a, t) in args.iter().zip(params) {
                want(a, *t, name)?;
            }
            ret
        }
    })
}

fn eval(n: &Node, link: &LinkFacts) -> Value {
    let s = |n: &Node| match eval(n, link) {
        Value::Str(s) => s,
        _ => String::new(),
    };
    let b = |n: &Node| matches!(eval(n, link), Value::Bool(true));
    match n {
        Node::Lit(v) => v.clone(),
        Node::Field(f) => f.value(link),
        Node::Not(inner) => Value::Bool(!b(inner)),
        Node::Bin(BinOp::And, l, r) => Value::Bool(b(l) && b(r)),
        Node::Bin(BinOp::Or, l, r) => Value::Bool(b(l) || b(r)),
        Node::Bin(BinOp::Eq, l, r) => Value::Bool(eval(l, link) == eval(r, link)),
        Node::Bin(BinOp::Ne, l, r) => Value::Bool(eval(l, link) != eval(r, link)),
        Node::Call(Func::Mac, args) => match args.first().map(|a| eval(a, link)) {
            Some(Value::Bytes(bytes)) => Value::Str(
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => Value::Str(String::new()),
        },
        Node::Call(func, args) => {
            let (a, b) = (s(&args[0]), s(&args[1]));
            Value::Bool(match func {
                Func::Glob => glob(&a, &b),
                Func::StartsWith => a.starts_with(&b),
                Func::EndsWith => a.ends_with(&b),
                Func::Contains => a.contains(&b),
                Func::Mac => false,
            })
        }
    }
}

/// go-glob's semantics: `*` matches any run of characters, nothing else is
/// special; without `*` the pattern must equal the subject.
fn glob(pattern: &str, subject: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == subject;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !subject.starts_with(first) || subject.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &subject[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
#[path = "cel_tests.rs"]
mod tests;
