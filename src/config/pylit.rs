//! A tiny, safe reader for the Python literals the AVENTER provider keeps in `airflow.cfg`
//! (`docker_environment = [{"name": "A", "value": "1"}]`, `mesos_attributes = ["airflow:true"]`).
//! It understands strings (single or double quotes, the common escapes), numbers, `True`,
//! `False`, `None`, lists, tuples (also bare: `{...}, {...},`) and dicts — nothing is ever
//! evaluated.

use thiserror::Error;

/// A Python literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    Str(String),
    /// Kept as written (`1`, `-2.5`), so it can be passed on as text.
    Num(String),
    Bool(bool),
    None,
    List(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

impl PyValue {
    /// The text of a string, number or boolean (as Python's `str()` would print it).
    pub fn as_text(&self) -> Option<String> {
        match self {
            PyValue::Str(s) | PyValue::Num(s) => Some(s.clone()),
            PyValue::Bool(true) => Some("True".into()),
            PyValue::Bool(false) => Some("False".into()),
            _ => None,
        }
    }
}

/// Why a literal could not be read; `at` is a 0-based character offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} at character {at}")]
pub struct PyLitError {
    pub at: usize,
    pub message: String,
}

/// Parses one Python literal (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<PyValue, PyLitError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let mut v = p.value(0)?;
    p.skip_ws();
    if p.peek() == Some(',') {
        // A bare top-level tuple, as `ast.literal_eval("{...}, {...},")` reads it.
        let mut items = vec![v];
        while p.peek() == Some(',') {
            p.pos += 1;
            p.skip_ws();
            if p.pos == p.chars.len() {
                break;
            }
            items.push(p.value(0)?);
            p.skip_ws();
        }
        v = PyValue::List(items);
    }
    if p.pos < p.chars.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(v)
}

const MAX_NESTING: usize = 32;

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn err(&self, message: &str) -> PyLitError {
        PyLitError {
            at: self.pos,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, PyLitError> {
        if depth > MAX_NESTING {
            return Err(self.err("nested too deeply"));
        }
        self.skip_ws();
        match self.peek() {
            None => Err(self.err("expected a value but the text ended")),
            Some('\'') | Some('"') => self.string(),
            Some('[') => Ok(PyValue::List(self.seq('[', ']', depth)?)),
            Some('(') => Ok(PyValue::List(self.seq('(', ')', depth)?)),
            Some('{') => self.dict(depth),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "True" => Ok(PyValue::Bool(true)),
                    "False" => Ok(PyValue::Bool(false)),
                    "None" => Ok(PyValue::None),
                    _ => {
                        self.pos = start;
                        Err(self.err(
                            "expected a literal (a quoted string, number, True, False, None, list or dict); names and calls are not evaluated",
                        ))
                    }
                }
            }
            Some(_) => Err(self.err("expected a literal value")),
        }
    }

    fn string(&mut self) -> Result<PyValue, PyLitError> {
        let quote = self.peek().expect("caller checked");
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.err("unterminated string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    match c {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        '0' => s.push('\0'),
                        '\\' | '\'' | '"' => s.push(c),
                        '\n' => {}
                        other => {
                            // Python keeps unknown escapes as written.
                            s.push('\\');
                            s.push(other);
                        }
                    }
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
        // Adjacent string literals concatenate, as in Python.
        self.skip_ws();
        if matches!(self.peek(), Some('\'') | Some('"')) {
            if let PyValue::Str(more) = self.string()? {
                s.push_str(&more);
            }
        }
        Ok(PyValue::Str(s))
    }

    fn number(&mut self) -> Result<PyValue, PyLitError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-') | Some('+')) {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let plain = text.replace('_', "");
        if plain.parse::<i64>().is_ok() || plain.parse::<f64>().is_ok() {
            Ok(PyValue::Num(plain.trim_start_matches('+').to_string()))
        } else {
            self.pos = start;
            Err(self.err("not a number"))
        }
    }

    fn seq(&mut self, open: char, close: char, depth: usize) -> Result<Vec<PyValue>, PyLitError> {
        debug_assert_eq!(self.peek(), Some(open));
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err(&format!("expected ',' or '{close}'"))),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<PyValue, PyLitError> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(PyValue::Dict(items));
            }
            let k = self.value(depth + 1)?;
            self.skip_ws();
            if self.peek() != Some(':') {
                return Err(self.err("expected ':' after a dict key"));
            }
            self.pos += 1;
            let v = self.value(depth + 1)?;
            items.push((k, v));
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> PyValue {
        PyValue::Str(x.into())
    }

    #[test]
    fn lists_dicts_and_quotes() {
        let v = parse(r#" [{"name": 'A', "value": "x\"y"}, {'name':'B','value':2},] "#).unwrap();
        assert_eq!(
            v,
            PyValue::List(vec![
                PyValue::Dict(vec![(s("name"), s("A")), (s("value"), s("x\"y"))]),
                PyValue::Dict(vec![
                    (s("name"), s("B")),
                    (s("value"), PyValue::Num("2".into()))
                ]),
            ])
        );
    }

    #[test]
    fn scalars_and_tuples() {
        assert_eq!(
            parse("(True, False, None, -1.5, 'a' 'b')").unwrap(),
            PyValue::List(vec![
                PyValue::Bool(true),
                PyValue::Bool(false),
                PyValue::None,
                PyValue::Num("-1.5".into()),
                s("ab")
            ])
        );
        assert_eq!(parse("[]").unwrap(), PyValue::List(vec![]));
        assert_eq!(
            parse("'a', 'b',").unwrap(),
            PyValue::List(vec![s("a"), s("b")])
        );
        assert_eq!(
            parse("[\n 'a',\n 'b'\n]").unwrap(),
            PyValue::List(vec![s("a"), s("b")])
        );
    }

    #[test]
    fn nothing_is_evaluated() {
        for bad in [
            "__import__('os').system('x')",
            "[open('/etc/passwd')]",
            "['a' + 'b']",
            "[1 2]",
            "['unterminated]",
            "{'a' 1}",
            "[1,",
            "['a'] trailing",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    proptest::proptest! {
        /// Arbitrary text never panics the reader (deep nesting included).
        #[test]
        fn never_panics(text in "[\\[\\]{}(),:'\"\\\\ a-zA-Z0-9._+-]{0,120}") {
            let _ = parse(&text);
        }

        /// Lists of strings survive a round trip through Python syntax.
        #[test]
        fn string_lists_round_trip(items in proptest::collection::vec("[a-zA-Z0-9 :?_-]{0,10}", 0..6)) {
            let text = format!(
                "[{}]",
                items.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ")
            );
            let want = PyValue::List(items.iter().map(|i| PyValue::Str(i.clone())).collect());
            proptest::prop_assert_eq!(parse(&text).unwrap(), want);
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowing() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&text)
            .unwrap_err()
            .message
            .contains("nested too deeply"));
    }

    #[test]
    fn error_positions() {
        let e = parse("[1, x]").unwrap_err();
        assert_eq!(e.at, 4);
    }
}
