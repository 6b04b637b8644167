//! The filter and order minilang of the GraphQL lists (a subset of Backend.AI's): a tokenizer and parser of filter
//! expressions, their evaluation on any record that shows its fields ([`Attrs`]), `like` patterns, order keys, and
//! [`paginate`], which filters, orders and pages a list. No IO: the records come from the caller.
//!
//! Filters are comparisons `field OP value` with `==`, `!=`, `<`, `<=`, `>`, `>=`, `is`, `isnot`, `like`, `ilike`,
//! `contains`, `in`, `notin` (values: `"strings"`, numbers, `true`, `false`, `null`, `[lists]`), combined with `&`,
//! `|`, `!` and parentheses (`!` binds tightest, then `&`, then `|`).

mod records;

pub use records::ownership_type;

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::cmp::Ordering;
use std::fmt;

/// A value a filter compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// Text (also times, as RFC 3339).
    Str(String),
    /// A number.
    Num(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`: no value.
    Null,
    /// `[a, b]`, for `in` and `notin`.
    List(Vec<Val>),
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Str(s.to_owned())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Str(s)
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

impl From<DateTime<Utc>> for Val {
    fn from(t: DateTime<Utc>) -> Self {
        Val::Str(t.to_rfc3339())
    }
}

impl From<bool> for Val {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl From<f64> for Val {
    fn from(n: f64) -> Self {
        Val::Num(n)
    }
}

impl Val {
    /// The value as text, for `like` and `contains` (none for `null` and lists).
    pub fn text(&self) -> Option<String> {
        match self {
            Val::Str(s) => Some(s.clone()),
            Val::Num(n) => Some(n.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// How two values compare, when they do: numbers with numbers or numeric text, text with text, booleans with
    /// booleans, `null` with `null`.
    pub fn compare(&self, other: &Val) -> Option<Ordering> {
        match (self, other) {
            (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
            (Val::Num(a), Val::Str(b)) => b.parse::<f64>().ok().and_then(|b| a.partial_cmp(&b)),
            (Val::Str(a), Val::Num(b)) => a.parse::<f64>().ok().and_then(|a| a.partial_cmp(b)),
            (Val::Str(a), Val::Str(b)) => Some(a.cmp(b)),
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Null, Val::Null) => Some(Ordering::Equal),
            _ => None,
        }
    }

    /// Ordering for sorting: nulls first, then by value.
    pub fn sort_cmp(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Null, Val::Null) => Ordering::Equal,
            (Val::Null, _) => Ordering::Less,
            (_, Val::Null) => Ordering::Greater,
            _ => self.compare(other).unwrap_or(Ordering::Equal),
        }
    }
}

/// Records that filters and orders can look into.
pub trait Attrs {
    /// The value of a field, or `None` when there is no such field.
    fn attr(&self, name: &str) -> Option<Val>;
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `==`, `is`.
    Eq,
    /// `!=`, `isnot`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `like`: `%` any text, `_` one character.
    Like,
    /// `ilike`: `like` ignoring case.
    ILike,
    /// `contains`: a substring.
    Contains,
    /// `in [..]`.
    In,
    /// `notin [..]`.
    NotIn,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a & b`.
    And(Box<Expr>, Box<Expr>),
    /// `a | b`.
    Or(Box<Expr>, Box<Expr>),
    /// `!a`.
    Not(Box<Expr>),
    /// `field OP value`.
    Cmp(String, Op, Val),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

/// A filter that does not parse: what is wrong, and the character offset in the expression where it is (its
/// length when the expression ends too soon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub msg: String,
    /// Where, in characters from the start.
    pub at: usize,
}

impl fmt::Display for SyntaxError {
    /// The message alone: the GraphQL errors have always read so.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for SyntaxError {}

fn syntax(msg: impl Into<String>, at: usize) -> SyntaxError {
    SyntaxError { msg: msg.into(), at }
}

/// The tokens of `src`, each with the character offset where it starts.
fn tokenize(src: &str) -> std::result::Result<Vec<(Tok, usize)>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(syntax("unterminated string", start)),
                    Some('\\') => {
                        s.push(*chars.get(i + 1).ok_or_else(|| syntax("unterminated string", start))?);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text.parse().map_err(|_| syntax(format!("bad number {text:?}"), start))?;
            out.push((Tok::Num(n), start));
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = ["==", "!=", "<=", ">="].into_iter().find(|s| *s == two);
            if let Some(sym) = sym {
                out.push((Tok::Sym(sym), start));
                i += 2;
            } else {
                let sym = ["<", ">", "&", "|", "!", "(", ")", "[", "]", ",", "+", "-"]
                    .into_iter()
                    .find(|s| s.starts_with(c))
                    .ok_or_else(|| syntax(format!("unexpected character {c:?}"), start))?;
                out.push((Tok::Sym(sym), start));
                i += 1;
            }
        }
    }
    Ok(out)
}

fn describe(tok: Option<&Tok>) -> String {
    match tok {
        None => "the end of the expression".into(),
        Some(Tok::Ident(w)) => format!("{w:?}"),
        Some(Tok::Str(s)) => format!("the string {s:?}"),
        Some(Tok::Num(n)) => format!("the number {n}"),
        Some(Tok::Sym(s)) => format!("{s:?}"),
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// The expression's length in characters: where the end is.
    end: usize,
}

type Parsed<T> = std::result::Result<T, SyntaxError>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    /// Where token `i` starts (the end when there is none).
    fn offset(&self, i: usize) -> usize {
        self.toks.get(i).map_or(self.end, |(_, at)| *at)
    }

    /// The next token and where it starts.
    fn next(&mut self) -> (Option<Tok>, usize) {
        let at = self.offset(self.pos);
        let t = self.peek().cloned();
        self.pos += 1;
        (t, at)
    }

    fn eat(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Parsed<Expr> {
        let mut left = self.and()?;
        while self.eat("|") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Parsed<Expr> {
        let mut left = self.unary()?;
        while self.eat("&") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Parsed<Expr> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return Err(syntax("expected ')'", self.offset(self.pos)));
            }
            return Ok(e);
        }
        let field = match self.next() {
            (Some(Tok::Ident(f)), _) => f,
            (other, at) => {
                return Err(syntax(format!("expected a field name, found {}", describe(other.as_ref())), at))
            }
        };
        let op = match self.next() {
            (Some(Tok::Sym("==")), _) => Op::Eq,
            (Some(Tok::Sym("!=")), _) => Op::Ne,
            (Some(Tok::Sym("<")), _) => Op::Lt,
            (Some(Tok::Sym("<=")), _) => Op::Le,
            (Some(Tok::Sym(">")), _) => Op::Gt,
            (Some(Tok::Sym(">=")), _) => Op::Ge,
            (Some(Tok::Ident(w)), at) => match w.to_ascii_lowercase().as_str() {
                "is" => Op::Eq,
                "isnot" => Op::Ne,
                "like" => Op::Like,
                "ilike" => Op::ILike,
                "contains" => Op::Contains,
                "in" => Op::In,
                "notin" => Op::NotIn,
                _ => return Err(syntax(format!("unknown operator {w:?}"), at)),
            },
            (other, at) => {
                let found = describe(other.as_ref());
                return Err(syntax(format!("expected an operator after {field:?}, found {found}"), at));
            }
        };
        let value = self.value()?;
        Ok(Expr::Cmp(field, op, value))
    }

    fn value(&mut self) -> Parsed<Val> {
        match self.next() {
            (Some(Tok::Str(s)), _) => Ok(Val::Str(s)),
            (Some(Tok::Num(n)), _) => Ok(Val::Num(n)),
            (Some(Tok::Ident(w)), at) => match w.as_str() {
                "null" | "None" => Ok(Val::Null),
                "true" | "True" => Ok(Val::Bool(true)),
                "false" | "False" => Ok(Val::Bool(false)),
                _ => Err(syntax(format!("unexpected word {w:?}; quote string values"), at)),
            },
            (Some(Tok::Sym("[")), _) => {
                let mut items = Vec::new();
                if self.eat("]") {
                    return Ok(Val::List(items));
                }
                loop {
                    items.push(self.value()?);
                    if self.eat("]") {
                        return Ok(Val::List(items));
                    }
                    if !self.eat(",") {
                        return Err(syntax("expected ',' or ']'", self.offset(self.pos)));
                    }
                }
            }
            (other, at) => Err(syntax(format!("expected a value, found {}", describe(other.as_ref())), at)),
        }
    }
}

/// Parses a filter expression.
pub fn parse_filter(src: &str) -> std::result::Result<Expr, SyntaxError> {
    let mut p = Parser { toks: tokenize(src)?, pos: 0, end: src.chars().count() };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(syntax(format!("unexpected {}", describe(p.peek())), p.offset(p.pos)));
    }
    Ok(e)
}

/// SQL `LIKE`: `%` matches any text, `_` one character, anything else itself.
pub fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Whether `item` passes the filter; `Err` for a field `item` does not have, or `in` without a list.
pub fn eval<T: Attrs>(e: &Expr, item: &T) -> std::result::Result<bool, String> {
    Ok(match e {
        Expr::And(a, b) => eval(a, item)? && eval(b, item)?,
        Expr::Or(a, b) => eval(a, item)? || eval(b, item)?,
        Expr::Not(a) => !eval(a, item)?,
        Expr::Cmp(field, op, value) => {
            let v = item.attr(field).ok_or_else(|| format!("unknown field {field:?}"))?;
            let ord = v.compare(value);
            match op {
                Op::Eq => ord == Some(Ordering::Equal),
                Op::Ne => ord != Some(Ordering::Equal),
                Op::Lt => ord == Some(Ordering::Less),
                Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ord == Some(Ordering::Greater),
                Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                Op::Like => matches!((v.text(), value.text()), (Some(t), Some(p)) if like(&p, &t)),
                Op::ILike => {
                    matches!((v.text(), value.text()), (Some(t), Some(p)) if like(&p.to_lowercase(), &t.to_lowercase()))
                }
                Op::Contains => matches!((v.text(), value.text()), (Some(t), Some(p)) if t.contains(&p)),
                Op::In | Op::NotIn => {
                    let Val::List(items) = value else { return Err(format!("{field}: 'in' needs a [list]")) };
                    let found = items.iter().any(|x| v.compare(x) == Some(Ordering::Equal));
                    found == (*op == Op::In)
                }
            }
        }
    })
}

/// The keys of an order: comma-separated field names, each with an optional `+` (ascending, the default) or `-`
/// prefix, or an `asc` / `desc` suffix; `true` means descending.
pub fn parse_order(src: &str) -> std::result::Result<Vec<(String, bool)>, String> {
    let mut keys = Vec::new();
    for part in src.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (desc, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, part.strip_prefix('+').unwrap_or(part).trim()),
        };
        let (name, desc) = match name.split_once(char::is_whitespace) {
            Some((n, dir)) => match dir.trim().to_ascii_lowercase().as_str() {
                "asc" => (n, false),
                "desc" => (n, true),
                _ => return Err(format!("bad order term {part:?}")),
            },
            None => (name, desc),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("bad order term {part:?}"));
        }
        keys.push((name.to_owned(), desc));
    }
    Ok(keys)
}

/// Filters, orders and pages `items`: answers the page of `limit` items from `offset` and how many passed the
/// filter. A filter or order that is malformed or names a field the items do not have is `InvalidParams`, its
/// message starting `invalid filter: ` or `invalid order: `.
pub fn paginate<T: Attrs>(
    mut items: Vec<T>,
    filter: Option<&str>,
    order: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<(Vec<T>, usize)> {
    let invalid = |what: &str, e: &dyn fmt::Display| Error::InvalidParams { msg: format!("invalid {what}: {e}") };
    if let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) {
        let expr = parse_filter(f).map_err(|e| invalid("filter", &e))?;
        let mut kept = Vec::with_capacity(items.len());
        for item in items {
            if eval(&expr, &item).map_err(|e| invalid("filter", &e))? {
                kept.push(item);
            }
        }
        items = kept;
    }
    if let Some(o) = order {
        let keys = parse_order(o).map_err(|e| invalid("order", &e))?;
        if let Some(first) = items.first() {
            if let Some((bad, _)) = keys.iter().find(|(k, _)| first.attr(k).is_none()) {
                return Err(invalid("order", &format_args!("unknown field {bad:?}")));
            }
        }
        items.sort_by(|a, b| {
            for (k, desc) in &keys {
                let (x, y) = (a.attr(k).unwrap_or(Val::Null), b.attr(k).unwrap_or(Val::Null));
                let o = x.sort_cmp(&y);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    let total = items.len();
    let page = items.into_iter().skip(offset).take(limit).collect();
    Ok((page, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Rec(Vec<(&'static str, Val)>);

    impl Attrs for Rec {
        fn attr(&self, name: &str) -> Option<Val> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        }
    }

    fn rec(name: &str, n: f64) -> Rec {
        Rec(vec![("name", name.into()), ("n", n.into()), ("tag", Val::Null), ("on", true.into())])
    }

    fn names(page: &[Rec]) -> Vec<Val> {
        page.iter().map(|r| r.attr("name").unwrap()).collect()
    }

    #[test]
    fn filters_parse_and_evaluate() {
        let r = rec("alpha", 3.0);
        let ok = |src: &str| eval(&parse_filter(src).unwrap(), &r).unwrap();
        assert!(ok(r#"name == "alpha""#));
        assert!(!ok(r#"name != "alpha""#));
        assert!(ok(r#"name == "alpha" & n >= 3"#));
        assert!(ok(r#"name == "beta" | n < 4"#));
        assert!(ok(r#"!(name == "beta")"#));
        assert!(ok(r#"name ilike "AL%""#));
        assert!(!ok(r#"name like "AL%""#));
        assert!(ok(r#"name in ["x", "alpha"]"#));
        assert!(ok(r#"name notin ["x"]"#));
        assert!(ok("tag is null"));
        assert!(ok(r#"name contains "lph""#));
        assert!(parse_filter("name ==").is_err());
        assert!(parse_filter(r#"name = "x""#).is_err());
        assert!(eval(&parse_filter(r#"nope == "x""#).unwrap(), &r).is_err());
    }

    #[test]
    fn not_binds_tighter_than_and_and_and_tighter_than_or() {
        let f = parse_filter(r#"!a == 1 & b == 2 | c == 3"#).unwrap();
        let cmp = |k: &str, n: f64| Box::new(Expr::Cmp(k.into(), Op::Eq, Val::Num(n)));
        let expected = Expr::Or(Box::new(Expr::And(Box::new(Expr::Not(cmp("a", 1.0))), cmp("b", 2.0))), cmp("c", 3.0));
        assert_eq!(f, expected);
        let r = rec("x", 1.0);
        let ok = |src: &str| eval(&parse_filter(src).unwrap(), &r).unwrap();
        assert!(ok(r#"name == "y" & n == 1 | on == true"#), "(false & true) | true");
        assert!(!ok(r#"name == "y" & (n == 1 | on == true)"#), "false & (true | true)");
        assert!(ok(r#"!!(n == 1)"#));
    }

    #[test]
    fn comparisons_follow_value_types() {
        let r = rec("b", 10.0);
        let ok = |src: &str| eval(&parse_filter(src).unwrap(), &r).unwrap();
        assert!(ok("n > 9.5") && ok("n <= 10") && ok("n != 11") && !ok("n < 10"));
        assert!(ok(r#"n == "10""#), "numeric text compares as a number");
        assert!(ok(r#"name > "a""#) && ok(r#"name < "c""#), "text compares as text");
        assert!(ok("n > -1"), "negative numbers");
        assert!(!ok(r#"n > "ten""#), "text that is no number never compares with one");
        assert!(ok("on is true") && ok("on isnot false") && ok("on == True"));
        assert!(ok("tag is None") && !ok("tag isnot null") && !ok(r#"tag == "x""#));
        assert!(!ok(r#"tag like "%""#), "null matches no pattern");
        assert!(!ok(r#"name in []"#) && ok(r#"n in [1, 10]"#) && ok(r#"n notin []"#));
        assert!(ok(r#"name == 'b'"#), "single quotes");
        assert!(eval(&parse_filter(r#"NAME == "b""#).unwrap(), &r).is_err(), "field names are case-sensitive");
    }

    #[test]
    fn like_patterns_match_whole_texts() {
        assert!(like("a%", "abc") && like("%c", "abc") && like("a_c", "abc") && like("%", ""));
        assert!(!like("a_", "abc") && !like("b%", "abc") && !like("_", ""));
        assert!(like("%b%", "abc") && like("a%b%c", "aXbYc"));
        let r = rec("Straße", 0.0);
        let ok = |src: &str| eval(&parse_filter(src).unwrap(), &r).unwrap();
        assert!(ok(r#"name ilike "stra_e""#) && !ok(r#"name like "stra_e""#), "ilike ignores case");
        assert!(ok(r#"name like "Stra\ße""#), "an escaped character is itself");
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let err = |src: &str| parse_filter(src).unwrap_err();
        assert_eq!(err(r#"name == "x"#), SyntaxError { msg: "unterminated string".into(), at: 8 });
        assert_eq!(err("name ~ 1"), SyntaxError { msg: "unexpected character '~'".into(), at: 5 });
        assert_eq!(
            err("name =="),
            SyntaxError { msg: "expected a value, found the end of the expression".into(), at: 7 }
        );
        assert_eq!(err("name bogus 1"), SyntaxError { msg: r#"unknown operator "bogus""#.into(), at: 5 });
        assert_eq!(err("== 1").at, 0);
        assert_eq!(err(r#"n == 1 n == 2"#), SyntaxError { msg: r#"unexpected "n""#.into(), at: 7 });
        assert_eq!(err("(n == 1").msg, "expected ')'");
        assert_eq!(err("(n == 1").at, 7);
        assert_eq!(err("n in [1 2]"), SyntaxError { msg: "expected ',' or ']'".into(), at: 8 });
        assert_eq!(err("n == x").msg, r#"unexpected word "x"; quote string values"#);
        assert_eq!(err("é == x").at, 5, "offsets count characters, not bytes");
        assert_eq!(err(r#"name = "x""#).to_string(), "unexpected character '='", "displayed as the message alone");
        let no_operator = SyntaxError { msg: r#"expected an operator after "name", found "(""#.into(), at: 5 };
        assert_eq!(err("name (1)"), no_operator);
        let r = rec("a", 1.0);
        let in_needs_list = eval(&parse_filter("n in 1").unwrap(), &r).unwrap_err();
        assert_eq!(in_needs_list, "n: 'in' needs a [list]");
    }

    #[test]
    fn orders_parse_prefixes_and_suffixes() {
        let keys = parse_order("-created_at, +name,n asc , tag DESC").unwrap();
        let expected = [("created_at", true), ("name", false), ("n", false), ("tag", true)];
        assert_eq!(keys, expected.map(|(k, d)| (k.to_owned(), d)));
        assert_eq!(parse_order("").unwrap(), vec![]);
        assert!(parse_order("name sideways").is_err());
        assert!(parse_order("na-me").is_err());
    }

    #[test]
    fn order_and_pagination() {
        let items = vec![rec("b", 2.0), rec("a", 1.0), rec("c", 3.0)];
        let (page, total) = paginate(items, None, Some("-n"), 2, 0).unwrap();
        assert_eq!(total, 3);
        assert_eq!(names(&page), vec![Val::from("c"), Val::from("b")]);
        let items = vec![rec("b", 2.0), rec("a", 1.0), rec("c", 3.0)];
        let (page, total) = paginate(items, Some("n > 1"), Some("name asc"), 10, 1).unwrap();
        assert_eq!(total, 2);
        assert_eq!(page[0].attr("name").unwrap(), Val::from("c"));
        let unknown = paginate(vec![rec("a", 1.0)], None, Some("bogus"), 1, 0).unwrap_err();
        assert_eq!(unknown.to_string(), r#"invalid API parameters: invalid order: unknown field "bogus""#);
        let bad = paginate(vec![rec("a", 1.0)], Some("n =="), None, 1, 0).unwrap_err();
        assert!(matches!(&bad, Error::InvalidParams { msg } if msg.starts_with("invalid filter: ")), "{bad}");
        let with_nulls =
            vec![Rec(vec![("name", "x".into()), ("t", Val::Null)]), Rec(vec![("name", "y".into()), ("t", 1.0.into())])];
        let (page, _) = paginate(with_nulls, None, Some("-t"), 10, 0).unwrap();
        assert_eq!(names(&page), vec![Val::from("y"), Val::from("x")], "nulls sort first, so last descending");
        let (page, total) = paginate(vec![rec("a", 1.0)], None, None, 5, 3).unwrap();
        assert_eq!((page.len(), total), (0, 1), "past the end: an empty page, the total still counted");
    }
}
