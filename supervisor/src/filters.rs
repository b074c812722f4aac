//! containerd's filter language, used by List calls and event subscriptions.
//!
//! A filter string is selectors joined by `,`, all of which must match; a request may
//! carry several filter strings, any of which may match. A selector is a field path
//! (`name`, `labels."a.b"`, `target.digest`) alone (the field is present) or followed by
//! `==`, `!=` or `~=` (regular expression) and a value, bare or double-quoted.

use regex::Regex;

/// Longest filter string accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// Why a filter could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The filter text is malformed; the message says where.
    #[error("invalid filter {filter:?}: {reason}")]
    Syntax {
        /// The filter string.
        filter: String,
        /// What is wrong.
        reason: String,
    },
}

/// Something filters can look into: returns the value at a field path, if present.
pub trait Fields {
    /// The value at `path` (e.g. `["labels", "foo"]`), or `None` if absent.
    fn field(&self, path: &[String]) -> Option<String>;
}

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// A parsed set of filter strings (OR of ANDs). Empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any_of: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses the filter strings of a request.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self, FilterError> {
        let mut any_of = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.trim().is_empty() {
                continue;
            }
            any_of.push(parse_one(f)?);
        }
        Ok(Self { any_of })
    }

    /// True if `item` passes.
    pub fn matches(&self, item: &dyn Fields) -> bool {
        self.any_of.is_empty()
            || self
                .any_of
                .iter()
                .any(|all| all.iter().all(|s| s.matches(item)))
    }
}

impl Selector {
    fn matches(&self, item: &dyn Fields) -> bool {
        let value = item.field(&self.path);
        match (&self.op, value) {
            (Op::Present, v) => v.is_some(),
            (Op::Equal(want), Some(v)) => &v == want,
            (Op::NotEqual(want), Some(v)) => &v != want,
            (Op::NotEqual(_), None) => true,
            (Op::Matches(re), Some(v)) => re.is_match(&v),
            (_, None) => false,
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.text[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn error(&self, reason: impl Into<String>) -> FilterError {
        FilterError::Syntax {
            filter: self.text.to_string(),
            reason: format!("{} at byte {}", reason.into(), self.pos),
        }
    }
    fn quoted(&mut self) -> Result<String, FilterError> {
        // the opening quote is current
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.error("unterminated quote"))?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or_else(|| self.error("dangling escape"))?;
                    self.pos += e.len_utf8();
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
    }
    fn field(&mut self) -> Result<String, FilterError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a field name"));
        }
        Ok(self.text[start..self.pos].to_string())
    }
    fn value(&mut self) -> Result<String, FilterError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c != ',' && !c.is_whitespace()) {
            self.pos += self.peek().map(char::len_utf8).unwrap_or(1);
        }
        if start == self.pos {
            return Err(self.error("expected a value"));
        }
        Ok(self.text[start..self.pos].to_string())
    }
}

fn parse_one(text: &str) -> Result<Vec<Selector>, FilterError> {
    if text.len() > MAX_FILTER_LEN {
        return Err(FilterError::Syntax {
            filter: text.chars().take(64).collect(),
            reason: format!("longer than {MAX_FILTER_LEN} bytes"),
        });
    }
    let mut s = Scanner { text, pos: 0 };
    let mut selectors = Vec::new();
    loop {
        s.skip_space();
        let mut path = vec![s.field()?];
        while s.eat(".") {
            path.push(s.field()?);
        }
        s.skip_space();
        let op = if s.eat("==") {
            s.skip_space();
            Op::Equal(s.value()?)
        } else if s.eat("!=") {
            s.skip_space();
            Op::NotEqual(s.value()?)
        } else if s.eat("~=") {
            s.skip_space();
            let v = s.value()?;
            Op::Matches(
                Regex::new(&v).map_err(|e| s.error(format!("bad regular expression: {e}")))?,
            )
        } else {
            Op::Present
        };
        selectors.push(Selector { path, op });
        s.skip_space();
        if s.peek().is_none() {
            return Ok(selectors);
        }
        if !s.eat(",") {
            return Err(s.error("expected ',' or end"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Item(BTreeMap<&'static str, &'static str>);
    impl Fields for Item {
        fn field(&self, path: &[String]) -> Option<String> {
            self.0.get(path.join(".").as_str()).map(|s| s.to_string())
        }
    }

    fn item() -> Item {
        Item(BTreeMap::from([
            ("topic", "/images/create"),
            ("namespace", "default"),
            ("labels.a.b", "x y"),
        ]))
    }

    #[test]
    fn equality_and_and_or() {
        let f = Filter::parse(&["topic==/images/create,namespace==default"]).unwrap();
        assert!(f.matches(&item()));
        let f = Filter::parse(&["topic==/images/delete", "namespace==default"]).unwrap();
        assert!(f.matches(&item()), "second filter string matches");
        let f = Filter::parse(&["topic==/images/delete,namespace==default"]).unwrap();
        assert!(!f.matches(&item()));
    }

    #[test]
    fn quoted_fields_regex_presence_and_not_equal() {
        assert!(Filter::parse(&[r#"labels."a.b"=="x y""#])
            .unwrap()
            .matches(&item()));
        assert!(Filter::parse(&[r#"topic~="^/images/""#])
            .unwrap()
            .matches(&item()));
        assert!(Filter::parse(&["namespace"]).unwrap().matches(&item()));
        assert!(!Filter::parse(&["labels.zz"]).unwrap().matches(&item()));
        assert!(Filter::parse(&["namespace!=other"])
            .unwrap()
            .matches(&item()));
        assert!(Filter::parse::<&str>(&[]).unwrap().matches(&item()));
    }

    #[test]
    fn malformed_filters_are_errors() {
        for bad in ["==x", "a==", "a==\"open", "a~=(", "a==b c", "a,,b"] {
            assert!(Filter::parse(&[bad]).is_err(), "{bad:?}");
        }
    }
}
