//! `POST /admin/gql` (and the pre-v6.20210815 `POST /admin/graphql`): the read-only GraphQL subset the official
//! client and CLI send for `session list` / `ps`, `session info`, `admin agent list`, `admin keypair list` and
//! `vfolder list`.
//!
//! Names follow Backend.AI's graphene schema (snake_case fields and arguments). Fields the manager keeps no data for
//! answer `null` or an empty value. `JSONString` fields (slots, `status_data`, ...) are JSON documents inside a string,
//! as graphene renders them.
//!
//! `filter` and `order` take a subset of Backend.AI's minilang: comparisons `field OP value` with `==`, `!=`, `<`,
//! `<=`, `>`, `>=`, `is`, `isnot`, `like`, `ilike`, `contains`, `in`, `notin` (values: `"strings"`, numbers, `true`,
//! `false`, `null`, `[lists]`), combined with `&`, `|`, `!` and parentheses; orders are comma-separated field names
//! with an optional `+` (ascending, the default) or `-` (descending) prefix. An expression that does not parse or
//! names an unknown field is a GraphQL error.
//!
//! Errors: on `/admin/gql` every GraphQL error (syntax, validation, permission) comes back inside a 200 reply as
//! `{"data": ..., "errors": [...]}`, as Backend.AI does; the client turns a non-empty `errors` into its own 400
//! `graphql-error`. The legacy `/admin/graphql` answers the bare `data` object, or a 400 problem+json of type
//! `graphql-error` carrying the errors in `data`.

use super::{authenticated, Caller};
use crate::service::context::acting_for;
use crate::service::context::RequestContext;
use crate::Manager;
use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, Variables};
use backend_agent::http::{json_object, json_reply};
use backend_core::error::PROBLEM_BASE;
use backend_core::model::{AgentInfo, AgentStatus, KernelRecord, KeyPair, SessionRecord};
use backend_core::status::StatusHistory;
use backend_core::store::SessionFilter;
use backend_core::vfolder::{VFolder, VFolderAccess, VFolderOwner};
use backend_core::{AccessKey, AgentId, ResourceSlots, SessionId, SessionStatus};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::cmp::Ordering;
use std::sync::Arc;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// The schema served.
pub type GqlSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

type GResult<T> = async_graphql::Result<T>;

/// Builds the schema.
pub fn schema() -> GqlSchema {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription).finish()
}

/// What every resolver sees: the manager and the caller.
struct Gql {
    m: Arc<Manager>,
    caller: KeyPair,
}

fn gql<'a>(ctx: &Context<'a>) -> &'a Gql {
    ctx.data_unchecked::<Gql>()
}

fn require_admin(g: &Gql) -> GResult<()> {
    if g.caller.role.is_admin() {
        Ok(())
    } else {
        Err(async_graphql::Error::new("forbidden: this query requires the admin privilege"))
    }
}

fn slots_json(slots: &ResourceSlots) -> String {
    serde_json::to_string(slots).unwrap_or_else(|_| "{}".into())
}

fn history_json(history: &StatusHistory) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        history.0.iter().map(|c| (c.status.to_lowercase(), c.at.to_rfc3339().into())).collect();
    serde_json::Value::Object(map).to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Minilang: filter and order expressions
// ---------------------------------------------------------------------------------------------------------------

/// A value a filter compares.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
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
    fn text(&self) -> Option<String> {
        match self {
            Val::Str(s) => Some(s.clone()),
            Val::Num(n) => Some(n.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn compare(&self, other: &Val) -> Option<Ordering> {
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
    fn sort_cmp(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Null, Val::Null) => Ordering::Equal,
            (Val::Null, _) => Ordering::Less,
            (_, Val::Null) => Ordering::Greater,
            _ => self.compare(other).unwrap_or(Ordering::Equal),
        }
    }
}

/// Records that filters and orders can look into.
trait Attrs {
    /// The value of a field, or `None` when there is no such field.
    fn attr(&self, name: &str) -> Option<Val>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    Contains,
    In,
    NotIn,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Val),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('\\') => {
                        s.push(*chars.get(i + 1).ok_or("unterminated string")?);
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
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Tok::Num(text.parse().map_err(|_| format!("bad number {text:?}"))?));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = ["==", "!=", "<=", ">="].into_iter().find(|s| *s == two);
            if let Some(sym) = sym {
                out.push(Tok::Sym(sym));
                i += 2;
            } else {
                let sym = ["<", ">", "&", "|", "!", "(", ")", "[", "]", ",", "+", "-"]
                    .into_iter()
                    .find(|s| s.starts_with(c))
                    .ok_or_else(|| format!("unexpected character {c:?}"))?;
                out.push(Tok::Sym(sym));
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
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat("|") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.eat("&") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return Err("expected ')'".into());
            }
            return Ok(e);
        }
        let field = match self.next() {
            Some(Tok::Ident(f)) => f,
            other => return Err(format!("expected a field name, found {}", describe(other.as_ref()))),
        };
        let op = match self.next() {
            Some(Tok::Sym("==")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Ident(w)) => match w.to_ascii_lowercase().as_str() {
                "is" => Op::Eq,
                "isnot" => Op::Ne,
                "like" => Op::Like,
                "ilike" => Op::ILike,
                "contains" => Op::Contains,
                "in" => Op::In,
                "notin" => Op::NotIn,
                _ => return Err(format!("unknown operator {w:?}")),
            },
            other => return Err(format!("expected an operator after {field:?}, found {}", describe(other.as_ref()))),
        };
        let value = self.value()?;
        Ok(Expr::Cmp(field, op, value))
    }

    fn value(&mut self) -> Result<Val, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Val::Str(s)),
            Some(Tok::Num(n)) => Ok(Val::Num(n)),
            Some(Tok::Ident(w)) => match w.as_str() {
                "null" | "None" => Ok(Val::Null),
                "true" | "True" => Ok(Val::Bool(true)),
                "false" | "False" => Ok(Val::Bool(false)),
                _ => Err(format!("unexpected word {w:?}; quote string values")),
            },
            Some(Tok::Sym("[")) => {
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
                        return Err("expected ',' or ']'".into());
                    }
                }
            }
            other => Err(format!("expected a value, found {}", describe(other.as_ref()))),
        }
    }
}

fn parse_filter(src: &str) -> Result<Expr, String> {
    let mut p = Parser { toks: tokenize(src)?, pos: 0 };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {}", describe(p.toks.get(p.pos))));
    }
    Ok(e)
}

fn like(pattern: &str, text: &str) -> bool {
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

fn eval<T: Attrs>(e: &Expr, item: &T) -> Result<bool, String> {
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

fn parse_order(src: &str) -> Result<Vec<(String, bool)>, String> {
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

/// Filters, orders and paginates; answers the page and the number of items that passed the filter.
fn paginate<T: Attrs>(
    mut items: Vec<T>,
    filter: Option<&str>,
    order: Option<&str>,
    limit: i32,
    offset: i32,
) -> GResult<(Vec<T>, i32)> {
    if limit < 0 || offset < 0 {
        return Err("limit and offset must not be negative".into());
    }
    if let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) {
        let expr = parse_filter(f).map_err(|e| async_graphql::Error::new(format!("invalid filter: {e}")))?;
        let mut kept = Vec::with_capacity(items.len());
        for item in items {
            if eval(&expr, &item).map_err(|e| async_graphql::Error::new(format!("invalid filter: {e}")))? {
                kept.push(item);
            }
        }
        items = kept;
    }
    if let Some(o) = order {
        let keys = parse_order(o).map_err(|e| async_graphql::Error::new(format!("invalid order: {e}")))?;
        if let Some(first) = items.first() {
            if let Some((bad, _)) = keys.iter().find(|(k, _)| first.attr(k).is_none()) {
                return Err(async_graphql::Error::new(format!("invalid order: unknown field {bad:?}")));
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
    let total = i32::try_from(items.len()).unwrap_or(i32::MAX);
    let page = items.into_iter().skip(offset as usize).take(limit as usize).collect();
    Ok((page, total))
}

fn parse_statuses<S: std::str::FromStr>(text: Option<&str>) -> GResult<Option<Vec<S>>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.eq_ignore_ascii_case("ALL") {
        return Ok(None);
    }
    text.split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<S>().map_err(|_| async_graphql::Error::new(format!("unknown status {s:?}"))))
        .collect::<GResult<Vec<S>>>()
        .map(Some)
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions and kernels
// ---------------------------------------------------------------------------------------------------------------

impl Attrs for SessionRecord {
    fn attr(&self, name: &str) -> Option<Val> {
        Some(match name {
            "id" | "session_id" => self.id.to_string().into(),
            "name" | "session_name" => self.name.as_str().into(),
            "type" | "session_type" => self.session_type.as_str().into(),
            "image" => self.image.as_str().into(),
            "status" => self.status.as_str().into(),
            "status_info" => self.status_info.clone().into(),
            "status_changed" => self.status_history.0.last().map(|c| c.at).into(),
            "access_key" => self.access_key.as_str().into(),
            "domain_name" => self.domain.as_str().into(),
            "group_name" => self.group.as_str().into(),
            "tag" => self.tag.clone().into(),
            "result" => self.result.as_str().into(),
            "scaling_group" | "scaling_group_name" => self.scaling_group.as_str().into(),
            "cluster_size" => f64::from(self.cluster_size).into(),
            "startup_command" => self.startup_command.clone().into(),
            "created_at" => self.created_at.into(),
            "terminated_at" => self.terminated_at.into(),
            _ => return None,
        })
    }
}

/// A compute session as the `ComputeSession` type shows it.
pub struct ComputeSession {
    s: SessionRecord,
    kernels: Vec<KernelRecord>,
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeSession {
    async fn id(&self) -> Uuid {
        self.s.id.0
    }
    async fn session_id(&self) -> Uuid {
        self.s.id.0
    }
    async fn main_kernel_id(&self) -> Option<Uuid> {
        self.kernels.iter().find(|k| k.is_main()).map(|k| k.id.0)
    }
    async fn tag(&self) -> Option<String> {
        self.s.tag.clone()
    }
    async fn name(&self) -> String {
        self.s.name.clone()
    }
    #[graphql(name = "type")]
    async fn session_type(&self) -> String {
        self.s.session_type.as_str().to_uppercase()
    }
    async fn image(&self) -> String {
        self.s.image.clone()
    }
    async fn architecture(&self) -> Option<String> {
        None
    }
    async fn registry(&self) -> Option<String> {
        None
    }
    async fn cluster_template(&self) -> Option<String> {
        None
    }
    async fn cluster_mode(&self) -> String {
        "single-node".into()
    }
    async fn cluster_size(&self) -> i32 {
        i32::try_from(self.s.cluster_size).unwrap_or(i32::MAX)
    }
    async fn domain_name(&self) -> String {
        self.s.domain.clone()
    }
    async fn group_name(&self) -> String {
        self.s.group.clone()
    }
    async fn group_id(&self) -> Option<Uuid> {
        None
    }
    async fn user_email(&self, ctx: &Context<'_>) -> GResult<Option<String>> {
        Ok(gql(ctx).m.store.keypair(&self.s.access_key).await?.map(|k| k.user_id))
    }
    async fn user_id(&self) -> Option<Uuid> {
        None
    }
    async fn access_key(&self) -> String {
        self.s.access_key.to_string()
    }
    async fn created_user_email(&self, ctx: &Context<'_>) -> GResult<Option<String>> {
        Ok(gql(ctx).m.store.keypair(&self.s.access_key).await?.map(|k| k.user_id))
    }
    async fn created_user_id(&self) -> Option<Uuid> {
        None
    }
    async fn status(&self) -> String {
        self.s.status.as_str().into()
    }
    async fn status_info(&self) -> Option<String> {
        self.s.status_info.clone()
    }
    async fn status_data(&self) -> String {
        "{}".into()
    }
    async fn status_history(&self) -> String {
        history_json(&self.s.status_history)
    }
    async fn status_changed(&self) -> Option<DateTime<Utc>> {
        self.s.status_history.0.last().map(|c| c.at)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.s.created_at
    }
    async fn terminated_at(&self) -> Option<DateTime<Utc>> {
        self.s.terminated_at
    }
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn scheduled_at(&self) -> Option<DateTime<Utc>> {
        self.s.status_history.entered(SessionStatus::Scheduled)
    }
    async fn startup_command(&self) -> Option<String> {
        self.s.startup_command.clone()
    }
    async fn result(&self) -> String {
        self.s.result.as_str().into()
    }
    async fn commit_status(&self) -> Option<String> {
        None
    }
    async fn resource_opts(&self) -> String {
        match self.s.shmem {
            Some(bytes) => serde_json::json!({ "shmem": bytes }).to_string(),
            None => "{}".into(),
        }
    }
    async fn scaling_group(&self) -> String {
        self.s.scaling_group.clone()
    }
    async fn service_ports(&self) -> String {
        "{}".into()
    }
    async fn mounts(&self) -> Vec<String> {
        Vec::new()
    }
    async fn agent_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.kernels.iter().filter_map(|k| k.agent_id.as_ref().map(|a| a.to_string())).collect();
        ids.dedup();
        ids
    }
    async fn occupying_slots(&self) -> String {
        slots_json(&self.occupied())
    }
    async fn occupied_slots(&self) -> String {
        slots_json(&self.occupied())
    }
    async fn requested_slots(&self) -> String {
        slots_json(&self.s.requested_slots)
    }
    async fn containers(&self) -> Vec<ComputeContainer> {
        self.kernels.iter().cloned().map(ComputeContainer).collect()
    }
    /// The sessions this one waits for, in the order it named them; one that is gone or that the caller may not
    /// see is left out.
    async fn dependencies(&self, ctx: &Context<'_>) -> GResult<Vec<ComputeSession>> {
        let g = gql(ctx);
        let mut out = Vec::with_capacity(self.s.dependencies.len());
        for id in &self.s.dependencies {
            let Some(s) = g.m.store.session(*id).await? else { continue };
            if !g.caller.role.is_admin() && s.access_key != g.caller.access_key {
                continue;
            }
            let kernels = g.m.store.kernels(s.id).await?;
            out.push(ComputeSession { s, kernels });
        }
        Ok(out)
    }
    async fn abusing_reports(&self) -> Vec<String> {
        Vec::new()
    }
    async fn idle_checks(&self) -> String {
        "{}".into()
    }
}

impl ComputeSession {
    fn occupied(&self) -> ResourceSlots {
        self.kernels.iter().fold(ResourceSlots::new(), |acc, k| acc + k.occupied_slots.clone())
    }
}

/// A kernel as the `ComputeContainer` type shows it.
pub struct ComputeContainer(KernelRecord);

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeContainer {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn kernel_id(&self) -> Uuid {
        self.0.id.0
    }
    async fn session_id(&self) -> Uuid {
        self.0.session_id.0
    }
    async fn cluster_role(&self) -> String {
        self.0.cluster_role.clone()
    }
    async fn role(&self) -> String {
        self.0.cluster_role.clone()
    }
    async fn cluster_idx(&self) -> i32 {
        i32::try_from(self.0.cluster_idx).unwrap_or(i32::MAX)
    }
    async fn idx(&self) -> i32 {
        i32::try_from(self.0.cluster_idx).unwrap_or(i32::MAX)
    }
    async fn local_rank(&self) -> i32 {
        0
    }
    async fn cluster_hostname(&self) -> String {
        self.0.cluster_hostname.clone()
    }
    async fn hostname(&self) -> String {
        self.0.cluster_hostname.clone()
    }
    async fn image(&self) -> String {
        self.0.image.clone()
    }
    async fn registry(&self) -> Option<String> {
        None
    }
    async fn architecture(&self) -> Option<String> {
        None
    }
    async fn status(&self) -> String {
        self.0.status.as_str().into()
    }
    async fn status_info(&self) -> Option<String> {
        self.0.status_info.clone()
    }
    async fn status_data(&self) -> String {
        "{}".into()
    }
    async fn status_changed(&self) -> Option<DateTime<Utc>> {
        self.0.status_history.0.last().map(|c| c.at)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn terminated_at(&self) -> Option<DateTime<Utc>> {
        self.0.terminated_at
    }
    async fn agent(&self) -> Option<String> {
        self.0.agent_id.as_ref().map(|a| a.to_string())
    }
    async fn agent_addr(&self) -> Option<String> {
        self.0.agent_addr.clone()
    }
    async fn container_id(&self) -> Option<String> {
        self.0.container_id.clone()
    }
    async fn resource_opts(&self) -> String {
        "{}".into()
    }
    async fn occupied_slots(&self) -> String {
        slots_json(&self.0.occupied_slots)
    }
    async fn requested_slots(&self) -> String {
        slots_json(&self.0.requested_slots)
    }
    async fn preopen_ports(&self) -> Vec<i32> {
        Vec::new()
    }
    async fn live_stat(&self) -> Option<String> {
        None
    }
    async fn last_stat(&self) -> Option<String> {
        None
    }
}

/// A page of sessions.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct ComputeSessionList {
    items: Vec<ComputeSession>,
    total_count: i32,
}

// ---------------------------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------------------------

impl Attrs for AgentInfo {
    fn attr(&self, name: &str) -> Option<Val> {
        Some(match name {
            "id" => self.id.to_string().into(),
            "status" => self.status.as_str().into(),
            "scaling_group" => self.scaling_group.as_str().into(),
            "architecture" => self.architecture.as_str().into(),
            "addr" => self.addr.as_str().into(),
            "region" => Val::Null,
            "schedulable" => self.schedulable.into(),
            "first_contact" => self.first_contact.into(),
            "lost_at" => self.lost_at.into(),
            _ => return None,
        })
    }
}

/// An agent as the `Agent` type shows it.
pub struct Agent(AgentInfo);

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl Agent {
    async fn id(&self) -> String {
        self.0.id.to_string()
    }
    async fn status(&self) -> String {
        self.0.status.as_str().into()
    }
    async fn status_changed(&self) -> Option<DateTime<Utc>> {
        self.0.lost_at
    }
    async fn region(&self) -> Option<String> {
        None
    }
    async fn scaling_group(&self) -> String {
        self.0.scaling_group.clone()
    }
    async fn schedulable(&self) -> bool {
        self.0.schedulable
    }
    async fn available_slots(&self) -> String {
        slots_json(&self.0.available_slots)
    }
    async fn occupied_slots(&self) -> String {
        slots_json(&self.0.occupied_slots)
    }
    async fn addr(&self) -> String {
        self.0.addr.clone()
    }
    async fn architecture(&self) -> String {
        self.0.architecture.clone()
    }
    async fn first_contact(&self) -> DateTime<Utc> {
        self.0.first_contact
    }
    async fn lost_at(&self) -> Option<DateTime<Utc>> {
        self.0.lost_at
    }
    async fn live_stat(&self) -> Option<String> {
        None
    }
    async fn version(&self) -> Option<String> {
        None
    }
    async fn compute_plugins(&self) -> String {
        "{}".into()
    }
    async fn hardware_metadata(&self) -> String {
        "{}".into()
    }
    async fn local_config(&self) -> String {
        "{}".into()
    }
    async fn auto_terminate_abusing_kernel(&self) -> bool {
        false
    }
    async fn cpu_cur_pct(&self) -> f64 {
        0.0
    }
    async fn mem_cur_bytes(&self) -> f64 {
        0.0
    }
    async fn container_count(&self, ctx: &Context<'_>) -> GResult<i32> {
        let kernels = gql(ctx).m.store.kernels_on_agent(&self.0.id).await?;
        Ok(i32::try_from(kernels.iter().filter(|k| !k.status.is_final()).count()).unwrap_or(i32::MAX))
    }
    async fn compute_containers(&self, ctx: &Context<'_>, status: Option<String>) -> GResult<Vec<ComputeContainer>> {
        let statuses = parse_statuses::<backend_core::KernelStatus>(status.as_deref())?;
        let kernels = gql(ctx).m.store.kernels_on_agent(&self.0.id).await?;
        Ok(kernels
            .into_iter()
            .filter(|k| match &statuses {
                Some(s) => s.contains(&k.status),
                None => !k.status.is_final(),
            })
            .map(ComputeContainer)
            .collect())
    }
}

/// A page of agents.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct AgentList {
    items: Vec<Agent>,
    total_count: i32,
}

async fn agents_matching(g: &Gql, status: Option<&str>, scaling_group: Option<&str>) -> GResult<Vec<AgentInfo>> {
    require_admin(g)?;
    let statuses = parse_statuses::<AgentStatus>(status)?;
    let mut agents = g.m.store.list_agents().await?;
    agents.retain(|a| {
        statuses.as_ref().is_none_or(|s| s.contains(&a.status))
            && scaling_group.is_none_or(|sg| sg.is_empty() || a.scaling_group == sg)
    });
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(agents)
}

// ---------------------------------------------------------------------------------------------------------------
// Keypairs
// ---------------------------------------------------------------------------------------------------------------

/// A keypair as the `KeyPair` type shows it; the secret only to its owner.
pub struct KeyPairGql {
    kp: KeyPair,
    show_secret: bool,
}

impl KeyPairGql {
    fn new(kp: KeyPair, caller: &KeyPair) -> Self {
        let show_secret = kp.access_key == caller.access_key;
        Self { kp, show_secret }
    }
}

impl Attrs for KeyPairGql {
    fn attr(&self, name: &str) -> Option<Val> {
        let kp = &self.kp;
        Some(match name {
            "access_key" => kp.access_key.as_str().into(),
            "user_id" | "email" => kp.user_id.as_str().into(),
            "is_active" => kp.is_active.into(),
            "is_admin" => kp.role.is_admin().into(),
            "role" => kp.role.as_str().into(),
            "resource_policy" => kp.resource_policy.as_str().into(),
            "rate_limit" => f64::from(kp.rate_limit).into(),
            "created_at" => kp.created_at.into(),
            "full_name" | "last_used" | "modified_at" | "domain_name" => Val::Null,
            _ => return None,
        })
    }
}

/// The owning user's public details.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct UserInfo {
    email: String,
    full_name: Option<String>,
}

#[Object(name = "KeyPair", rename_fields = "snake_case", rename_args = "snake_case")]
impl KeyPairGql {
    async fn user_id(&self) -> String {
        self.kp.user_id.clone()
    }
    async fn full_name(&self) -> Option<String> {
        None
    }
    async fn user_info(&self) -> UserInfo {
        UserInfo { email: self.kp.user_id.clone(), full_name: None }
    }
    async fn projects(&self) -> Vec<String> {
        Vec::new()
    }
    async fn access_key(&self) -> String {
        self.kp.access_key.to_string()
    }
    async fn secret_key(&self) -> Option<String> {
        self.show_secret.then(|| self.kp.secret_key.clone())
    }
    async fn is_active(&self) -> bool {
        self.kp.is_active
    }
    async fn is_admin(&self) -> bool {
        self.kp.role.is_admin()
    }
    async fn role(&self) -> String {
        self.kp.role.as_str().into()
    }
    async fn resource_policy(&self) -> String {
        self.kp.resource_policy.clone()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.kp.created_at
    }
    async fn modified_at(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn last_used(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn rate_limit(&self) -> i32 {
        i32::try_from(self.kp.rate_limit).unwrap_or(i32::MAX)
    }
    async fn num_queries(&self) -> i32 {
        0
    }
    async fn concurrency_used(&self, ctx: &Context<'_>) -> GResult<i32> {
        let filter = SessionFilter { access_key: Some(self.kp.access_key.clone()), statuses: None, limit: None };
        let sessions = gql(ctx).m.store.list_sessions(&filter).await?;
        Ok(i32::try_from(sessions.iter().filter(|s| !s.status.is_final()).count()).unwrap_or(i32::MAX))
    }
    async fn domain_name(&self) -> Option<String> {
        None
    }
    async fn ssh_public_key(&self) -> Option<String> {
        None
    }
    async fn ssh_private_key(&self) -> Option<String> {
        None
    }
    async fn dotfiles(&self) -> String {
        "[]".into()
    }
    async fn bootstrap_script(&self) -> String {
        String::new()
    }
}

/// A page of keypairs.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct KeyPairList {
    items: Vec<KeyPairGql>,
    total_count: i32,
}

async fn keypairs_matching(g: &Gql, email: Option<&str>, is_active: Option<bool>) -> GResult<Vec<KeyPairGql>> {
    require_admin(g)?;
    let mut keypairs = g.m.store.list_keypairs().await?;
    keypairs
        .retain(|k| email.is_none_or(|e| e.is_empty() || k.user_id == e) && is_active.is_none_or(|a| k.is_active == a));
    keypairs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.access_key.cmp(&b.access_key)));
    Ok(keypairs.into_iter().map(|k| KeyPairGql::new(k, &g.caller)).collect())
}

// ---------------------------------------------------------------------------------------------------------------
// Virtual folders
// ---------------------------------------------------------------------------------------------------------------

/// A virtual folder as one caller sees it (the `VirtualFolder` type). Users and groups have no UUIDs here: `user`
/// and `group` answer `null`; `user_email` and `group_name` name the owner.
pub struct VirtualFolder(VFolderAccess);

impl Attrs for VFolderAccess {
    fn attr(&self, name: &str) -> Option<Val> {
        let f = &self.folder;
        let (email, group) = match &f.owner {
            VFolderOwner::User { email } => (Some(email.clone()), None),
            VFolderOwner::Group { name, .. } => (None, Some(name.clone())),
        };
        Some(match name {
            "id" => f.id.to_string().into(),
            "host" => f.host.as_str().into(),
            "name" => f.name.as_str().into(),
            "user_email" => email.into(),
            "group_name" => group.into(),
            "creator" => f.creator.as_str().into(),
            "status" => "ready".into(),
            "usage_mode" => f.usage_mode.as_str().into(),
            "permission" => self.permission.as_str().into(),
            "ownership_type" => ownership_type(f).into(),
            "max_size" => f.max_size.map(|b| (b >> 20) as f64).into(),
            "created_at" | "last_used" => f.created_at.into(),
            "cloneable" => f.cloneable.into(),
            _ => return None,
        })
    }
}

fn ownership_type(f: &VFolder) -> &'static str {
    match f.owner {
        VFolderOwner::User { .. } => "user",
        VFolderOwner::Group { .. } => "group",
    }
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl VirtualFolder {
    async fn id(&self) -> Uuid {
        self.0.folder.id.0
    }
    async fn host(&self) -> String {
        self.0.folder.host.clone()
    }
    async fn name(&self) -> String {
        self.0.folder.name.clone()
    }
    async fn user(&self) -> Option<Uuid> {
        None
    }
    async fn user_email(&self) -> Option<String> {
        match &self.0.folder.owner {
            VFolderOwner::User { email } => Some(email.clone()),
            VFolderOwner::Group { .. } => None,
        }
    }
    async fn group(&self) -> Option<Uuid> {
        None
    }
    async fn group_name(&self) -> Option<String> {
        match &self.0.folder.owner {
            VFolderOwner::Group { name, .. } => Some(name.clone()),
            VFolderOwner::User { .. } => None,
        }
    }
    async fn creator(&self) -> String {
        self.0.folder.creator.clone()
    }
    async fn status(&self) -> String {
        "ready".into()
    }
    async fn unmanaged_path(&self) -> Option<String> {
        None
    }
    async fn usage_mode(&self) -> String {
        self.0.folder.usage_mode.as_str().into()
    }
    async fn permission(&self) -> String {
        self.0.permission.as_str().into()
    }
    async fn ownership_type(&self) -> String {
        ownership_type(&self.0.folder).into()
    }
    async fn max_files(&self) -> i32 {
        0
    }
    /// MiB, as Backend.AI.
    async fn max_size(&self) -> Option<f64> {
        self.0.folder.max_size.map(|b| (b >> 20) as f64)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.folder.created_at
    }
    async fn last_used(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn num_files(&self) -> Option<i32> {
        None
    }
    /// Bytes used, read from the volume.
    async fn cur_size(&self, ctx: &Context<'_>) -> GResult<f64> {
        let f = &self.0.folder;
        Ok(gql(ctx).m.storage.usage(&f.host, f.id).await? as f64)
    }
    async fn cloneable(&self) -> bool {
        self.0.folder.cloneable
    }
}

/// A page of virtual folders.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct VirtualFolderList {
    items: Vec<VirtualFolder>,
    total_count: i32,
}

/// Which of the visible folders a list query answers.
#[derive(Clone, Copy)]
enum FolderScope {
    All,
    Own,
    Invited,
    Project,
}

async fn vfolders(
    g: &Gql,
    scope: FolderScope,
    access_key: Option<&str>,
    page: (i32, i32, Option<&str>, Option<&str>),
) -> GResult<VirtualFolderList> {
    let (limit, offset, filter, order) = page;
    let caller = RequestContext::resolve(&g.m, &g.caller, access_key).await?;
    let mut found = g.m.accessible_folders(&caller).await?;
    found.retain(|a| match scope {
        FolderScope::All => true,
        FolderScope::Own => a.is_owner,
        FolderScope::Invited => !a.is_owner && matches!(a.folder.owner, VFolderOwner::User { .. }),
        FolderScope::Project => matches!(a.folder.owner, VFolderOwner::Group { .. }),
    });
    let (page, total_count) = paginate(found, filter, order, limit, offset)?;
    Ok(VirtualFolderList { items: page.into_iter().map(VirtualFolder).collect(), total_count })
}

// ---------------------------------------------------------------------------------------------------------------
// The query root
// ---------------------------------------------------------------------------------------------------------------

/// The root of every query.
pub struct QueryRoot;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl QueryRoot {
    /// One session by id: the caller's own, or any for admins; `null` when not visible.
    async fn compute_session(&self, ctx: &Context<'_>, id: Uuid) -> GResult<Option<ComputeSession>> {
        let g = gql(ctx);
        let Some(s) = g.m.store.session(SessionId(id)).await? else { return Ok(None) };
        if !g.caller.role.is_admin() && s.access_key != g.caller.access_key {
            return Ok(None);
        }
        let kernels = g.m.store.kernels(s.id).await?;
        Ok(Some(ComputeSession { s, kernels }))
    }

    /// A page of sessions. Users see their own; admins see everyone's, or one keypair's with `access_key`.
    #[allow(clippy::too_many_arguments)]
    async fn compute_session_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<Uuid>,
        access_key: Option<String>,
        status: Option<String>,
    ) -> GResult<Option<ComputeSessionList>> {
        let g = gql(ctx);
        let owner: Option<AccessKey> = match access_key.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => Some(acting_for(&g.m, &g.caller, Some(a)).await?),
            None if g.caller.role.is_admin() => None,
            None => Some(g.caller.access_key.clone()),
        };
        let statuses = parse_statuses::<SessionStatus>(status.as_deref())?;
        let mut sessions = g.m.store.list_sessions(&SessionFilter { access_key: owner, statuses, limit: None }).await?;
        if let Some(d) = domain_name.as_deref().filter(|d| !d.is_empty()) {
            sessions.retain(|s| s.domain == d);
        }
        if group_id.is_some() {
            // Groups have no ids here yet: no session belongs to a group named by id.
            sessions.clear();
        }
        let order = order.or_else(|| Some("-created_at".into()));
        let (page, total_count) = paginate(sessions, filter.as_deref(), order.as_deref(), limit, offset)?;
        let mut items = Vec::with_capacity(page.len());
        for s in page {
            let kernels = g.m.store.kernels(s.id).await?;
            items.push(ComputeSession { s, kernels });
        }
        Ok(Some(ComputeSessionList { items, total_count }))
    }

    /// One agent (admins only).
    async fn agent(&self, ctx: &Context<'_>, agent_id: String) -> GResult<Option<Agent>> {
        let g = gql(ctx);
        require_admin(g)?;
        Ok(g.m.store.agent(&AgentId::from(agent_id.as_str())).await?.map(Agent))
    }

    /// Agents (admins only), legacy unpaginated form.
    async fn agents(
        &self,
        ctx: &Context<'_>,
        scaling_group: Option<String>,
        status: Option<String>,
    ) -> GResult<Option<Vec<Agent>>> {
        let agents = agents_matching(gql(ctx), status.as_deref(), scaling_group.as_deref()).await?;
        Ok(Some(agents.into_iter().map(Agent).collect()))
    }

    /// A page of agents (admins only).
    #[allow(clippy::too_many_arguments)]
    async fn agent_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        scaling_group: Option<String>,
        status: Option<String>,
    ) -> GResult<Option<AgentList>> {
        let agents = agents_matching(gql(ctx), status.as_deref(), scaling_group.as_deref()).await?;
        let (page, total_count) = paginate(agents, filter.as_deref(), order.as_deref(), limit, offset)?;
        Ok(Some(AgentList { items: page.into_iter().map(Agent).collect(), total_count }))
    }

    /// One keypair: the caller's own by default; another's for admins.
    async fn keypair(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        access_key: Option<String>,
    ) -> GResult<Option<KeyPairGql>> {
        let _ = domain_name;
        let g = gql(ctx);
        let ak = acting_for(&g.m, &g.caller, access_key.as_deref()).await?;
        Ok(g.m.store.keypair(&ak).await?.map(|k| KeyPairGql::new(k, &g.caller)))
    }

    /// Keypairs (admins only), legacy unpaginated form.
    async fn keypairs(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        email: Option<String>,
        is_active: Option<bool>,
    ) -> GResult<Option<Vec<KeyPairGql>>> {
        let _ = domain_name;
        Ok(Some(keypairs_matching(gql(ctx), email.as_deref(), is_active).await?))
    }

    /// A page of keypairs (admins only).
    #[allow(clippy::too_many_arguments)]
    async fn keypair_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        email: Option<String>,
        is_active: Option<bool>,
    ) -> GResult<Option<KeyPairList>> {
        let _ = domain_name;
        let keypairs = keypairs_matching(gql(ctx), email.as_deref(), is_active).await?;
        let (items, total_count) = paginate(keypairs, filter.as_deref(), order.as_deref(), limit, offset)?;
        Ok(Some(KeyPairList { items, total_count }))
    }

    /// The folders the caller (or, for admins, the keypair `access_key`) may use. Groups have no ids here:
    /// `group_id` keeps user folders only.
    #[allow(clippy::too_many_arguments)]
    async fn vfolder_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<Uuid>,
        access_key: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        let mut list = vfolders(gql(ctx), FolderScope::All, access_key.as_deref(), page).await?;
        if let Some(d) = domain_name.as_deref().filter(|d| !d.is_empty()) {
            let before = list.items.len();
            list.items.retain(|f| match &f.0.folder.owner {
                VFolderOwner::Group { domain, .. } => domain == d,
                VFolderOwner::User { .. } => true,
            });
            list.total_count -= (before - list.items.len()) as i32;
        }
        if group_id.is_some() {
            let before = list.items.len();
            list.items.retain(|f| matches!(f.0.folder.owner, VFolderOwner::User { .. }));
            list.total_count -= (before - list.items.len()) as i32;
        }
        Ok(Some(list))
    }

    /// The caller's own folders.
    async fn vfolder_own_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        vfolders(gql(ctx), FolderScope::Own, None, page).await.map(Some)
    }

    /// Other users' folders shared with the caller.
    async fn vfolder_invited_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        vfolders(gql(ctx), FolderScope::Invited, None, page).await.map(Some)
    }

    /// Project (group) folders the caller may use.
    async fn vfolder_project_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        vfolders(gql(ctx), FolderScope::Project, None, page).await.map(Some)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------------------

/// The body the client sends.
#[derive(Debug, Deserialize)]
struct GqlBody {
    query: String,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

async fn execute(schema: &GqlSchema, m: Arc<Manager>, caller: &Caller, body: GqlBody) -> async_graphql::Response {
    let mut req = async_graphql::Request::new(body.query);
    if let Some(v) = body.variables.filter(|v| !v.is_null()) {
        req = req.variables(Variables::from_json(v));
    }
    if let Some(op) = body.operation_name {
        req = req.operation_name(op);
    }
    schema.execute(req.data(Gql { m, caller: caller.keypair.clone() })).await
}

/// `POST /admin/gql` and `POST /admin/graphql`.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = m.config.max_body_bytes;
    let auth = authenticated(m.clone());
    let with_m = warp::any().map(move || m.clone());
    let schema = schema();
    let with_schema = warp::any().map(move || schema.clone());

    let gql = warp::path!("admin" / "gql")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(with_schema.clone())
        .and(json_object::<GqlBody>(limit))
        .then(|caller: Caller, m: Arc<Manager>, schema: GqlSchema, body: GqlBody| async move {
            let resp = execute(&schema, m, &caller, body).await;
            caller.decorate(json_reply(StatusCode::OK, &resp))
        });

    let legacy = warp::path!("admin" / "graphql")
        .and(warp::post())
        .and(auth)
        .and(with_m)
        .and(with_schema)
        .and(json_object::<GqlBody>(limit))
        .then(|caller: Caller, m: Arc<Manager>, schema: GqlSchema, body: GqlBody| async move {
            let resp = execute(&schema, m, &caller, body).await;
            let reply = if resp.errors.is_empty() {
                json_reply(StatusCode::OK, &resp.data)
            } else {
                let problem = serde_json::json!({
                    "type": format!("{PROBLEM_BASE}graphql-error"),
                    "title": "GraphQL-generated error",
                    "msg": resp.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "),
                    "data": resp.errors,
                });
                let mut r = json_reply(StatusCode::BAD_REQUEST, &problem);
                r.headers_mut()
                    .insert("content-type", warp::http::HeaderValue::from_static("application/problem+json"));
                r
            };
            caller.decorate(reply)
        });

    gql.or(legacy).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rec(Vec<(&'static str, Val)>);

    impl Attrs for Rec {
        fn attr(&self, name: &str) -> Option<Val> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        }
    }

    fn rec(name: &str, n: f64) -> Rec {
        Rec(vec![("name", name.into()), ("n", n.into()), ("tag", Val::Null)])
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
    fn order_and_pagination() {
        let items = vec![rec("b", 2.0), rec("a", 1.0), rec("c", 3.0)];
        let (page, total) = paginate(items, None, Some("-n"), 2, 0).unwrap();
        assert_eq!(total, 3);
        let names: Vec<_> = page.iter().map(|r| r.attr("name").unwrap()).collect();
        assert_eq!(names, vec![Val::from("c"), Val::from("b")]);
        let items = vec![rec("b", 2.0), rec("a", 1.0), rec("c", 3.0)];
        let (page, total) = paginate(items, Some("n > 1"), Some("name asc"), 10, 1).unwrap();
        assert_eq!(total, 2);
        assert_eq!(page[0].attr("name").unwrap(), Val::from("c"));
        assert!(paginate(vec![rec("a", 1.0)], None, Some("bogus"), 1, 0).is_err());
    }
}
