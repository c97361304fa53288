//! A safe reader for the literal subset of Python that deployments' `settings.py` files use.
//!
//! Nothing is executed: the text is tokenized, each logical line is matched
//! against `NAME = literal` or `NAME["key"]... = literal`, and literals
//! (strings, numbers, True/False/None, lists, tuples, sets, dicts, unary
//! minus) become [`Value`]s. `import` lines are skipped. Any other statement
//! is reported as [`Unevaluated`] with its line and target, for the caller
//! to decide whether it matters. Tokenizer errors (unterminated string,
//! unbalanced bracket) and nesting deeper than [`MAX_DEPTH`] are errors:
//! hostile input gives an error, never a panic or a stack overflow.

use std::collections::BTreeMap;

/// A Python literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// Keys in file order; later duplicates replace earlier ones on lookup.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
        }
    }

    /// The entry for a string key, matched exactly, else case-insensitively.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let Value::Dict(entries) = self else {
            return None;
        };
        let exact = entries
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key));
        exact
            .or_else(|| {
                entries
                    .iter()
                    .rev()
                    .find(|(k, _)| matches!(k, Value::Str(s) if s.eq_ignore_ascii_case(key)))
            })
            .map(|(_, v)| v)
    }

    /// Set `path` below this dict, creating dicts on the way (dynaconf's `__` merge).
    /// Keys match existing ones case-insensitively.
    pub fn set_path(&mut self, path: &[String], value: Value) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return Ok(());
        };
        if !matches!(self, Value::Dict(_)) {
            if matches!(self, Value::None) {
                *self = Value::Dict(Vec::new());
            } else {
                return Err(format!("'{first}' is set inside {}", self.type_name()));
            }
        }
        let Value::Dict(entries) = self else {
            unreachable!("made a dict above")
        };
        let position = entries
            .iter()
            .rposition(|(k, _)| matches!(k, Value::Str(s) if s == first))
            .or_else(|| {
                entries
                    .iter()
                    .rposition(|(k, _)| matches!(k, Value::Str(s) if s.eq_ignore_ascii_case(first)))
            });
        let slot = match position {
            Some(index) => &mut entries[index].1,
            None => {
                entries.push((Value::Str(first.clone()), Value::None));
                &mut entries.last_mut().expect("just pushed").1
            }
        };
        slot.set_path(rest, value)
    }
}

/// Deeper nesting than this is refused (real settings nest three or four levels).
pub const MAX_DEPTH: usize = 100;

/// What a settings file assigns, by top-level name (as written), with the line.
#[derive(Debug, Default)]
pub struct Parsed {
    pub assignments: Vec<Assignment>,
    pub unevaluated: Vec<Unevaluated>,
}

#[derive(Debug)]
pub struct Assignment {
    pub name: String,
    /// Subscripts after the name: `DATABASES["default"]["HOST"] = ...`.
    pub keys: Vec<String>,
    pub value: Value,
    pub line: usize,
}

/// A statement that is not a literal assignment.
#[derive(Debug)]
pub struct Unevaluated {
    /// The name it assigns, when that can be told.
    pub target: Option<String>,
    pub line: usize,
    pub reason: String,
}

/// A problem that makes the whole file unreadable.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let lines = tokenize(text)?;
    let mut parsed = Parsed::default();
    for line in lines {
        match statement(&line.tokens) {
            Statement::Skip => {}
            Statement::Assign { name, keys, value } => parsed.assignments.push(Assignment {
                name,
                keys,
                value,
                line: line.number,
            }),
            Statement::Other { target, reason } => parsed.unevaluated.push(Unevaluated {
                target,
                line: line.number,
                reason,
            }),
            Statement::TooDeep => {
                return Err(SyntaxError {
                    line: line.number,
                    reason: format!("nested deeper than {MAX_DEPTH} levels"),
                });
            }
        }
    }
    Ok(parsed)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// A string with a prefix we do not evaluate (f-strings).
    Formatted,
    Op(&'static str),
}

struct LogicalLine {
    number: usize,
    tokens: Vec<Token>,
}

const OPERATORS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", "==", "!=",
    "<=", ">=", "->", ":=", "**", "//", "<<", ">>", "(", ")", "[", "]", "{", "}", ",", ":", ".",
    ";", "=", "+", "-", "*", "/", "%", "&", "|", "^", "~", "<", ">", "@",
];

fn tokenize(text: &str) -> Result<Vec<LogicalLine>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut lines = Vec::new();
    let mut tokens = Vec::new();
    let mut brackets: Vec<(char, usize)> = Vec::new();
    let mut line = 1;
    let mut start_line = 1;
    let mut i = 0;
    let fail = |line: usize, reason: &str| SyntaxError {
        line,
        reason: reason.to_string(),
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
                if brackets.is_empty() && !tokens.is_empty() {
                    lines.push(LogicalLine {
                        number: start_line,
                        tokens: std::mem::take(&mut tokens),
                    });
                }
                if tokens.is_empty() {
                    start_line = line;
                }
            }
            ' ' | '\t' | '\r' | '\x0c' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                line += 1;
                i += 2;
            }
            '\\' if chars.get(i + 1) == Some(&'\r') && chars.get(i + 2) == Some(&'\n') => {
                line += 1;
                i += 3;
            }
            '(' | '[' | '{' => {
                brackets.push((c, line));
                tokens.push(Token::Op(operator(&chars[i..i + 1])));
                i += 1;
            }
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match brackets.pop() {
                    Some((o, _)) if o == open => {}
                    _ => return Err(fail(line, &format!("unbalanced '{c}'"))),
                }
                tokens.push(Token::Op(operator(&chars[i..i + 1])));
                i += 1;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let begin = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == '.'
                        || ((chars[i] == '+' || chars[i] == '-')
                            && matches!(chars[i - 1], 'e' | 'E')
                            && !chars[begin..i].iter().any(|c| matches!(c, 'x' | 'X'))))
                {
                    i += 1;
                }
                let word: String = chars[begin..i].iter().collect();
                tokens.push(
                    number(&word)
                        .ok_or_else(|| fail(line, &format!("'{word}' is not a number")))?,
                );
            }
            c if c.is_alphabetic() || c == '_' => {
                let begin = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[begin..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let is_prefix =
                    lower.len() <= 2 && lower.chars().all(|c| matches!(c, 'r' | 'b' | 'u' | 'f'));
                if is_prefix && matches!(chars.get(i), Some('\'') | Some('"')) {
                    let (value, next, lines_used) = string(&chars, i, lower.contains('r'))
                        .map_err(|reason| fail(line, &reason))?;
                    tokens.push(if lower.contains('f') {
                        Token::Formatted
                    } else {
                        Token::Str(value)
                    });
                    line += lines_used;
                    i = next;
                } else {
                    tokens.push(Token::Name(word));
                }
            }
            '\'' | '"' => {
                let (value, next, lines_used) =
                    string(&chars, i, false).map_err(|reason| fail(line, &reason))?;
                tokens.push(Token::Str(value));
                line += lines_used;
                i = next;
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
                let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
                    return Err(fail(line, &format!("unexpected character '{c}'")));
                };
                tokens.push(Token::Op(op));
                i += op.chars().count();
            }
        }
    }
    if let Some((open, opened)) = brackets.pop() {
        return Err(fail(opened, &format!("'{open}' is never closed")));
    }
    if !tokens.is_empty() {
        lines.push(LogicalLine {
            number: start_line,
            tokens,
        });
    }
    Ok(lines)
}

fn operator(chars: &[char]) -> &'static str {
    let text: String = chars.iter().collect();
    OPERATORS
        .iter()
        .find(|op| **op == text)
        .expect("only called for listed operators")
}

fn number(word: &str) -> Option<Token> {
    let clean: String = word.chars().filter(|c| *c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let radix = |prefix: &str, radix: u32| {
        lower
            .strip_prefix(prefix)
            .and_then(|digits| i64::from_str_radix(digits, radix).ok())
            .map(Token::Int)
    };
    if lower.starts_with("0x") {
        return radix("0x", 16);
    }
    if lower.starts_with("0o") {
        return radix("0o", 8);
    }
    if lower.starts_with("0b") {
        return radix("0b", 2);
    }
    if let Ok(int) = lower.parse::<i64>() {
        return Some(Token::Int(int));
    }
    if lower.contains(['.', 'e']) && !lower.ends_with('j') {
        return lower.parse::<f64>().ok().map(Token::Float);
    }
    None
}

/// A string starting at the quote at `start`: its value, the index after
/// it, and how many newlines it spans.
fn string(chars: &[char], start: usize, raw: bool) -> Result<(String, usize, usize), String> {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    let mut value = String::new();
    let mut newlines = 0;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated string".into());
        };
        if c == quote
            && (!triple || (chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote)))
        {
            return Ok((value, i + if triple { 3 } else { 1 }, newlines));
        }
        if c == '\n' {
            if !triple {
                return Err("unterminated string".into());
            }
            newlines += 1;
        }
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                return Err("unterminated string".into());
            };
            if raw {
                value.push('\\');
                value.push(next);
                if next == '\n' {
                    newlines += 1;
                }
                i += 2;
                continue;
            }
            i += 2;
            match next {
                '\n' => newlines += 1,
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                '0' => value.push('\0'),
                'a' => value.push('\x07'),
                'b' => value.push('\x08'),
                'f' => value.push('\x0c'),
                'v' => value.push('\x0b'),
                '\\' | '\'' | '"' => value.push(next),
                'x' | 'u' | 'U' => {
                    let width = match next {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let digits: String = chars.iter().skip(i).take(width).collect();
                    let code = u32::from_str_radix(&digits, 16)
                        .ok()
                        .filter(|_| digits.len() == width)
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("bad escape \\{next}{digits}"))?;
                    value.push(code);
                    i += width;
                }
                other => {
                    // Python keeps unknown escapes as they are.
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        value.push(c);
        i += 1;
    }
}

enum Statement {
    Skip,
    Assign {
        name: String,
        keys: Vec<String>,
        value: Value,
    },
    Other {
        target: Option<String>,
        reason: String,
    },
    TooDeep,
}

fn statement(tokens: &[Token]) -> Statement {
    if let Some(Token::Name(first)) = tokens.first()
        && (first == "import" || first == "from")
    {
        return Statement::Skip;
    }
    let Some(Token::Name(name)) = tokens.first() else {
        return Statement::Other {
            target: None,
            reason: "not an assignment".into(),
        };
    };
    // Subscripts with literal string keys.
    let mut keys = Vec::new();
    let mut at = 1;
    while tokens.get(at) == Some(&Token::Op("[")) {
        match (tokens.get(at + 1), tokens.get(at + 2)) {
            (Some(Token::Str(key)), Some(Token::Op("]"))) => {
                keys.push(key.clone());
                at += 3;
            }
            _ => {
                return Statement::Other {
                    target: Some(name.clone()),
                    reason: "a subscript that is not a literal string".into(),
                };
            }
        }
    }
    match tokens.get(at) {
        Some(Token::Op("=")) => {}
        Some(Token::Op(op)) if op.ends_with('=') && *op != "==" => {
            return Statement::Other {
                target: Some(name.clone()),
                reason: format!("an augmented assignment ({op})"),
            };
        }
        _ => {
            return Statement::Other {
                target: None,
                reason: format!("a statement that is not an assignment ('{name} ...')"),
            };
        }
    }
    let mut parser = Parser {
        tokens: &tokens[at + 1..],
        at: 0,
        depth: 0,
    };
    match parser.expression() {
        Ok(value) if parser.at == parser.tokens.len() => Statement::Assign {
            name: name.clone(),
            keys,
            value,
        },
        Ok(_) => Statement::Other {
            target: Some(name.clone()),
            reason: "an expression that is not a plain literal".into(),
        },
        Err(ParseError::TooDeep) => Statement::TooDeep,
        Err(ParseError::NotLiteral(reason)) => Statement::Other {
            target: Some(name.clone()),
            reason,
        },
    }
}

enum ParseError {
    TooDeep,
    NotLiteral(String),
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expression(&mut self) -> Result<Value, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let value = self.unary();
        self.depth -= 1;
        value
    }

    fn unary(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(Token::Op("-")) => {
                self.at += 1;
                match self.expression()? {
                    Value::Int(n) => n
                        .checked_neg()
                        .map(Value::Int)
                        .ok_or_else(|| ParseError::NotLiteral("an integer out of range".into())),
                    Value::Float(f) => Ok(Value::Float(-f)),
                    other => Err(ParseError::NotLiteral(format!(
                        "a minus before {}",
                        other.type_name()
                    ))),
                }
            }
            Some(Token::Op("+")) => {
                self.at += 1;
                self.expression()
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Value, ParseError> {
        let not_literal = |what: String| Err(ParseError::NotLiteral(what));
        match self.next() {
            Some(Token::Int(n)) => Ok(Value::Int(n)),
            Some(Token::Float(f)) => Ok(Value::Float(f)),
            Some(Token::Str(first)) => {
                let mut text = first;
                while let Some(Token::Str(more)) = self.peek() {
                    text.push_str(more);
                    self.at += 1;
                }
                if matches!(self.peek(), Some(Token::Formatted)) {
                    return not_literal("an f-string".into());
                }
                Ok(Value::Str(text))
            }
            Some(Token::Formatted) => not_literal("an f-string".into()),
            Some(Token::Name(name)) => match name.as_str() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                "None" => Ok(Value::None),
                _ => not_literal(format!("the name or call '{name}'")),
            },
            Some(Token::Op("[")) => Ok(Value::List(self.items("]")?)),
            Some(Token::Op("(")) => {
                // (x) is x; (x,) and () are tuples.
                let start = self.at;
                let items = self.items(")")?;
                let had_comma = self.tokens[start..self.at].contains(&Token::Op(","));
                if items.len() == 1 && !had_comma {
                    Ok(items.into_iter().next().expect("one item"))
                } else {
                    Ok(Value::List(items))
                }
            }
            Some(Token::Op("{")) => self.dict_or_set(),
            Some(Token::Op(op)) => not_literal(format!("the operator '{op}'")),
            None => not_literal("nothing after '='".into()),
        }
    }

    /// Comma-separated expressions up to `close` (consumed).
    fn items(&mut self, close: &'static str) -> Result<Vec<Value>, ParseError> {
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(&Token::Op(close)) {
                self.at += 1;
                return Ok(items);
            }
            items.push(self.expression()?);
            match self.next() {
                Some(Token::Op(",")) => {}
                Some(Token::Op(op)) if op == close => return Ok(items),
                Some(token) => {
                    return Err(ParseError::NotLiteral(format!(
                        "an expression ({})",
                        describe(&token)
                    )));
                }
                None => return Err(ParseError::NotLiteral("an unfinished literal".into())),
            }
        }
    }

    fn dict_or_set(&mut self) -> Result<Value, ParseError> {
        let mut entries = Vec::new();
        let mut set_items = Vec::new();
        loop {
            if self.peek() == Some(&Token::Op("}")) {
                self.at += 1;
                break;
            }
            let key = self.expression()?;
            if self.peek() == Some(&Token::Op(":")) {
                self.at += 1;
                let value = self.expression()?;
                entries.push((key, value));
            } else {
                set_items.push(key);
            }
            match self.next() {
                Some(Token::Op(",")) => {}
                Some(Token::Op("}")) => break,
                Some(token) => {
                    return Err(ParseError::NotLiteral(format!(
                        "an expression ({})",
                        describe(&token)
                    )));
                }
                None => return Err(ParseError::NotLiteral("an unfinished literal".into())),
            }
        }
        if !set_items.is_empty() && !entries.is_empty() {
            return Err(ParseError::NotLiteral("a mix of dict and set".into()));
        }
        Ok(if set_items.is_empty() {
            Value::Dict(entries)
        } else {
            Value::List(set_items)
        })
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Name(name) => format!("'{name}'"),
        Token::Op(op) => format!("'{op}'"),
        Token::Str(_) | Token::Formatted => "a string".into(),
        Token::Int(_) | Token::Float(_) => "a number".into(),
    }
}

/// Top-level values with their lines, after applying every assignment in order.
pub fn evaluate(parsed: &Parsed) -> Result<BTreeMap<String, (Value, usize)>, (usize, String)> {
    let mut values: BTreeMap<String, (Value, usize)> = BTreeMap::new();
    for assignment in &parsed.assignments {
        let key = assignment.name.to_ascii_uppercase();
        if assignment.keys.is_empty() {
            values.insert(key, (assignment.value.clone(), assignment.line));
            continue;
        }
        let Some((value, line)) = values.get_mut(&key) else {
            return Err((
                assignment.line,
                format!("{} is subscripted before it is assigned", assignment.name),
            ));
        };
        value
            .set_path(&assignment.keys, assignment.value.clone())
            .map_err(|reason| (assignment.line, reason))?;
        *line = assignment.line;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(text: &str) -> Value {
        let parsed = parse(text).unwrap();
        assert!(parsed.unevaluated.is_empty(), "{:?}", parsed.unevaluated);
        assert_eq!(parsed.assignments.len(), 1);
        parsed.assignments.into_iter().next().unwrap().value
    }

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    #[test]
    fn each_literal_kind() {
        assert_eq!(only("A = 'x'"), s("x"));
        assert_eq!(only("A = \"x\" 'y'  \"z\""), s("xyz"));
        assert_eq!(only("A = r'\\d+'"), s("\\d+"));
        assert_eq!(only("A = 'a\\tb\\n\\x41\\u00e9'"), s("a\tb\nAé"));
        assert_eq!(only("A = '''two\nlines'''"), s("two\nlines"));
        assert_eq!(only("A = 1_000"), Value::Int(1000));
        assert_eq!(only("A = 0x1F"), Value::Int(31));
        assert_eq!(only("A = -5"), Value::Int(-5));
        assert_eq!(only("A = 2.5e3"), Value::Float(2500.0));
        assert_eq!(only("A = True"), Value::Bool(true));
        assert_eq!(only("A = None"), Value::None);
        assert_eq!(
            only("A = [1, 'b',]"),
            Value::List(vec![Value::Int(1), s("b")])
        );
        assert_eq!(only("A = (1,)"), Value::List(vec![Value::Int(1)]));
        assert_eq!(only("A = (1)"), Value::Int(1));
        assert_eq!(only("A = {'x', 'y'}"), Value::List(vec![s("x"), s("y")]));
        assert_eq!(only("A = {}"), Value::Dict(vec![]));
    }

    #[test]
    fn a_real_settings_file() {
        let text = r#"
# Mounted by the operator
import os
from pathlib import (
    Path,
)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "pulp", "USER": "pulp",
        "PASSWORD": "s3cret",  # comment
        "HOST": "db",
        "PORT": 5432,
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"sslmode": "prefer"},
    }
}
STATIC_ROOT = "/var/lib/operator/static/"
CACHE_ENABLED = True
ALLOWED_CONTENT_CHECKSUMS = ["sha224", "sha256", \
    "sha384", "sha512"]
DATABASES["default"]["HOST"] = "db2"
"#;
        let parsed = parse(text).unwrap();
        assert!(parsed.unevaluated.is_empty(), "{:?}", parsed.unevaluated);
        let values = evaluate(&parsed).unwrap();
        let (databases, line) = &values["DATABASES"];
        assert_eq!(*line, 23, "the last assignment's line");
        let default = databases.get("default").unwrap();
        assert_eq!(default.get("HOST"), Some(&s("db2")));
        assert_eq!(default.get("PORT"), Some(&Value::Int(5432)));
        assert_eq!(
            default.get("OPTIONS").unwrap().get("sslmode"),
            Some(&s("prefer"))
        );
        assert_eq!(values["CACHE_ENABLED"].0, Value::Bool(true));
        assert_eq!(values["STATIC_ROOT"].1, 19);
    }

    #[test]
    fn code_is_reported_with_its_line_and_target() {
        let parsed =
            parse("A = 1\nSECRET = os.getenv('X')\nB += [2]\nif A:\n    C = 3\nD = f'{A}'\n")
                .unwrap();
        let found: Vec<(Option<&str>, usize)> = parsed
            .unevaluated
            .iter()
            .map(|u| (u.target.as_deref(), u.line))
            .collect();
        assert_eq!(
            found,
            [
                (Some("SECRET"), 2),
                (Some("B"), 3),
                (None, 4),
                (Some("D"), 6)
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = |text: &str| parse(text).unwrap_err();
        assert_eq!(error("A = 1\nB = 'open\n").line, 2);
        assert!(
            error("A = 1\nB = 'open\n")
                .reason
                .contains("unterminated string")
        );
        assert_eq!(error("A = 1\n\nB = [1, 2\nC = 3\n").line, 3);
        assert!(error("A = (1]\n").reason.contains("unbalanced"));
        assert_eq!(
            error("A = '''never\nclosed\n").reason,
            "unterminated string"
        );
        assert!(error("A = 1 $ 2").reason.contains("unexpected character"));
    }

    #[test]
    fn hostile_input_gives_errors_not_crashes() {
        let deep = format!("A = {}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).unwrap_err().reason.contains("nested deeper"));
        let huge = format!("A = '{}'", "x".repeat(10 * 1024 * 1024));
        assert!(matches!(only(&huge), Value::Str(text) if text.len() == 10 * 1024 * 1024));
        assert!(parse("A = 99999999999999999999999").is_err());
        // Deterministic pseudo-random inputs from a fixed alphabet: any result, no panic.
        let alphabet: Vec<char> = "AZ_= ()[]{}:,'\"\\\n#-+.0x1e9rbfTrueNone\t"
            .chars()
            .collect();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let length = (seed % 40) as usize;
            let text: String = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(parsed) = parse(&text) {
                let _ = evaluate(&parsed);
            }
        }
    }

    #[test]
    fn subscripting_an_unassigned_name_is_an_error() {
        let parsed = parse("DATABASES['default']['HOST'] = 'x'").unwrap();
        let (line, reason) = evaluate(&parsed).unwrap_err();
        assert_eq!(line, 1);
        assert!(reason.contains("before it is assigned"), "{reason}");
    }
}
