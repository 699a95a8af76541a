//! The `filter` of List requests, in the Yandex Cloud syntax:
//!
//! ```text
//! filter    = condition { "AND" condition }
//! condition = field ( "=" | "!=" ) value
//!           | field [ "NOT" ] "IN" "(" value { "," value } ")"
//! value     = a string in "…" or '…', with C-style escapes (\" \' \\ \n \t \r \0 \xHH \uHHHH)
//! ```
//!
//! Keywords are case-insensitive. Each service says which fields it filters on; anything else
//! is an `INVALID_ARGUMENT` that says what is wrong and at which column.

use std::fmt;

use yc_proto_types::google::rpc::Status;

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `field = "v"`
    Eq,
    /// `field != "v"`
    Ne,
    /// `field IN ("a", "b")`
    In,
    /// `field NOT IN ("a", "b")`
    NotIn,
}

/// One condition on one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The field, as the service names it.
    pub field: String,
    /// The comparison.
    pub op: FilterOp,
    /// One value for `=` and `!=`, one or more for `IN` and `NOT IN`.
    pub values: Vec<String>,
}

impl Condition {
    /// Whether a field value satisfies the condition.
    pub fn matches(&self, value: &str) -> bool {
        let listed = self.values.iter().any(|v| v == value);
        match self.op {
            FilterOp::Eq | FilterOp::In => listed,
            FilterOp::Ne | FilterOp::NotIn => !listed,
        }
    }
}

/// A parsed filter: conditions that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterExpr {
    /// The conditions, in the order written.
    pub conditions: Vec<Condition>,
}

/// What a service allows in its filters.
#[derive(Debug, Clone, Copy)]
pub struct FilterSpec<'a> {
    /// The fields that may be filtered on.
    pub fields: &'a [&'a str],
    /// The longest value, in characters.
    pub max_value_length: usize,
}

impl FilterExpr {
    /// Parses `text` (empty means no conditions). Errors are `INVALID_ARGUMENT`,
    /// `Request validation error: filter: column N: …`.
    ///
    /// ```
    /// use yc_api_runtime::list::{FilterExpr, FilterOp, FilterSpec};
    ///
    /// let spec = FilterSpec { fields: &["name", "family"], max_value_length: 256 };
    /// let filter = FilterExpr::parse(r#"name = "ubuntu" AND family NOT IN ('a', "b\"c")"#, spec).unwrap();
    /// assert_eq!(filter.conditions[1].op, FilterOp::NotIn);
    /// assert_eq!(filter.conditions[1].values, ["a", "b\"c"]);
    ///
    /// let error = FilterExpr::parse("name ~ 'x'", spec).unwrap_err();
    /// assert_eq!(error.message, "Request validation error: filter: column 6: expected =, !=, IN or NOT IN, found \"~\"");
    /// ```
    pub fn parse(text: &str, spec: FilterSpec<'_>) -> Result<Self, Status> {
        Parser::new(text, spec)
            .parse()
            .map_err(|e| yc_proto_types::validation_error("filter", &e.to_string()))
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether a resource passes every condition; `field` gives the resource's value of a field.
    pub fn matches<'v>(&self, field: impl Fn(&str) -> &'v str) -> bool {
        self.conditions.iter().all(|c| c.matches(field(&c.field)))
    }
}

#[derive(Debug)]
struct ParseError {
    column: usize,
    message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Eq,
    Ne,
    Open,
    Close,
    Comma,
    Other(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => yc_proto_types::quote(w),
            Token::Str(s) => format!("the string {}", yc_proto_types::quote(s)),
            Token::Eq => "\"=\"".into(),
            Token::Ne => "\"!=\"".into(),
            Token::Open => "\"(\"".into(),
            Token::Close => "\")\"".into(),
            Token::Comma => "\",\"".into(),
            Token::Other(c) => format!("{:?}", c.to_string()),
            Token::End => "the end of the filter".into(),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    spec: FilterSpec<'a>,
}

impl<'a> Parser<'a> {
    fn new(text: &str, spec: FilterSpec<'a>) -> Self {
        Self {
            chars: text.chars().collect(),
            pos: 0,
            spec,
        }
    }

    fn error<T>(&self, column: usize, message: String) -> Result<T, ParseError> {
        Err(ParseError { column, message })
    }

    fn skip_space(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    /// The next token and the 1-based column where it starts.
    fn next(&mut self) -> Result<(Token, usize), ParseError> {
        self.skip_space();
        let column = self.pos + 1;
        let Some(&c) = self.chars.get(self.pos) else {
            return Ok((Token::End, column));
        };
        self.pos += 1;
        let token = match c {
            '=' => Token::Eq,
            '!' if self.chars.get(self.pos) == Some(&'=') => {
                self.pos += 1;
                Token::Ne
            }
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '"' | '\'' => Token::Str(self.string(c, column)?),
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_string();
                while let Some(&n) = self.chars.get(self.pos) {
                    if !(n.is_alphanumeric() || n == '_' || n == '.') {
                        break;
                    }
                    word.push(n);
                    self.pos += 1;
                }
                Token::Word(word)
            }
            other => Token::Other(other),
        };
        Ok((token, column))
    }

    fn peek(&mut self) -> Result<(Token, usize), ParseError> {
        let saved = self.pos;
        let next = self.next();
        self.pos = saved;
        next
    }

    /// The rest of a quoted string whose opening quote was at `column`.
    fn string(&mut self, quote: char, column: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            let Some(&c) = self.chars.get(self.pos) else {
                return self.error(
                    column,
                    format!("the string starting here has no closing {quote}"),
                );
            };
            self.pos += 1;
            match c {
                c if c == quote => break,
                '\\' => {
                    let escape_column = self.pos;
                    let Some(&e) = self.chars.get(self.pos) else {
                        return self.error(escape_column, "a backslash ends the filter".into());
                    };
                    self.pos += 1;
                    let decoded = match e {
                        '\\' | '"' | '\'' | '/' => e,
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'v' => '\u{b}',
                        'x' => self.hex_escape(2, escape_column)?,
                        'u' => self.hex_escape(4, escape_column)?,
                        other => {
                            return self.error(escape_column, format!("unknown escape \\{other}"));
                        }
                    };
                    out.push(decoded);
                }
                c => out.push(c),
            }
        }
        let length = out.chars().count();
        if length > self.spec.max_value_length {
            return self.error(
                column,
                format!(
                    "the value is {length} characters long; at most {} are allowed",
                    self.spec.max_value_length
                ),
            );
        }
        Ok(out)
    }

    fn hex_escape(&mut self, digits: usize, column: usize) -> Result<char, ParseError> {
        let end = self.pos + digits;
        let hex: String = self
            .chars
            .get(self.pos..end)
            .unwrap_or_default()
            .iter()
            .collect();
        let decoded = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == digits)
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                self.pos = end;
                Ok(c)
            }
            None => self.error(
                column,
                format!("expected {digits} hex digits after the escape"),
            ),
        }
    }

    fn parse(mut self) -> Result<FilterExpr, ParseError> {
        let mut filter = FilterExpr::default();
        if self.peek()?.0 == Token::End {
            return Ok(filter);
        }
        loop {
            filter.conditions.push(self.condition()?);
            match self.next()? {
                (Token::End, _) => return Ok(filter),
                (t, _) if t.is_keyword("AND") => {}
                (t, column) => {
                    return self.error(
                        column,
                        format!("expected AND or the end, found {}", t.describe()),
                    );
                }
            }
        }
    }

    fn condition(&mut self) -> Result<Condition, ParseError> {
        let (field, column) = match self.next()? {
            (Token::Word(w), column) => (w, column),
            (t, column) => {
                return self.error(
                    column,
                    format!("expected a field name, found {}", t.describe()),
                );
            }
        };
        if !self.spec.fields.contains(&field.as_str()) {
            return self.error(
                column,
                format!(
                    "cannot filter on {}; the fields are {}",
                    yc_proto_types::quote(&field),
                    self.spec.fields.join(", ")
                ),
            );
        }
        let (op, column) = self.next()?;
        let op = match op {
            Token::Eq => FilterOp::Eq,
            Token::Ne => FilterOp::Ne,
            t if t.is_keyword("IN") => FilterOp::In,
            t if t.is_keyword("NOT") => match self.next()? {
                (t, _) if t.is_keyword("IN") => FilterOp::NotIn,
                (t, column) => {
                    return self.error(
                        column,
                        format!("expected IN after NOT, found {}", t.describe()),
                    );
                }
            },
            t => {
                return self.error(
                    column,
                    format!("expected =, !=, IN or NOT IN, found {}", t.describe()),
                );
            }
        };
        let values = match op {
            FilterOp::Eq | FilterOp::Ne => vec![self.value()?],
            FilterOp::In | FilterOp::NotIn => self.list()?,
        };
        Ok(Condition { field, op, values })
    }

    fn value(&mut self) -> Result<String, ParseError> {
        match self.next()? {
            (Token::Str(s), _) => Ok(s),
            (t, column) => self.error(
                column,
                format!("expected a quoted value, found {}", t.describe()),
            ),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, ParseError> {
        match self.next()? {
            (Token::Open, _) => {}
            (t, column) => {
                return self.error(
                    column,
                    format!("expected \"(\" after IN, found {}", t.describe()),
                );
            }
        }
        let mut values = vec![self.value()?];
        loop {
            match self.next()? {
                (Token::Close, _) => return Ok(values),
                (Token::Comma, _) => values.push(self.value()?),
                (t, column) => {
                    return self.error(
                        column,
                        format!("expected \",\" or \")\", found {}", t.describe()),
                    );
                }
            }
        }
    }
}
