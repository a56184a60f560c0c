//! Hand-written, scannerless recursive-descent parser for search filters and order_by clauses.
//!
//! The grammar is in the [`super`] module docs. Design points:
//!
//! * Linear time: every character is looked at a bounded number of times (keyword look-ahead
//!   scans at most six characters), so a ~1 MB filter is cheap.
//! * Never panics: all slicing goes through `str::get` at positions that are char boundaries by
//!   construction, and parenthesis nesting is capped at [`MAX_DEPTH`] so recursion is bounded.
//! * Syntax errors say where (`at position N`, a 0-based character offset) and what was found;
//!   semantic errors (unknown key, wrong operator, wrong value type) follow MLflow's wording.

use std::fmt::Display;

use super::{Attribute, Comparison, DatasetField, Expr, Field, Op, OrderBy, SearchEntity, Value};
use crate::error::{Error, Result};
use crate::validate::truncate_for_message;

/// Deepest nesting of parentheses accepted in a filter.
const MAX_DEPTH: usize = 100;
/// Longest filter accepted, in bytes: room for an `IN` list of [`MAX_LIST_VALUES`] run ids.
pub const MAX_FILTER_BYTES: usize = 512 * 1024;
/// Comparisons in one filter, all `AND`/`OR` terms together. Each becomes a SQL condition (a
/// subquery for metrics, params and tags); SQLite refuses expressions nested 1,000 deep, which a
/// flat chain of 3,000 `OR`s is, and the planner's cost grows with every term.
pub const MAX_COMPARISONS: usize = 200;
/// Values in the `IN` lists of one filter, all lists together. Each is a bound SQL
/// parameter, and SQLite takes at most 32,766 per statement (PostgreSQL 65,535); the rest of
/// that room is for the experiment ids and the other conditions.
pub const MAX_LIST_VALUES: usize = 10_000;
/// `order_by` clauses in one search: each metric, param or tag key is a join, and SQLite
/// joins at most 64 tables.
pub const MAX_ORDER_BY_KEYS: usize = 16;
/// Experiment ids in one search: bound SQL parameters, like [`MAX_LIST_VALUES`].
pub const MAX_EXPERIMENT_IDS: usize = 10_000;
/// Longest piece of the input quoted back as "found ..." in a syntax error.
const SNIPPET_CHARS: usize = 40;

/// Parses a filter string. Empty or whitespace-only input means "no filter" (`None`).
pub fn parse_filter(entity: SearchEntity, input: &str) -> Result<Option<Expr>> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    if input.len() > MAX_FILTER_BYTES {
        return Err(Error::invalid(format!(
            "Invalid filter: it is {} bytes long; the limit is {MAX_FILTER_BYTES}",
            input.len()
        )));
    }
    let mut p = Parser::new(entity, input, Mode::Filter);
    let expr = p.or_expr(0, None)?;
    p.skip_ws();
    if p.at_end() {
        return Ok(Some(expr));
    }
    if p.peek() == Some(')') {
        return Err(p.syntax(p.pos, "unexpected ')' without a matching '('"));
    }
    Err(p.syntax(
        p.pos,
        format!(
            "expected AND, OR or the end of the filter, found {}",
            p.found(p.pos)
        ),
    ))
}

/// Parses one order_by clause: `<identifier> [ASC|DESC]` (default ascending).
pub fn parse_order_by(entity: SearchEntity, input: &str) -> Result<OrderBy> {
    let mut p = Parser::new(entity, input, Mode::OrderBy);
    p.skip_ws();
    if p.at_end() {
        return Err(Error::invalid(format!(
            "Invalid order_by clause '{}': it is empty; expected '<key> [ASC|DESC]'",
            q(input)
        )));
    }
    let ident = p.identifier()?;
    let field = resolve_order_key(entity, &ident)?;
    p.skip_ws();
    let mut ascending = true;
    if !p.at_end() {
        let at = p.pos;
        match p.peek_keyword() {
            Some((Kw::Asc, len)) => p.pos += len,
            Some((Kw::Desc, len)) => {
                p.pos += len;
                ascending = false;
            }
            _ => {
                return Err(Error::invalid(format!(
                    "Invalid ordering key in order_by clause '{}' at position {}: expected ASC or \
                     DESC after '{}', found {}",
                    q(input),
                    p.char_pos(at),
                    q(ident.raw),
                    p.found(at)
                )));
            }
        }
        p.skip_ws();
        if !p.at_end() {
            return Err(p.syntax(
                p.pos,
                format!(
                    "expected the end of the clause after the direction, found {} \
                     (give one key per order_by entry)",
                    p.found(p.pos)
                ),
            ));
        }
    }
    Ok(OrderBy { field, ascending })
}

// ---------------------------------------------------------------------------------------------
// Scanner / parser
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Filter,
    OrderBy,
}

impl Mode {
    fn noun(self) -> &'static str {
        match self {
            Mode::Filter => "filter",
            Mode::OrderBy => "order_by clause",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    Like,
    ILike,
    Asc,
    Desc,
}

impl Kw {
    /// Keywords that can never start a comparison (unquoted).
    fn reserved(self) -> bool {
        !matches!(self, Kw::Asc | Kw::Desc)
    }
}

/// An identifier as written: optional entity prefix and the key (quotes already removed).
#[derive(Debug)]
struct Ident<'a> {
    prefix: Option<String>,
    key: String,
    /// The identifier's source text, for messages.
    raw: &'a str,
}

struct Parser<'a> {
    entity: SearchEntity,
    src: &'a str,
    /// Byte offset; always on a char boundary.
    pos: usize,
    mode: Mode,
    /// Comparisons read so far, against [`MAX_COMPARISONS`].
    comparisons: usize,
    /// `IN` list values read so far, against [`MAX_LIST_VALUES`].
    list_values: usize,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_op_char(c: char) -> bool {
    matches!(c, '<' | '>' | '=' | '!')
}

/// Shortens user input quoted in a message.
fn q(s: &str) -> String {
    truncate_for_message(s)
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Like => "LIKE",
        Op::ILike => "ILIKE",
        Op::In => "IN",
        Op::NotIn => "NOT IN",
        Op::IsNull => "IS NULL",
        Op::IsNotNull => "IS NOT NULL",
    }
}

const ALL_OPS: [Op; 12] = [
    Op::Eq,
    Op::Ne,
    Op::Lt,
    Op::Le,
    Op::Gt,
    Op::Ge,
    Op::Like,
    Op::ILike,
    Op::In,
    Op::NotIn,
    Op::IsNull,
    Op::IsNotNull,
];

fn push_flat(items: &mut Vec<Expr>, expr: Expr, or: bool) {
    match expr {
        Expr::Or(inner) if or => items.extend(inner),
        Expr::And(inner) if !or => items.extend(inner),
        other => items.push(other),
    }
}

fn finish(mut items: Vec<Expr>, or: bool) -> Expr {
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    if or {
        Expr::Or(items)
    } else {
        Expr::And(items)
    }
}

/// Parses an unquoted numeric literal: `[+-] digits [. digits] [(e|E) [+-] digits]` (either
/// side of the dot may be empty, not both). Rejects `inf`, `nan`, hex and out-of-range values.
fn parse_number(raw: &str) -> Option<f64> {
    let b = raw.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_end = digits_from(i);
    let mut digits = int_end - i;
    i = int_end;
    if b.get(i) == Some(&b'.') {
        let frac_end = digits_from(i + 1);
        digits += frac_end - (i + 1);
        i = frac_end;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_end = digits_from(i);
        if exp_end == i {
            return None;
        }
        i = exp_end;
    }
    if i != b.len() {
        return None;
    }
    raw.parse::<f64>().ok().filter(|n| n.is_finite())
}

impl<'a> Parser<'a> {
    fn new(entity: SearchEntity, src: &'a str, mode: Mode) -> Self {
        Parser {
            entity,
            src,
            pos: 0,
            mode,
            comparisons: 0,
            list_values: 0,
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or("")
    }

    /// 0-based character offset of a byte offset, for messages.
    fn char_pos(&self, byte: usize) -> usize {
        self.src.get(..byte).map_or(byte, |s| s.chars().count())
    }

    fn syntax(&self, at: usize, detail: impl Display) -> Error {
        Error::invalid(format!(
            "Invalid {} '{}' at position {}: {}",
            self.mode.noun(),
            q(self.src),
            self.char_pos(at),
            detail
        ))
    }

    /// A short, quoted description of the token at `at`, for "found ..." in messages.
    fn found(&self, at: usize) -> String {
        let rest = self.src.get(at..).unwrap_or("");
        let Some(first) = rest.chars().next() else {
            return "the end of the input".to_owned();
        };
        let mut chars: Vec<char> = if matches!(first, '(' | ')' | ',') {
            vec![first]
        } else if is_op_char(first) {
            rest.chars()
                .take_while(|c| is_op_char(*c))
                .take(SNIPPET_CHARS + 1)
                .collect()
        } else {
            rest.chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | ','))
                .take(SNIPPET_CHARS + 1)
                .collect()
        };
        let ellipsis = if chars.len() > SNIPPET_CHARS {
            chars.truncate(SNIPPET_CHARS);
            "..."
        } else {
            ""
        };
        let text: String = chars.into_iter().collect();
        format!("'{text}{ellipsis}'")
    }

    /// The keyword at the current position (no whitespace skipping), with its byte length.
    /// Looks at no more than six characters, so repeated look-ahead stays linear.
    fn peek_keyword(&self) -> Option<(Kw, usize)> {
        let rest = self.rest();
        let mut len = 0;
        for (i, c) in rest.chars().enumerate() {
            if !is_ident_char(c) {
                break;
            }
            if i >= 5 {
                return None;
            }
            len += c.len_utf8();
        }
        let word = rest.get(..len)?;
        let kw = [
            ("AND", Kw::And),
            ("OR", Kw::Or),
            ("NOT", Kw::Not),
            ("IN", Kw::In),
            ("IS", Kw::Is),
            ("NULL", Kw::Null),
            ("LIKE", Kw::Like),
            ("ILIKE", Kw::ILike),
            ("ASC", Kw::Asc),
            ("DESC", Kw::Desc),
        ]
        .into_iter()
        .find(|(text, _)| word.eq_ignore_ascii_case(text))?
        .1;
        Some((kw, len))
    }

    /// Skips whitespace, then consumes `kw` if it is next.
    fn eat_keyword(&mut self, kw: Kw) -> bool {
        self.skip_ws();
        match self.peek_keyword() {
            Some((k, len)) if k == kw => {
                self.pos += len;
                true
            }
            _ => false,
        }
    }

    // ----- expressions -----

    fn or_expr(&mut self, depth: usize, after: Option<&'static str>) -> Result<Expr> {
        let mut items = Vec::new();
        let first = self.and_expr(depth, after)?;
        push_flat(&mut items, first, true);
        loop {
            self.skip_ws();
            match self.peek_keyword() {
                Some((Kw::Or, len)) => {
                    self.pos += len;
                    let next = self.and_expr(depth, Some("OR"))?;
                    push_flat(&mut items, next, true);
                }
                _ => break,
            }
        }
        Ok(finish(items, true))
    }

    fn and_expr(&mut self, depth: usize, after: Option<&'static str>) -> Result<Expr> {
        let mut items = Vec::new();
        let first = self.primary(depth, after)?;
        push_flat(&mut items, first, false);
        loop {
            self.skip_ws();
            match self.peek_keyword() {
                Some((Kw::And, len)) => {
                    self.pos += len;
                    let next = self.primary(depth, Some("AND"))?;
                    push_flat(&mut items, next, false);
                }
                _ => break,
            }
        }
        Ok(finish(items, false))
    }

    fn primary(&mut self, depth: usize, after: Option<&'static str>) -> Result<Expr> {
        self.skip_ws();
        let start = self.pos;
        let context = || after.map(|a| format!(" after {a}")).unwrap_or_default();
        match self.peek() {
            None => Err(self.syntax(
                start,
                format!(
                    "expected a comparison{}, found the end of the input",
                    context()
                ),
            )),
            Some('(') => {
                if depth >= MAX_DEPTH {
                    return Err(self.syntax(
                        start,
                        format!("parentheses are nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                self.bump();
                let inner = self.or_expr(depth + 1, Some("'('"))?;
                self.skip_ws();
                if self.peek() == Some(')') {
                    self.bump();
                    Ok(inner)
                } else {
                    Err(self.syntax(
                        self.pos,
                        format!(
                            "expected ')' to close the '(' at position {}, found {}",
                            self.char_pos(start),
                            self.found(self.pos)
                        ),
                    ))
                }
            }
            Some(')') => Err(self.syntax(
                start,
                format!("expected a comparison{}, found ')'", context()),
            )),
            Some(_) => {
                if let Some((kw, len)) = self.peek_keyword()
                    && kw.reserved()
                    && self.src.get(start + len..).and_then(|r| r.chars().next()) != Some('.')
                {
                    return Err(self.syntax(
                        start,
                        format!(
                            "expected a comparison{}, found the keyword '{}'",
                            context(),
                            self.slice(start, start + len)
                        ),
                    ));
                }
                self.comparison()
            }
        }
    }

    fn comparison(&mut self) -> Result<Expr> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(Error::invalid(format!(
                "Invalid filter: it has more than {MAX_COMPARISONS} comparisons, the limit; \
                 use IN lists or several searches"
            )));
        }
        let ident = self.identifier()?;
        let ident_end = self.pos;
        let key = resolve_filter_key(self.entity, &ident)?;
        let op = self.operator(&ident, ident_end)?;
        if !key.kind.allows(op) {
            return Err(Error::invalid(format!(
                "Invalid comparator '{}' for {}; valid comparators are: {}",
                op_text(op),
                key.describe(),
                key.kind.ops_list()
            )));
        }
        let value = match op {
            Op::IsNull | Op::IsNotNull => Value::Null,
            Op::In | Op::NotIn => Value::List(self.list(op)?),
            _ => self.scalar(&key, op)?,
        };
        Ok(Expr::Compare(Comparison {
            field: key.field,
            op,
            value,
        }))
    }

    fn operator(&mut self, ident: &Ident<'_>, ident_end: usize) -> Result<Op> {
        self.skip_ws();
        let at = self.pos;
        if let Some((kw, len)) = self.peek_keyword() {
            match kw {
                Kw::Like => {
                    self.pos += len;
                    return Ok(Op::Like);
                }
                Kw::ILike => {
                    self.pos += len;
                    return Ok(Op::ILike);
                }
                Kw::In => {
                    self.pos += len;
                    return Ok(Op::In);
                }
                Kw::Not => {
                    self.pos += len;
                    if self.eat_keyword(Kw::In) {
                        return Ok(Op::NotIn);
                    }
                    return Err(self.syntax(
                        self.pos,
                        format!(
                            "expected IN after NOT (only NOT IN and IS NOT NULL are supported), \
                             found {}",
                            self.found(self.pos)
                        ),
                    ));
                }
                Kw::Is => {
                    self.pos += len;
                    if self.eat_keyword(Kw::Null) {
                        return Ok(Op::IsNull);
                    }
                    if self.eat_keyword(Kw::Not) {
                        if self.eat_keyword(Kw::Null) {
                            return Ok(Op::IsNotNull);
                        }
                        return Err(self.syntax(
                            self.pos,
                            format!("expected NULL after IS NOT, found {}", self.found(self.pos)),
                        ));
                    }
                    return Err(self.syntax(
                        self.pos,
                        format!(
                            "expected NULL or NOT NULL after IS, found {}",
                            self.found(self.pos)
                        ),
                    ));
                }
                _ => {}
            }
        }
        let rest = self.rest();
        let symbols = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("!=", Op::Ne),
            ("<>", Op::Ne),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        if let Some((text, op)) = symbols.into_iter().find(|(t, _)| rest.starts_with(t)) {
            self.pos += text.len();
            return Ok(op);
        }
        let hint = match self.peek() {
            Some(c) if at == ident_end && !is_op_char(c) => {
                "; keys containing special characters must be quoted with backticks, \
                 e.g. metrics.`my-key`"
            }
            _ => "",
        };
        Err(self.syntax(
            at,
            format!(
                "expected an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL, \
                 IS NOT NULL) after '{}', found {}{hint}",
                q(ident.raw),
                self.found(at)
            ),
        ))
    }

    fn scalar(&mut self, key: &Key, op: Op) -> Result<Value> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            None => Err(self.syntax(
                at,
                format!(
                    "expected a value after '{}', found the end of the input",
                    op_text(op)
                ),
            )),
            Some(c @ ('\'' | '"')) => {
                let s = self.quoted(c, "string")?;
                match key.kind {
                    Kind::Str { .. } => Ok(Value::String(s)),
                    Kind::Numeric => Err(key.numeric_expected(self.slice(at, self.pos))),
                }
            }
            Some('(') => Err(self.syntax(
                at,
                format!(
                    "a parenthesised list is only allowed after IN or NOT IN, not after '{}'",
                    op_text(op)
                ),
            )),
            Some(c)
                if c.is_ascii_digit()
                    || (matches!(c, '-' | '+' | '.')
                        && self
                            .peek_second()
                            .is_some_and(|n| n.is_ascii_digit() || n == '.')) =>
            {
                let raw = self.number_text();
                match key.kind {
                    Kind::Numeric => parse_number(raw).map(Value::Number).ok_or_else(|| {
                        self.syntax(at, format!("'{}' is not a valid number", q(raw)))
                    }),
                    Kind::Str { .. } => Err(key.string_expected(raw)),
                }
            }
            Some(c) if is_ident_char(c) => {
                let raw = self.found(at);
                let raw = raw.trim_matches('\'');
                Err(match key.kind {
                    Kind::Numeric => key.numeric_expected(raw),
                    Kind::Str { .. } => key.string_expected(raw),
                })
            }
            Some(_) => Err(self.syntax(
                at,
                format!(
                    "expected a value after '{}', found {}",
                    op_text(op),
                    self.found(at)
                ),
            )),
        }
    }

    /// Consumes the text of an unquoted number (validated later by [`parse_number`]).
    fn number_text(&mut self) -> &'a str {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        while let Some(c) = self.peek() {
            if !(is_ident_char(c) || c == '.') {
                break;
            }
            self.bump();
            if matches!(c, 'e' | 'E') && matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
        }
        self.slice(start, self.pos)
    }

    /// `( 'a', "b", ... )` after IN / NOT IN: one or more quoted strings.
    fn list(&mut self, op: Op) -> Result<Vec<String>> {
        self.skip_ws();
        let open = self.pos;
        if self.peek() != Some('(') {
            return Err(self.syntax(
                open,
                format!(
                    "expected '(' and a list of quoted strings after {}, found {}",
                    op_text(op),
                    self.found(open)
                ),
            ));
        }
        self.bump();
        let unclosed = |p: &Self| {
            p.syntax(
                p.pos,
                format!(
                    "the list opened at position {} is not closed with ')'",
                    p.char_pos(open)
                ),
            )
        };
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            let at = self.pos;
            match self.peek() {
                Some(c @ ('\'' | '"')) => {
                    self.list_values += 1;
                    if self.list_values > MAX_LIST_VALUES {
                        return Err(Error::invalid(format!(
                            "Invalid filter: its IN lists have more than {MAX_LIST_VALUES} \
                             values together, the limit; split the search"
                        )));
                    }
                    items.push(self.quoted(c, "string")?);
                }
                Some(')') if items.is_empty() => {
                    return Err(self.syntax(
                        at,
                        format!(
                            "the list after {} is empty; it needs at least one quoted string",
                            op_text(op)
                        ),
                    ));
                }
                None => return Err(unclosed(self)),
                Some(_) => {
                    return Err(self.syntax(
                        at,
                        format!(
                            "expected a quoted string in the list after {}, found {}",
                            op_text(op),
                            self.found(at)
                        ),
                    ));
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(')') => {
                    self.bump();
                    return Ok(items);
                }
                None => return Err(unclosed(self)),
                Some(_) => {
                    return Err(self.syntax(
                        self.pos,
                        format!(
                            "expected ',' or ')' in the list, found {}",
                            self.found(self.pos)
                        ),
                    ));
                }
            }
        }
    }

    /// A quoted string or identifier starting at the current position (which holds `quote`).
    /// A doubled quote stands for one quote; in `'` / `"` strings `\<quote>` is a quote and
    /// `\\` a backslash (any other backslash is kept as is, e.g. for LIKE escapes).
    fn quoted(&mut self, quote: char, what: &str) -> Result<String> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(
                        self.syntax(start, format!("unterminated {what}: no closing {quote}"))
                    );
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        out.push(quote);
                    } else {
                        return Ok(out);
                    }
                }
                Some('\\') if quote != '`' => match self.peek() {
                    Some(n) if n == quote || n == '\\' => {
                        self.bump();
                        out.push(n);
                    }
                    _ => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// One part of an identifier: `` `quoted` ``, `"quoted"` or a bare word (no dots).
    fn segment(&mut self) -> Result<String> {
        match self.peek() {
            Some(c @ ('`' | '"')) => self.quoted(c, "quoted identifier"),
            Some(c) if is_ident_char(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_ident_char) {
                    self.bump();
                }
                Ok(self.slice(start, self.pos).to_owned())
            }
            _ => Err(self.syntax(
                self.pos,
                format!(
                    "expected a key such as metrics.<key>, params.<key>, tags.<key> or an \
                     attribute name, found {}",
                    self.found(self.pos)
                ),
            )),
        }
    }

    /// `[entity "."] key`, split on the first dot; an unquoted key may itself contain dots.
    fn identifier(&mut self) -> Result<Ident<'a>> {
        let start = self.pos;
        let first = self.segment()?;
        if self.peek() != Some('.') {
            if first.is_empty() {
                return Err(self.syntax(start, "the key is empty"));
            }
            return Ok(Ident {
                prefix: None,
                key: first,
                raw: self.slice(start, self.pos),
            });
        }
        self.bump();
        let key_at = self.pos;
        let key = match self.peek() {
            Some(c @ ('`' | '"')) => {
                let key = self.quoted(c, "quoted key")?;
                if let Some(c) = self.peek()
                    && (is_ident_char(c) || matches!(c, '.' | '`' | '"' | '\''))
                {
                    return Err(self.syntax(
                        self.pos,
                        format!(
                            "unexpected {} right after a quoted key; quote the whole key",
                            self.found(self.pos)
                        ),
                    ));
                }
                key
            }
            Some(c) if is_ident_char(c) => {
                while self.peek().is_some_and(|c| is_ident_char(c) || c == '.') {
                    self.bump();
                }
                self.slice(key_at, self.pos).to_owned()
            }
            _ => {
                return Err(self.syntax(
                    key_at,
                    format!(
                        "expected a key after '{}.', found {}; keys containing special \
                         characters must be quoted with backticks, e.g. metrics.`my-key`",
                        q(&first),
                        self.found(key_at)
                    ),
                ));
            }
        };
        if key.is_empty() {
            return Err(self.syntax(key_at, "the key is empty"));
        }
        Ok(Ident {
            prefix: Some(first),
            key,
            raw: self.slice(start, self.pos),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Per-entity keys
// ---------------------------------------------------------------------------------------------

/// What a key accepts: a number with comparison operators, or a quoted string with `=`/`!=`
/// plus the listed extras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Numeric,
    Str { like: bool, list: bool, null: bool },
}

const NUMERIC: Kind = Kind::Numeric;
/// `= != LIKE ILIKE`
const STR: Kind = Kind::Str {
    like: true,
    list: false,
    null: false,
};
/// `= != LIKE ILIKE IN NOT IN`
const STR_IN: Kind = Kind::Str {
    like: true,
    list: true,
    null: false,
};
/// `= != LIKE ILIKE IS NULL IS NOT NULL`
const STR_NULL: Kind = Kind::Str {
    like: true,
    list: false,
    null: true,
};
/// `= != IN NOT IN`
const ID_IN: Kind = Kind::Str {
    like: false,
    list: true,
    null: false,
};

impl Kind {
    fn allows(self, op: Op) -> bool {
        match (self, op) {
            (_, Op::Eq | Op::Ne) => true,
            (Kind::Numeric, Op::Lt | Op::Le | Op::Gt | Op::Ge) => true,
            (Kind::Str { like, .. }, Op::Like | Op::ILike) => like,
            (Kind::Str { list, .. }, Op::In | Op::NotIn) => list,
            (Kind::Str { null, .. }, Op::IsNull | Op::IsNotNull) => null,
            _ => false,
        }
    }

    fn ops_list(self) -> String {
        ALL_OPS
            .into_iter()
            .filter(|op| self.allows(*op))
            .map(op_text)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl Prefix {
    /// Entity prefixes are matched case-insensitively.
    fn parse(s: &str) -> Option<Self> {
        const TABLE: [(&str, Prefix); 14] = [
            ("metric", Prefix::Metric),
            ("metrics", Prefix::Metric),
            ("param", Prefix::Param),
            ("params", Prefix::Param),
            ("parameter", Prefix::Param),
            ("parameters", Prefix::Param),
            ("tag", Prefix::Tag),
            ("tags", Prefix::Tag),
            ("attribute", Prefix::Attribute),
            ("attributes", Prefix::Attribute),
            ("attr", Prefix::Attribute),
            ("run", Prefix::Attribute),
            ("dataset", Prefix::Dataset),
            ("datasets", Prefix::Dataset),
        ];
        TABLE
            .into_iter()
            .find(|(name, _)| s.eq_ignore_ascii_case(name))
            .map(|(_, p)| p)
    }

    fn noun(self) -> &'static str {
        match self {
            Prefix::Metric => "metric",
            Prefix::Param => "param",
            Prefix::Tag => "tag",
            Prefix::Attribute => "attribute",
            Prefix::Dataset => "dataset",
        }
    }

    fn spelled(self) -> &'static str {
        match self {
            Prefix::Metric => "metrics.<key>",
            Prefix::Param => "params.<key>",
            Prefix::Tag => "tags.<key>",
            Prefix::Attribute => "attributes.<key> (or a bare attribute name)",
            Prefix::Dataset => "datasets.<key>",
        }
    }
}

fn entity_name(entity: SearchEntity) -> &'static str {
    match entity {
        SearchEntity::Runs => "runs",
        SearchEntity::Experiments => "experiments",
        SearchEntity::RegisteredModels => "registered models",
        SearchEntity::ModelVersions => "model versions",
        SearchEntity::LoggedModels => "logged models",
    }
}

/// An attribute and the spellings that select it (the first is canonical).
struct AttrSpec {
    names: &'static [&'static str],
    attr: Attribute,
    kind: Kind,
}

const fn spec(names: &'static [&'static str], attr: Attribute, kind: Kind) -> AttrSpec {
    AttrSpec { names, attr, kind }
}

/// Runs: both filter and order_by keys.
const RUN_ATTRS: &[AttrSpec] = &[
    spec(&["run_id"], Attribute::RunId, STR_IN),
    spec(
        &["run_name", "Run name", "run name", "Run Name"],
        Attribute::RunName,
        STR,
    ),
    spec(&["status"], Attribute::Status, STR),
    spec(&["user_id"], Attribute::UserId, STR),
    spec(&["artifact_uri"], Attribute::ArtifactUri, STR),
    spec(
        &["start_time", "created", "Created"],
        Attribute::StartTime,
        NUMERIC,
    ),
    spec(&["end_time"], Attribute::EndTime, NUMERIC),
];

/// Experiments: both filter and order_by keys.
const EXPERIMENT_ATTRS: &[AttrSpec] = &[
    spec(&["name"], Attribute::Name, STR),
    spec(&["experiment_id"], Attribute::ExperimentId, ID_IN),
    spec(&["creation_time"], Attribute::CreationTime, NUMERIC),
    spec(&["last_update_time"], Attribute::LastUpdateTime, NUMERIC),
];

const REGISTERED_MODEL_FILTER_ATTRS: &[AttrSpec] = &[spec(&["name"], Attribute::Name, STR_IN)];

const REGISTERED_MODEL_ORDER_ATTRS: &[AttrSpec] = &[
    spec(&["name"], Attribute::Name, STR_IN),
    spec(
        &["timestamp", "creation_timestamp"],
        Attribute::CreationTime,
        NUMERIC,
    ),
    spec(
        &["last_updated_timestamp"],
        Attribute::LastUpdateTime,
        NUMERIC,
    ),
];

const MODEL_VERSION_FILTER_ATTRS: &[AttrSpec] = &[
    spec(&["name"], Attribute::Name, STR_IN),
    spec(&["run_id"], Attribute::RunId, STR_IN),
    spec(&["source_path"], Attribute::SourcePath, STR),
    spec(&["version_number"], Attribute::VersionNumber, NUMERIC),
];

const MODEL_VERSION_ORDER_ATTRS: &[AttrSpec] = &[
    spec(&["name"], Attribute::Name, STR_IN),
    spec(&["version_number"], Attribute::VersionNumber, NUMERIC),
    spec(&["creation_timestamp"], Attribute::CreationTime, NUMERIC),
    spec(
        &["last_updated_timestamp"],
        Attribute::LastUpdateTime,
        NUMERIC,
    ),
];

const LOGGED_MODEL_FILTER_ATTRS: &[AttrSpec] = &[
    spec(&["name"], Attribute::Name, STR_IN),
    spec(&["model_id"], Attribute::ModelId, STR_IN),
    spec(&["model_type"], Attribute::ModelType, STR_IN),
    spec(&["status"], Attribute::Status, STR_IN),
    spec(&["source_run_id"], Attribute::SourceRunId, STR_IN),
    spec(
        &["creation_time", "creation_timestamp"],
        Attribute::CreationTime,
        NUMERIC,
    ),
    spec(
        &["last_updated_time", "last_updated_timestamp"],
        Attribute::LastUpdateTime,
        NUMERIC,
    ),
];

const LOGGED_MODEL_ORDER_ATTRS: &[AttrSpec] = &[
    spec(&["name"], Attribute::Name, STR_IN),
    spec(&["model_id"], Attribute::ModelId, STR_IN),
    spec(
        &["creation_time", "creation_timestamp"],
        Attribute::CreationTime,
        NUMERIC,
    ),
    spec(
        &["last_updated_time", "last_updated_timestamp"],
        Attribute::LastUpdateTime,
        NUMERIC,
    ),
];

fn filter_attrs(entity: SearchEntity) -> &'static [AttrSpec] {
    match entity {
        SearchEntity::Runs => RUN_ATTRS,
        SearchEntity::Experiments => EXPERIMENT_ATTRS,
        SearchEntity::RegisteredModels => REGISTERED_MODEL_FILTER_ATTRS,
        SearchEntity::ModelVersions => MODEL_VERSION_FILTER_ATTRS,
        SearchEntity::LoggedModels => LOGGED_MODEL_FILTER_ATTRS,
    }
}

fn order_attrs(entity: SearchEntity) -> &'static [AttrSpec] {
    match entity {
        SearchEntity::Runs => RUN_ATTRS,
        SearchEntity::Experiments => EXPERIMENT_ATTRS,
        SearchEntity::RegisteredModels => REGISTERED_MODEL_ORDER_ATTRS,
        SearchEntity::ModelVersions => MODEL_VERSION_ORDER_ATTRS,
        SearchEntity::LoggedModels => LOGGED_MODEL_ORDER_ATTRS,
    }
}

fn filter_prefixes(entity: SearchEntity) -> &'static [Prefix] {
    match entity {
        SearchEntity::Runs => &[
            Prefix::Metric,
            Prefix::Param,
            Prefix::Tag,
            Prefix::Attribute,
            Prefix::Dataset,
        ],
        SearchEntity::Experiments
        | SearchEntity::RegisteredModels
        | SearchEntity::ModelVersions => &[Prefix::Tag, Prefix::Attribute],
        SearchEntity::LoggedModels => &[
            Prefix::Metric,
            Prefix::Param,
            Prefix::Tag,
            Prefix::Attribute,
        ],
    }
}

fn order_prefixes(entity: SearchEntity) -> &'static [Prefix] {
    match entity {
        SearchEntity::Runs => &[
            Prefix::Metric,
            Prefix::Param,
            Prefix::Tag,
            Prefix::Attribute,
        ],
        SearchEntity::LoggedModels => &[Prefix::Metric, Prefix::Attribute],
        SearchEntity::Experiments
        | SearchEntity::RegisteredModels
        | SearchEntity::ModelVersions => &[Prefix::Attribute],
    }
}

fn find_attr<'t>(table: &'t [AttrSpec], key: &str) -> Option<&'t AttrSpec> {
    table.iter().find(|s| s.names.contains(&key))
}

fn list_attr_names(table: &[AttrSpec]) -> String {
    table
        .iter()
        .flat_map(|s| s.names.iter())
        .map(|n| {
            if n.contains(' ') {
                format!("`{n}`")
            } else {
                (*n).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve_prefix(
    entity: SearchEntity,
    ident: &Ident<'_>,
    allowed: &[Prefix],
    what: &str,
) -> Result<Prefix> {
    let Some(written) = &ident.prefix else {
        return Ok(Prefix::Attribute);
    };
    let valid = || {
        allowed
            .iter()
            .map(|p| p.spelled())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Prefix::parse(written) {
        None => Err(Error::invalid(format!(
            "Invalid entity type '{}' in '{}'. Valid keys in {} {what} are: {}",
            q(written),
            q(ident.raw),
            entity_name(entity),
            valid()
        ))),
        Some(p) if !allowed.contains(&p) => Err(Error::invalid(format!(
            "{} {what} do not support {} keys ('{}'). Valid keys are: {}",
            capitalise(entity_name(entity)),
            p.noun(),
            q(ident.raw),
            valid()
        ))),
        Some(p) => Ok(p),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A resolved filter key.
struct Key {
    field: Field,
    kind: Kind,
    prefix: Prefix,
    /// The key as written (after unquoting), for messages.
    name: String,
}

impl Key {
    fn describe(&self) -> String {
        format!("{} '{}'", self.prefix.noun(), q(&self.name))
    }

    fn numeric_expected(&self, raw: &str) -> Error {
        Error::invalid(match self.prefix {
            Prefix::Metric => format!("Expected numeric value type for metric. Found {}", q(raw)),
            _ => format!(
                "Expected numeric value type for numeric attribute: {}. Found {}",
                q(&self.name),
                q(raw)
            ),
        })
    }

    fn string_expected(&self, raw: &str) -> Error {
        Error::invalid(match self.prefix {
            Prefix::Attribute => format!(
                "Expected a quoted string value for attribute '{}' (e.g. 'my-value'). Got value {}",
                q(&self.name),
                q(raw)
            ),
            Prefix::Dataset => format!(
                "Expected a quoted string value for dataset attributes (e.g. 'my-value'). Got \
                 value {}",
                q(raw)
            ),
            other => format!(
                "Expected a quoted string value for {} (e.g. 'my-value'). Got value {}",
                other.noun(),
                q(raw)
            ),
        })
    }
}

fn resolve_filter_key(entity: SearchEntity, ident: &Ident<'_>) -> Result<Key> {
    let prefix = resolve_prefix(entity, ident, filter_prefixes(entity), "filters")?;
    let name = ident.key.clone();
    let (field, kind) = match prefix {
        Prefix::Attribute => {
            let table = filter_attrs(entity);
            let spec = find_attr(table, &name).ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid attribute key '{}' specified. Valid keys for {} filters are: {}",
                    q(&name),
                    entity_name(entity),
                    list_attr_names(table)
                ))
            })?;
            (Field::Attribute(spec.attr), spec.kind)
        }
        Prefix::Metric => (Field::Metric(name.clone()), NUMERIC),
        Prefix::Param => {
            let kind = if entity == SearchEntity::Runs {
                STR_NULL
            } else {
                STR
            };
            (Field::Param(name.clone()), kind)
        }
        Prefix::Tag => {
            let kind = if matches!(entity, SearchEntity::Runs | SearchEntity::Experiments) {
                STR_NULL
            } else {
                STR
            };
            (Field::Tag(name.clone()), kind)
        }
        Prefix::Dataset => {
            let field = match name.as_str() {
                "name" => DatasetField::Name,
                "digest" => DatasetField::Digest,
                "context" => DatasetField::Context,
                _ => {
                    return Err(Error::invalid(format!(
                        "Invalid dataset key '{}' specified. Valid keys are: name, digest, context",
                        q(&name)
                    )));
                }
            };
            (Field::Dataset(field), STR_IN)
        }
    };
    Ok(Key {
        field,
        kind,
        prefix,
        name,
    })
}

fn resolve_order_key(entity: SearchEntity, ident: &Ident<'_>) -> Result<Field> {
    let prefix = resolve_prefix(entity, ident, order_prefixes(entity), "order_by clauses")?;
    let key = ident.key.clone();
    match prefix {
        Prefix::Attribute => {
            let table = order_attrs(entity);
            find_attr(table, &key)
                .map(|s| Field::Attribute(s.attr))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "Invalid order_by key '{}' specified. Valid keys for {} are: {}",
                        q(&key),
                        entity_name(entity),
                        list_attr_names(table)
                    ))
                })
        }
        Prefix::Metric => Ok(Field::Metric(key)),
        Prefix::Param => Ok(Field::Param(key)),
        Prefix::Tag => Ok(Field::Tag(key)),
        Prefix::Dataset => Err(Error::invalid(format!(
            "Cannot order {} by dataset keys ('{}')",
            entity_name(entity),
            q(ident.raw)
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use SearchEntity::{Experiments, LoggedModels, ModelVersions, RegisteredModels, Runs};
    use proptest::prelude::*;

    // ----- compact rendering of ASTs, so expectations read like the filters they come from -----

    fn render_field(f: &Field) -> String {
        match f {
            Field::Metric(k) => format!("metric:{k}"),
            Field::Param(k) => format!("param:{k}"),
            Field::Tag(k) => format!("tag:{k}"),
            Field::Attribute(a) => format!("attr:{a:?}"),
            Field::Dataset(d) => format!("dataset:{d:?}"),
        }
    }

    fn render(e: &Expr) -> String {
        match e {
            Expr::And(v) => format!(
                "and({})",
                v.iter().map(render).collect::<Vec<_>>().join("; ")
            ),
            Expr::Or(v) => format!(
                "or({})",
                v.iter().map(render).collect::<Vec<_>>().join("; ")
            ),
            Expr::Compare(c) => {
                let value = match &c.value {
                    Value::Number(n) => format!(" {n}"),
                    Value::String(s) => format!(" '{s}'"),
                    Value::List(l) => format!(
                        " [{}]",
                        l.iter()
                            .map(|s| format!("'{s}'"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    Value::Null => String::new(),
                };
                format!("{} {}{value}", render_field(&c.field), op_text(c.op))
            }
        }
    }

    fn render_order(o: &OrderBy) -> String {
        format!(
            "{} {}",
            render_field(&o.field),
            if o.ascending { "ASC" } else { "DESC" }
        )
    }

    fn message(e: Error) -> String {
        match e {
            Error::InvalidParameter(m) => m,
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    /// Parses `input` and compares the rendered AST with `expected`.
    fn check(entity: SearchEntity, input: &str, expected: &str) {
        match parse_filter(entity, input) {
            Ok(Some(expr)) => assert_eq!(render(&expr), expected, "filter: {input:?}"),
            Ok(None) => panic!("filter {input:?} parsed to None"),
            Err(e) => panic!("filter {input:?} failed: {}", message(e)),
        }
    }

    /// Asserts that `input` is rejected with a message containing `needle`.
    fn check_err(entity: SearchEntity, input: &str, needle: &str) {
        match parse_filter(entity, input) {
            Ok(v) => panic!("filter {input:?} should fail, got {v:?}"),
            Err(e) => {
                let m = message(e);
                assert!(
                    m.contains(needle),
                    "filter {input:?}: message {m:?} does not contain {needle:?}"
                );
            }
        }
    }

    fn check_order(entity: SearchEntity, input: &str, expected: &str) {
        match parse_order_by(entity, input) {
            Ok(o) => assert_eq!(render_order(&o), expected, "order_by: {input:?}"),
            Err(e) => panic!("order_by {input:?} failed: {}", message(e)),
        }
    }

    fn check_order_err(entity: SearchEntity, input: &str, needle: &str) {
        match parse_order_by(entity, input) {
            Ok(o) => panic!("order_by {input:?} should fail, got {o:?}"),
            Err(e) => {
                let m = message(e);
                assert!(
                    m.contains(needle),
                    "order_by {input:?}: message {m:?} does not contain {needle:?}"
                );
            }
        }
    }

    #[test]
    fn empty_filters_are_none() {
        for input in ["", " ", "\t\n  ", "\u{a0}"] {
            for entity in [
                Runs,
                Experiments,
                RegisteredModels,
                ModelVersions,
                LoggedModels,
            ] {
                assert_eq!(parse_filter(entity, input).ok(), Some(None), "{input:?}");
            }
        }
    }

    const VALID_RUNS: &[(&str, &str)] = &[
        // metrics: numbers and all comparison operators
        ("metrics.acc > 0.5", "metric:acc > 0.5"),
        ("metric.acc >= 1", "metric:acc >= 1"),
        ("metrics.acc < 1", "metric:acc < 1"),
        ("metrics.acc <= 1", "metric:acc <= 1"),
        ("metrics.acc = 1", "metric:acc = 1"),
        ("metrics.acc != -1.5e3", "metric:acc != -1500"),
        ("metrics.acc <> 2", "metric:acc != 2"),
        ("metrics.acc<=.5", "metric:acc <= 0.5"),
        ("metrics.acc>-.5", "metric:acc > -0.5"),
        ("metrics.acc > 5.", "metric:acc > 5"),
        ("metrics.acc > +3", "metric:acc > 3"),
        ("metrics.acc > 1E+2", "metric:acc > 100"),
        ("metrics.acc > 2e-1", "metric:acc > 0.2"),
        ("metrics.acc > 007", "metric:acc > 7"),
        // identifier quoting
        ("metrics.`val loss` < 1", "metric:val loss < 1"),
        ("metrics.\"val loss\" < 1", "metric:val loss < 1"),
        ("`metrics`.acc = 1", "metric:acc = 1"),
        ("`metrics`.`a.b` = 1", "metric:a.b = 1"),
        ("\"metrics\".\"a b\" = 1", "metric:a b = 1"),
        ("metrics.`a``b` = 1", "metric:a`b = 1"),
        ("metrics.`a\\b` = 1", "metric:a\\b = 1"),
        ("metrics.`train/loss` = 1", "metric:train/loss = 1"),
        ("METRICS.acc = 1", "metric:acc = 1"),
        ("metrics.ünï = 1", "metric:ünï = 1"),
        ("metrics.a.b.c = 1", "metric:a.b.c = 1"),
        ("metrics.1 = 1", "metric:1 = 1"),
        // params / tags
        ("params.lr = '0.01'", "param:lr = '0.01'"),
        ("param.lr = \"0.01\"", "param:lr = '0.01'"),
        ("parameter.lr = 'x'", "param:lr = 'x'"),
        ("parameters.lr = 'x'", "param:lr = 'x'"),
        ("params.lr != 'x'", "param:lr != 'x'"),
        ("params.lr LIKE '%1'", "param:lr LIKE '%1'"),
        ("params.lr like '%1'", "param:lr LIKE '%1'"),
        ("params.lr ilike '%A'", "param:lr ILIKE '%A'"),
        ("params.lr ILike '%A'", "param:lr ILIKE '%A'"),
        ("params.lr IS NULL", "param:lr IS NULL"),
        ("params.lr is not null", "param:lr IS NOT NULL"),
        ("params.lr Is  Not\tNull", "param:lr IS NOT NULL"),
        (
            "tags.mlflow.parentRunId = 'abc'",
            "tag:mlflow.parentRunId = 'abc'",
        ),
        ("tag.t = 'x'", "tag:t = 'x'"),
        ("tags.\"my tag\" = 'x'", "tag:my tag = 'x'"),
        ("tags.`my``tag` = 'x'", "tag:my`tag = 'x'"),
        ("tags.`mlflow.runName` = 'x'", "tag:mlflow.runName = 'x'"),
        ("tags.t IS NULL", "tag:t IS NULL"),
        ("tags.t IS NOT NULL", "tag:t IS NOT NULL"),
        // string escapes
        ("tags.t = 'it''s'", "tag:t = 'it's'"),
        ("tags.t = 'it\\'s'", "tag:t = 'it's'"),
        ("tags.t = \"say \"\"hi\"\"\"", "tag:t = 'say \"hi\"'"),
        ("tags.t = \"say \\\"hi\\\"\"", "tag:t = 'say \"hi\"'"),
        ("tags.t = \"it's\"", "tag:t = 'it's'"),
        ("tags.t = 'say \"hi\"'", "tag:t = 'say \"hi\"'"),
        ("tags.t = 'a\\\\b'", "tag:t = 'a\\b'"),
        ("tags.t = 'a\\nb'", "tag:t = 'a\\nb'"),
        ("tags.t LIKE '100\\%'", "tag:t LIKE '100\\%'"),
        ("tags.t = 'ends\\\\'", "tag:t = 'ends\\'"),
        ("tags.t = ''", "tag:t = ''"),
        ("tags.t = ''''", "tag:t = '''"),
        ("tags.t = 'ünïcødé ✓'", "tag:t = 'ünïcødé ✓'"),
        ("tags.t = 'a AND b OR (c)'", "tag:t = 'a AND b OR (c)'"),
        ("tags.t = 'multi\nline'", "tag:t = 'multi\nline'"),
        // string attributes
        ("run_name = 'x'", "attr:RunName = 'x'"),
        ("attributes.run_name = 'x'", "attr:RunName = 'x'"),
        ("attribute.status = 'FINISHED'", "attr:Status = 'FINISHED'"),
        ("attr.user_id = 'u'", "attr:UserId = 'u'"),
        (
            "run.artifact_uri LIKE 's3://%'",
            "attr:ArtifactUri LIKE 's3://%'",
        ),
        ("`Run name` = 'x'", "attr:RunName = 'x'"),
        ("\"Run name\" = 'x'", "attr:RunName = 'x'"),
        ("`Run Name` = 'x'", "attr:RunName = 'x'"),
        (
            "attributes.`Run name` ILIKE 'x%'",
            "attr:RunName ILIKE 'x%'",
        ),
        ("`attributes`.`run_name` = 'x'", "attr:RunName = 'x'"),
        ("status != 'RUNNING'", "attr:Status != 'RUNNING'"),
        ("run_id = 'abc'", "attr:RunId = 'abc'"),
        ("run_id IN ('a', 'b')", "attr:RunId IN ['a','b']"),
        ("run_id in ('a')", "attr:RunId IN ['a']"),
        ("run_id not in ('a')", "attr:RunId NOT IN ['a']"),
        (
            "run_id NOT  IN ( 'a' , \"b\" )",
            "attr:RunId NOT IN ['a','b']",
        ),
        (
            "attributes.run_id IN(\"a\",'b' )",
            "attr:RunId IN ['a','b']",
        ),
        ("run_id IN ('it''s', '')", "attr:RunId IN ['it's','']"),
        // numeric attributes
        ("created > 100", "attr:StartTime > 100"),
        ("Created > 1", "attr:StartTime > 1"),
        ("start_time >= 0", "attr:StartTime >= 0"),
        (
            "attributes.start_time <= 1700000000000",
            "attr:StartTime <= 1700000000000",
        ),
        ("end_time < 5", "attr:EndTime < 5"),
        ("end_time != 5", "attr:EndTime != 5"),
        // datasets
        ("datasets.name = 'd'", "dataset:Name = 'd'"),
        ("dataset.digest IN ('x','y')", "dataset:Digest IN ['x','y']"),
        (
            "datasets.context LIKE 'train%'",
            "dataset:Context LIKE 'train%'",
        ),
        ("datasets.name NOT IN ('a')", "dataset:Name NOT IN ['a']"),
        ("datasets.`name` ILIKE 'a'", "dataset:Name ILIKE 'a'"),
        // AND / OR / parentheses
        (
            "metrics.a > 1 and params.p = 'x' AND tags.t = 'y'",
            "and(metric:a > 1; param:p = 'x'; tag:t = 'y')",
        ),
        (
            "metrics.a > 1 OR metrics.b > 2",
            "or(metric:a > 1; metric:b > 2)",
        ),
        (
            "metrics.a > 1 or metrics.b > 2",
            "or(metric:a > 1; metric:b > 2)",
        ),
        (
            "metrics.a > 1 AND metrics.b > 2 OR metrics.c > 3",
            "or(and(metric:a > 1; metric:b > 2); metric:c > 3)",
        ),
        (
            "metrics.a > 1 OR metrics.b > 2 AND metrics.c > 3",
            "or(metric:a > 1; and(metric:b > 2; metric:c > 3))",
        ),
        (
            "(metrics.a > 1 OR metrics.b > 2) AND metrics.c > 3",
            "and(or(metric:a > 1; metric:b > 2); metric:c > 3)",
        ),
        (
            "metrics.a > 1 AND (metrics.b > 2 OR metrics.c > 3)",
            "and(metric:a > 1; or(metric:b > 2; metric:c > 3))",
        ),
        (
            "(metrics.a > 1 AND metrics.b > 2) AND metrics.c > 3",
            "and(metric:a > 1; metric:b > 2; metric:c > 3)",
        ),
        (
            "metrics.a > 1 OR (metrics.b > 2 OR metrics.c > 3)",
            "or(metric:a > 1; metric:b > 2; metric:c > 3)",
        ),
        ("((metrics.a > 1))", "metric:a > 1"),
        (
            "(metrics.a > 1 AND metrics.b > 2)",
            "and(metric:a > 1; metric:b > 2)",
        ),
        (
            "((metrics.a > 1 OR metrics.b > 2)) OR ((metrics.c > 3))",
            "or(metric:a > 1; metric:b > 2; metric:c > 3)",
        ),
        (
            "(metrics.a > 1 OR metrics.b > 2) AND (metrics.c > 3 OR metrics.d > 4)",
            "and(or(metric:a > 1; metric:b > 2); or(metric:c > 3; metric:d > 4))",
        ),
        // whitespace and adjacency
        ("  metrics.a>1  ", "metric:a > 1"),
        ("\n\tmetrics.a\n>\t1\n", "metric:a > 1"),
        ("tags.t='x'AND tags.u='y'", "and(tag:t = 'x'; tag:u = 'y')"),
        ("(tags.t='x')OR(tags.u='y')", "or(tag:t = 'x'; tag:u = 'y')"),
        (
            "run_id IN('a')AND tags.t='x'",
            "and(attr:RunId IN ['a']; tag:t = 'x')",
        ),
        // keywords are only keywords as whole words
        ("tags.and = 'x'", "tag:and = 'x'"),
        ("tags.`OR` = 'x'", "tag:OR = 'x'"),
        (
            "tags.t = 'x' AND tags.android = 'y'",
            "and(tag:t = 'x'; tag:android = 'y')",
        ),
    ];

    #[test]
    fn valid_run_filters() {
        for (input, expected) in VALID_RUNS {
            check(Runs, input, expected);
        }
    }

    const VALID_OTHER: &[(SearchEntity, &str, &str)] = &[
        (Experiments, "name = 'x'", "attr:Name = 'x'"),
        (
            Experiments,
            "attributes.name LIKE 'x%'",
            "attr:Name LIKE 'x%'",
        ),
        (Experiments, "name ILIKE 'x%'", "attr:Name ILIKE 'x%'"),
        (
            Experiments,
            "experiment_id IN ('1','2')",
            "attr:ExperimentId IN ['1','2']",
        ),
        (
            Experiments,
            "experiment_id NOT IN ('1')",
            "attr:ExperimentId NOT IN ['1']",
        ),
        (
            Experiments,
            "experiment_id = '1'",
            "attr:ExperimentId = '1'",
        ),
        (Experiments, "creation_time > 5", "attr:CreationTime > 5"),
        (
            Experiments,
            "last_update_time <= 5",
            "attr:LastUpdateTime <= 5",
        ),
        (Experiments, "tags.t IS NULL", "tag:t IS NULL"),
        (Experiments, "tags.t IS NOT NULL", "tag:t IS NOT NULL"),
        (Experiments, "tags.t ILIKE 'x'", "tag:t ILIKE 'x'"),
        (
            Experiments,
            "name = 'a' OR tags.`k k` = 'b'",
            "or(attr:Name = 'a'; tag:k k = 'b')",
        ),
        (RegisteredModels, "name = 'm'", "attr:Name = 'm'"),
        (RegisteredModels, "name IN ('a')", "attr:Name IN ['a']"),
        (
            RegisteredModels,
            "name NOT IN ('a')",
            "attr:Name NOT IN ['a']",
        ),
        (
            RegisteredModels,
            "name ILIKE '%a%'",
            "attr:Name ILIKE '%a%'",
        ),
        (RegisteredModels, "tags.t = 'x'", "tag:t = 'x'"),
        (RegisteredModels, "tags.t LIKE 'x'", "tag:t LIKE 'x'"),
        (
            ModelVersions,
            "name = 'm' AND version_number > 2",
            "and(attr:Name = 'm'; attr:VersionNumber > 2)",
        ),
        (ModelVersions, "run_id IN ('r')", "attr:RunId IN ['r']"),
        (ModelVersions, "run_id LIKE 'r%'", "attr:RunId LIKE 'r%'"),
        (ModelVersions, "name NOT IN ('m')", "attr:Name NOT IN ['m']"),
        (
            ModelVersions,
            "source_path LIKE 's3://%'",
            "attr:SourcePath LIKE 's3://%'",
        ),
        (
            ModelVersions,
            "version_number = 3",
            "attr:VersionNumber = 3",
        ),
        (ModelVersions, "tags.t != 'x'", "tag:t != 'x'"),
        (LoggedModels, "metrics.acc > 0.9", "metric:acc > 0.9"),
        (LoggedModels, "params.p = 'x'", "param:p = 'x'"),
        (LoggedModels, "params.p ILIKE 'x'", "param:p ILIKE 'x'"),
        (LoggedModels, "tags.t LIKE 'x'", "tag:t LIKE 'x'"),
        (LoggedModels, "name = 'n'", "attr:Name = 'n'"),
        (LoggedModels, "model_type = 'x'", "attr:ModelType = 'x'"),
        (
            LoggedModels,
            "model_id NOT IN ('m')",
            "attr:ModelId NOT IN ['m']",
        ),
        (LoggedModels, "status = 'READY'", "attr:Status = 'READY'"),
        (
            LoggedModels,
            "source_run_id IN ('a')",
            "attr:SourceRunId IN ['a']",
        ),
        (LoggedModels, "creation_time > 1", "attr:CreationTime > 1"),
        (
            LoggedModels,
            "creation_timestamp > 1",
            "attr:CreationTime > 1",
        ),
        (
            LoggedModels,
            "last_updated_time > 1",
            "attr:LastUpdateTime > 1",
        ),
        (
            LoggedModels,
            "last_updated_timestamp < 2",
            "attr:LastUpdateTime < 2",
        ),
    ];

    #[test]
    fn valid_filters_other_entities() {
        for (entity, input, expected) in VALID_OTHER {
            check(*entity, input, expected);
        }
    }

    const INVALID: &[(SearchEntity, &str, &str)] = &[
        // value types (MLflow wording)
        (
            Runs,
            "metrics.acc > '0.5'",
            "Expected numeric value type for metric. Found '0.5'",
        ),
        (
            Runs,
            "metrics.acc > 'x'",
            "Expected numeric value type for metric. Found 'x'",
        ),
        (
            Runs,
            "metrics.acc > abc",
            "Expected numeric value type for metric. Found abc",
        ),
        (
            Runs,
            "metrics.acc > inf",
            "Expected numeric value type for metric",
        ),
        (
            Runs,
            "metrics.acc > NaN",
            "Expected numeric value type for metric",
        ),
        (
            Runs,
            "params.lr = 0.1",
            "Expected a quoted string value for param",
        ),
        (Runs, "params.lr = 0.1", "Got value 0.1"),
        (Runs, "tags.t = 1", "Expected a quoted string value for tag"),
        (Runs, "tags.t = x", "Expected a quoted string value for tag"),
        (
            Runs,
            "start_time > 'x'",
            "Expected numeric value type for numeric attribute: start_time",
        ),
        (Runs, "created > '1'", "numeric attribute: created"),
        (
            Runs,
            "run_id = 5",
            "Expected a quoted string value for attribute 'run_id'",
        ),
        (
            Runs,
            "status = RUNNING",
            "Expected a quoted string value for attribute 'status'",
        ),
        (Runs, "datasets.name = 1", "quoted string value for dataset"),
        // numbers
        (Runs, "metrics.acc > 1e", "'1e' is not a valid number"),
        (Runs, "metrics.acc > 1e999", "is not a valid number"),
        (Runs, "metrics.acc > 0x10", "is not a valid number"),
        (Runs, "metrics.acc > 1.2.3", "is not a valid number"),
        (
            Runs,
            "metrics.acc > 1AND tags.t = 'x'",
            "'1AND' is not a valid number",
        ),
        (
            Runs,
            "metrics.acc > --1",
            "expected a value after '>', found '--1'",
        ),
        (
            Runs,
            "metrics.acc > 1-2",
            "expected AND, OR or the end of the filter, found '-2'",
        ),
        // operators
        (
            Runs,
            "params.lr > '0.01'",
            "Invalid comparator '>' for param 'lr'",
        ),
        (
            Runs,
            "params.lr > '0.01'",
            "valid comparators are: =, !=, LIKE, ILIKE, IS NULL, IS NOT NULL",
        ),
        (
            Runs,
            "metrics.acc LIKE '1'",
            "Invalid comparator 'LIKE' for metric 'acc'",
        ),
        (Runs, "metrics.acc IS NULL", "Invalid comparator 'IS NULL'"),
        (Runs, "metrics.acc IN (1)", "Invalid comparator 'IN'"),
        (
            Runs,
            "run_name IN ('a')",
            "Invalid comparator 'IN' for attribute 'run_name'",
        ),
        (Runs, "status NOT IN ('a')", "Invalid comparator 'NOT IN'"),
        (Runs, "status IS NULL", "Invalid comparator 'IS NULL'"),
        (Runs, "start_time LIKE '1'", "Invalid comparator 'LIKE'"),
        (
            Runs,
            "datasets.name IS NULL",
            "Invalid comparator 'IS NULL'",
        ),
        (Runs, "datasets.name > 'a'", "Invalid comparator '>'"),
        (
            Runs,
            "metrics.acc == 1",
            "expected a value after '=', found '='",
        ),
        (
            Runs,
            "metrics.acc => 1",
            "expected a value after '=', found '>'",
        ),
        (Runs, "metrics.acc", "expected an operator"),
        (Runs, "metrics.acc 1", "expected an operator"),
        (Runs, "metrics.acc gt 1", "found 'gt'"),
        (Runs, "metrics.val-loss > 1", "quoted with backticks"),
        (
            Runs,
            "metrics.acc >",
            "expected a value after '>', found the end of the input",
        ),
        (Runs, "metrics.acc > (1)", "only allowed after IN or NOT IN"),
        (Runs, "run_id NOT 'a'", "expected IN after NOT"),
        (Runs, "tags.t NOT LIKE 'a'", "expected IN after NOT"),
        (Runs, "tags.t NOT", "expected IN after NOT"),
        (Runs, "tags.t IS 'a'", "expected NULL or NOT NULL after IS"),
        (Runs, "tags.t IS NOT 'x'", "expected NULL after IS NOT"),
        (Runs, "tags.t IS", "found the end of the input"),
        // keys
        (Runs, "foo = 'x'", "Invalid attribute key 'foo' specified"),
        (Runs, "foo = 'x'", "run_id, run_name, `Run name`"),
        (Runs, "attributes.foo = 'x'", "Invalid attribute key 'foo'"),
        (
            Runs,
            "experiment_id = '1'",
            "Invalid attribute key 'experiment_id'",
        ),
        (Runs, "RUN_ID = 'x'", "Invalid attribute key 'RUN_ID'"),
        (Runs, "run name = 'x'", "Invalid attribute key 'run'"),
        (
            Runs,
            "bogus.x = 'y'",
            "Invalid entity type 'bogus' in 'bogus.x'",
        ),
        (Runs, "datasets.foo = 'x'", "Invalid dataset key 'foo'"),
        (Runs, "metrics. = 1", "expected a key after 'metrics.'"),
        (Runs, "metrics.= 1", "expected a key after 'metrics.'"),
        (Runs, "tags.`` = 'x'", "the key is empty"),
        (Runs, "`` = 'x'", "the key is empty"),
        (Runs, "tags.`a`b = 'x'", "right after a quoted key"),
        (Runs, "'x' = tags.t", "expected a key such as"),
        (Runs, "= 1", "expected a key such as"),
        (Runs, "metrics .acc > 1", "Invalid attribute key 'metrics'"),
        // structure
        (
            Runs,
            "tags.t = 'x' AND",
            "expected a comparison after AND, found the end of the input",
        ),
        (Runs, "tags.t = 'x' OR", "expected a comparison after OR"),
        (
            Runs,
            "tags.t = 'x' AND OR tags.u = 'y'",
            "found the keyword 'OR'",
        ),
        (
            Runs,
            "AND tags.t = 'x'",
            "position 0: expected a comparison, found the keyword 'AND'",
        ),
        (
            Runs,
            "tags.t = 'x' AND AND tags.u = 'y'",
            "found the keyword 'AND'",
        ),
        (
            Runs,
            "(tags.t = 'x'",
            "expected ')' to close the '(' at position 0",
        ),
        (
            Runs,
            "((tags.t = 'x')",
            "expected ')' to close the '(' at position 0",
        ),
        (
            Runs,
            "tags.t = 'x')",
            "position 12: unexpected ')' without a matching '('",
        ),
        (Runs, "(tags.t = 'x'))", "unexpected ')'"),
        (Runs, "()", "expected a comparison after '(', found ')'"),
        (Runs, "(", "found the end of the input"),
        (Runs, ")", "expected a comparison, found ')'"),
        (
            Runs,
            "tags.t = 'x' tags.u = 'y'",
            "expected AND, OR or the end of the filter, found 'tags.u'",
        ),
        (Runs, "tags.t = 'x' NOT tags.u = 'y'", "found 'NOT'"),
        (Runs, "tags.t = 'x';", "found ';'"),
        (Runs, "tags.t = 'x', tags.u = 'y'", "found ','"),
        (Runs, "NOT tags.t = 'x'", "found the keyword 'NOT'"),
        // strings and lists
        (
            Runs,
            "tags.t = 'x",
            "position 9: unterminated string: no closing '",
        ),
        (Runs, "tags.t = \"x", "unterminated string"),
        (Runs, "tags.t = 'x\\'", "unterminated string"),
        (Runs, "tags.`t = 'x'", "unterminated quoted key"),
        (Runs, "`metrics.acc > 1", "unterminated quoted identifier"),
        (Runs, "run_id IN ()", "the list after IN is empty"),
        (Runs, "run_id NOT IN ( )", "the list after NOT IN is empty"),
        (
            Runs,
            "run_id IN ('a',)",
            "expected a quoted string in the list after IN, found ')'",
        ),
        (Runs, "run_id IN ('a'", "is not closed"),
        (Runs, "run_id IN ('a',", "is not closed"),
        (Runs, "run_id IN (", "is not closed"),
        (
            Runs,
            "run_id IN ('a' 'b')",
            "expected ',' or ')' in the list, found ''b''",
        ),
        (
            Runs,
            "run_id IN 'a'",
            "expected '(' and a list of quoted strings after IN",
        ),
        (Runs, "run_id IN", "expected '(' and a list"),
        (
            Runs,
            "run_id IN (1, 2)",
            "expected a quoted string in the list after IN, found '1'",
        ),
        (
            Runs,
            "run_id IN (('a'))",
            "expected a quoted string in the list",
        ),
        // other entities
        (
            Experiments,
            "metrics.a > 1",
            "Experiments filters do not support metric keys",
        ),
        (Experiments, "params.p = 'x'", "do not support param keys"),
        (
            Experiments,
            "datasets.name = 'x'",
            "do not support dataset keys",
        ),
        (
            Experiments,
            "name IN ('a')",
            "Invalid comparator 'IN' for attribute 'name'",
        ),
        (Experiments, "name IS NULL", "Invalid comparator 'IS NULL'"),
        (
            Experiments,
            "experiment_id LIKE '1'",
            "Invalid comparator 'LIKE'",
        ),
        (
            Experiments,
            "experiment_id = 1",
            "Expected a quoted string value for attribute",
        ),
        (
            Experiments,
            "creation_time > '1'",
            "Expected numeric value type for numeric attribute",
        ),
        (
            Experiments,
            "lifecycle_stage = 'active'",
            "Invalid attribute key 'lifecycle_stage'",
        ),
        (
            Experiments,
            "run_name = 'x'",
            "Valid keys for experiments filters are: name, experiment_id",
        ),
        (
            RegisteredModels,
            "tags.t IS NULL",
            "Invalid comparator 'IS NULL' for tag 't'",
        ),
        (
            RegisteredModels,
            "version_number > 1",
            "Invalid attribute key 'version_number'",
        ),
        (
            RegisteredModels,
            "metrics.a > 1",
            "do not support metric keys",
        ),
        (RegisteredModels, "name > 'a'", "Invalid comparator '>'"),
        (
            ModelVersions,
            "source_path IN ('a')",
            "Invalid comparator 'IN'",
        ),
        (
            ModelVersions,
            "version_number = '1'",
            "Expected numeric value type for numeric attribute: version_number",
        ),
        (ModelVersions, "params.a = 'x'", "do not support param keys"),
        (
            ModelVersions,
            "tags.t IS NOT NULL",
            "Invalid comparator 'IS NOT NULL'",
        ),
        (
            LoggedModels,
            "params.p IS NULL",
            "Invalid comparator 'IS NULL'",
        ),
        (
            LoggedModels,
            "datasets.name = 'x'",
            "do not support dataset keys",
        ),
        (
            LoggedModels,
            "metrics.a = 'x'",
            "Expected numeric value type for metric",
        ),
        (
            LoggedModels,
            "run_id = 'x'",
            "Invalid attribute key 'run_id'",
        ),
        (
            LoggedModels,
            "creation_time LIKE '1'",
            "Invalid comparator 'LIKE'",
        ),
    ];

    #[test]
    fn invalid_filters() {
        for (entity, input, needle) in INVALID {
            check_err(*entity, input, needle);
        }
    }

    const VALID_ORDER: &[(SearchEntity, &str, &str)] = &[
        (Runs, "metrics.acc DESC", "metric:acc DESC"),
        (Runs, "metrics.acc", "metric:acc ASC"),
        (Runs, "metrics.acc asc", "metric:acc ASC"),
        (Runs, "metrics.acc Desc", "metric:acc DESC"),
        (Runs, "  metrics.acc \t DESC  ", "metric:acc DESC"),
        (Runs, "metrics.`val loss` desc", "metric:val loss DESC"),
        (Runs, "metrics.\"val loss\" desc", "metric:val loss DESC"),
        (Runs, "`metrics`.acc", "metric:acc ASC"),
        (Runs, "params.lr ASC", "param:lr ASC"),
        (Runs, "tags.mlflow.runName", "tag:mlflow.runName ASC"),
        (Runs, "attributes.start_time ASC", "attr:StartTime ASC"),
        (Runs, "start_time DESC", "attr:StartTime DESC"),
        (Runs, "created DESC", "attr:StartTime DESC"),
        (Runs, "end_time", "attr:EndTime ASC"),
        (Runs, "run_name", "attr:RunName ASC"),
        (Runs, "`Run name` DESC", "attr:RunName DESC"),
        (Runs, "run_id", "attr:RunId ASC"),
        (Runs, "status", "attr:Status ASC"),
        (Runs, "user_id", "attr:UserId ASC"),
        (Runs, "attr.artifact_uri", "attr:ArtifactUri ASC"),
        (Experiments, "name", "attr:Name ASC"),
        (Experiments, "experiment_id DESC", "attr:ExperimentId DESC"),
        (Experiments, "creation_time", "attr:CreationTime ASC"),
        (
            Experiments,
            "last_update_time DESC",
            "attr:LastUpdateTime DESC",
        ),
        (RegisteredModels, "name DESC", "attr:Name DESC"),
        (RegisteredModels, "timestamp", "attr:CreationTime ASC"),
        (RegisteredModels, "timestamp DESC", "attr:CreationTime DESC"),
        (
            RegisteredModels,
            "creation_timestamp",
            "attr:CreationTime ASC",
        ),
        (
            RegisteredModels,
            "last_updated_timestamp ASC",
            "attr:LastUpdateTime ASC",
        ),
        (ModelVersions, "name", "attr:Name ASC"),
        (
            ModelVersions,
            "version_number DESC",
            "attr:VersionNumber DESC",
        ),
        (ModelVersions, "creation_timestamp", "attr:CreationTime ASC"),
        (
            ModelVersions,
            "last_updated_timestamp",
            "attr:LastUpdateTime ASC",
        ),
        (LoggedModels, "name", "attr:Name ASC"),
        (LoggedModels, "model_id", "attr:ModelId ASC"),
        (LoggedModels, "creation_time", "attr:CreationTime ASC"),
        (
            LoggedModels,
            "creation_timestamp DESC",
            "attr:CreationTime DESC",
        ),
        (LoggedModels, "last_updated_time", "attr:LastUpdateTime ASC"),
        (
            LoggedModels,
            "last_updated_timestamp",
            "attr:LastUpdateTime ASC",
        ),
        (LoggedModels, "metrics.acc DESC", "metric:acc DESC"),
    ];

    #[test]
    fn valid_order_by() {
        for (entity, input, expected) in VALID_ORDER {
            check_order(*entity, input, expected);
        }
    }

    const INVALID_ORDER: &[(SearchEntity, &str, &str)] = &[
        (Runs, "", "it is empty"),
        (Runs, "   ", "it is empty"),
        (
            Runs,
            "metrics.acc DOWN",
            "Invalid ordering key in order_by clause",
        ),
        (
            Runs,
            "metrics.acc DOWN",
            "expected ASC or DESC after 'metrics.acc', found 'DOWN'",
        ),
        (Runs, "metrics.acc DESCENDING", "found 'DESCENDING'"),
        (
            Runs,
            "metrics.acc DESC extra",
            "expected the end of the clause",
        ),
        (
            Runs,
            "metrics.acc ASC DESC",
            "expected the end of the clause",
        ),
        (Runs, "metrics.acc, params.b", "expected ASC or DESC"),
        (Runs, "metrics.acc DESC, params.b", "found ','"),
        (
            Runs,
            "datasets.name",
            "Runs order_by clauses do not support dataset keys",
        ),
        (Runs, "foo", "Invalid order_by key 'foo' specified"),
        (
            Runs,
            "experiment_id",
            "Invalid order_by key 'experiment_id'",
        ),
        (Runs, "bogus.x", "Invalid entity type 'bogus'"),
        (Runs, "metrics.`acc", "unterminated quoted key"),
        (Runs, "metrics.", "expected a key after 'metrics.'"),
        (Runs, "DESC", "Invalid order_by key 'DESC'"),
        (Runs, "(metrics.acc)", "expected a key such as"),
        (Experiments, "tags.t", "do not support tag keys"),
        (
            Experiments,
            "last_updated_timestamp",
            "Invalid order_by key",
        ),
        (
            RegisteredModels,
            "version_number",
            "Invalid order_by key 'version_number'",
        ),
        (RegisteredModels, "tags.t", "do not support tag keys"),
        (ModelVersions, "run_id", "Invalid order_by key 'run_id'"),
        (
            ModelVersions,
            "timestamp",
            "Invalid order_by key 'timestamp'",
        ),
        (LoggedModels, "params.p", "do not support param keys"),
        (LoggedModels, "tags.t", "do not support tag keys"),
        (LoggedModels, "status", "Invalid order_by key 'status'"),
    ];

    #[test]
    fn invalid_order_by() {
        for (entity, input, needle) in INVALID_ORDER {
            check_order_err(*entity, input, needle);
        }
    }

    #[test]
    fn structure_of_asts() {
        // A single comparison is not wrapped, and the values are typed.
        assert_eq!(
            parse_filter(Runs, "metrics.acc >= 0.25").ok().flatten(),
            Some(Expr::Compare(Comparison {
                field: Field::Metric("acc".into()),
                op: Op::Ge,
                value: Value::Number(0.25),
            }))
        );
        assert_eq!(
            parse_filter(Runs, "run_id IN ('a') OR tags.t IS NULL")
                .ok()
                .flatten(),
            Some(Expr::Or(vec![
                Expr::Compare(Comparison {
                    field: Field::Attribute(Attribute::RunId),
                    op: Op::In,
                    value: Value::List(vec!["a".into()]),
                }),
                Expr::Compare(Comparison {
                    field: Field::Tag("t".into()),
                    op: Op::IsNull,
                    value: Value::Null,
                }),
            ]))
        );
        assert_eq!(
            parse_order_by(Runs, "`Run name` DESC").ok(),
            Some(OrderBy {
                field: Field::Attribute(Attribute::RunName),
                ascending: false,
            })
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!(
            "{}tags.t = 'x'{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        check(Runs, &ok, "tag:t = 'x'");
        let too_deep = format!(
            "{}tags.t = 'x'{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        check_err(Runs, &too_deep, "nested more than 100 levels deep");
        // A hostile filter of parentheses, as long as filters may be, fails fast without
        // overflowing the stack; a longer one is refused for its length.
        check_err(
            Runs,
            &"(".repeat(MAX_FILTER_BYTES),
            "nested more than 100 levels deep",
        );
        check_err(Runs, &")".repeat(MAX_FILTER_BYTES), "found ')'");
        check_err(Runs, &"(".repeat(MAX_FILTER_BYTES + 1), "bytes long");
    }

    #[test]
    fn large_inputs_are_linear_and_messages_bounded() {
        let n = MAX_COMPARISONS;
        let chain = vec!["tags.t = 'x'"; n].join(" AND ");
        match parse_filter(Runs, &chain) {
            Ok(Some(Expr::And(items))) => assert_eq!(items.len(), n),
            other => panic!("unexpected {other:?}"),
        }
        let ors = vec!["(metrics.a > 1 AND tags.t = 'x')"; n / 2].join(" OR ");
        match parse_filter(Runs, &ors) {
            Ok(Some(Expr::Or(items))) => assert_eq!(items.len(), n / 2),
            other => panic!("unexpected {other:?}"),
        }
        let long = MAX_FILTER_BYTES - 64;
        let long_value = format!("tags.t = '{}'", "v".repeat(long));
        match parse_filter(Runs, &long_value) {
            Ok(Some(Expr::Compare(c))) => assert_eq!(c.value, Value::String("v".repeat(long))),
            other => panic!("unexpected {other:?}"),
        }
        // Errors quote user input only in truncated form.
        let hostile = [
            "a".repeat(long),
            format!("{} = 'x'", "k".repeat(long)),
            format!("bogus{}.k = 'x'", "b".repeat(long)),
            format!("metrics.acc > '{}'", "x".repeat(long)),
            format!("params.p = {}", "1".repeat(long)),
            format!("tags.t = '{}", "x".repeat(long)),
            format!("tags.t = 'x' {}", "y".repeat(long)),
            format!("metrics.acc > {}", "9".repeat(long)),
            format!("tags.t = 'x' AND {}", "AND ".repeat(long / 4)),
        ];
        for input in &hostile {
            let m = message(parse_filter(Runs, input).expect_err("hostile input must fail"));
            assert!(
                m.len() < 1_000,
                "message too long ({} bytes): {}",
                m.len(),
                &m[..200]
            );
        }
        let m = message(parse_order_by(Runs, &"z".repeat(1 << 20)).expect_err("must fail"));
        assert!(m.len() < 1_000);
    }

    #[test]
    fn positions_count_characters() {
        // 'ü' is two bytes but one character.
        check_err(Runs, "tags.ü = 'x' )", "at position 13: unexpected ')'");
    }

    #[test]
    fn number_grammar() {
        for (raw, expected) in [
            ("0", Some(0.0)),
            ("-0", Some(-0.0)),
            ("12", Some(12.0)),
            ("1.5", Some(1.5)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("-1e3", Some(-1000.0)),
            ("+1E-2", Some(0.01)),
            ("", None),
            ("-", None),
            (".", None),
            ("1e", None),
            ("e5", None),
            ("1e+", None),
            ("inf", None),
            ("NaN", None),
            ("1_000", None),
            ("1e400", None),
            ("1.2.3", None),
        ] {
            assert_eq!(parse_number(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn errors_are_invalid_parameter() {
        assert!(matches!(
            parse_filter(Runs, "nope"),
            Err(Error::InvalidParameter(_))
        ));
        assert!(matches!(
            parse_order_by(Runs, "nope"),
            Err(Error::InvalidParameter(_))
        ));
    }

    // ----- property tests -----

    const ALL_ENTITIES: [SearchEntity; 5] = [
        Runs,
        Experiments,
        RegisteredModels,
        ModelVersions,
        LoggedModels,
    ];

    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "(",
            ")",
            "AND",
            "OR",
            "and",
            "NOT",
            "IN",
            "IS",
            "NULL",
            "LIKE",
            "ILIKE",
            "metrics.a",
            "params.p",
            "tags.`t`",
            "tags.\"t\"",
            "run_id",
            "name",
            "start_time",
            "datasets.name",
            "`Run name`",
            "=",
            "!=",
            "<>",
            "<",
            ">=",
            "'x'",
            "\"y\"",
            "'it''s'",
            "'\\'",
            "1",
            "-2.5e3",
            ".5",
            "1e999",
            ",",
            "`",
            "'",
            "\"",
            "\\",
            ".",
            "ASC",
            "DESC",
            "ü",
            "\u{0}",
            " ",
            "\t",
            "tags.",
            "`metrics`.",
        ])
    }

    fn soup() -> impl Strategy<Value = String> {
        prop::collection::vec((fragment(), any::<bool>()), 0..40).prop_map(|parts| {
            let mut s = String::new();
            for (f, space) in parts {
                s.push_str(f);
                if space {
                    s.push(' ');
                }
            }
            s
        })
    }

    fn exercise(input: &str) {
        for entity in ALL_ENTITIES {
            let _ = parse_filter(entity, input);
            let _ = parse_order_by(entity, input);
        }
    }

    // ----- printer for round trips (test-only) -----

    fn quote_key(k: &str) -> String {
        format!("`{}`", k.replace('`', "``"))
    }

    fn quote_str(s: &str) -> String {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn run_attr_name(a: Attribute) -> &'static str {
        RUN_ATTRS
            .iter()
            .find(|s| s.attr == a)
            .and_then(|s| s.names.first())
            .copied()
            .unwrap_or("?")
    }

    fn print_expr(e: &Expr) -> String {
        let child = |c: &Expr| match c {
            Expr::Compare(_) => print_expr(c),
            _ => format!("({})", print_expr(c)),
        };
        match e {
            Expr::And(v) => v.iter().map(child).collect::<Vec<_>>().join(" AND "),
            Expr::Or(v) => v.iter().map(child).collect::<Vec<_>>().join(" or "),
            Expr::Compare(c) => {
                let field = match &c.field {
                    Field::Metric(k) => format!("metrics.{}", quote_key(k)),
                    Field::Param(k) => format!("params.{}", quote_key(k)),
                    Field::Tag(k) => format!("tags.{}", quote_key(k)),
                    Field::Attribute(a) => run_attr_name(*a).to_owned(),
                    Field::Dataset(d) => {
                        let d = format!("{d:?}").to_lowercase();
                        format!("datasets.{d}")
                    }
                };
                let value = match &c.value {
                    Value::Number(n) => format!(" {n:?}"),
                    Value::String(s) => format!(" {}", quote_str(s)),
                    Value::List(l) => format!(
                        " ({})",
                        l.iter()
                            .map(|s| quote_str(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Value::Null => String::new(),
                };
                format!("{field} {}{value}", op_text(c.op))
            }
        }
    }

    fn normalize(e: Expr) -> Expr {
        match e {
            Expr::Compare(c) => Expr::Compare(c),
            Expr::And(v) => {
                let mut items = Vec::new();
                for c in v {
                    push_flat(&mut items, normalize(c), false);
                }
                finish(items, false)
            }
            Expr::Or(v) => {
                let mut items = Vec::new();
                for c in v {
                    push_flat(&mut items, normalize(c), true);
                }
                finish(items, true)
            }
        }
    }

    fn key() -> impl Strategy<Value = String> {
        "\\PC{1,10}"
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["\\PC{0,10}", "[\\\\'\"` %_]{0,6}"]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |n| n.is_finite()),
            (-1000i64..1000).prop_map(|n| n as f64),
        ]
    }

    fn comparison() -> impl Strategy<Value = Expr> {
        let numeric_op = prop::sample::select(vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge]);
        let string_op = prop::sample::select(vec![Op::Eq, Op::Ne, Op::Like, Op::ILike]);
        let null_op = prop::sample::select(vec![Op::IsNull, Op::IsNotNull]);
        let list_op = prop::sample::select(vec![Op::In, Op::NotIn]);
        let cmp = |field, op, value| Expr::Compare(Comparison { field, op, value });
        prop_oneof![
            (key(), numeric_op.clone(), number()).prop_map(move |(k, op, n)| cmp(
                Field::Metric(k),
                op,
                Value::Number(n)
            )),
            (key(), string_op.clone(), text()).prop_map(move |(k, op, s)| cmp(
                Field::Param(k),
                op,
                Value::String(s)
            )),
            (key(), string_op.clone(), text()).prop_map(move |(k, op, s)| cmp(
                Field::Tag(k),
                op,
                Value::String(s)
            )),
            (key(), null_op).prop_map(move |(k, op)| cmp(Field::Tag(k), op, Value::Null)),
            (list_op.clone(), prop::collection::vec(text(), 1..4)).prop_map(move |(op, l)| cmp(
                Field::Attribute(Attribute::RunId),
                op,
                Value::List(l)
            )),
            (
                prop::sample::select(vec![
                    Attribute::RunName,
                    Attribute::Status,
                    Attribute::UserId,
                    Attribute::ArtifactUri,
                ]),
                string_op,
                text()
            )
                .prop_map(move |(a, op, s)| cmp(
                    Field::Attribute(a),
                    op,
                    Value::String(s)
                )),
            (
                prop::sample::select(vec![Attribute::StartTime, Attribute::EndTime]),
                numeric_op,
                number()
            )
                .prop_map(move |(a, op, n)| cmp(
                    Field::Attribute(a),
                    op,
                    Value::Number(n)
                )),
            (
                prop::sample::select(vec![
                    DatasetField::Name,
                    DatasetField::Digest,
                    DatasetField::Context
                ]),
                list_op,
                prop::collection::vec(text(), 1..3)
            )
                .prop_map(move |(d, op, l)| cmp(Field::Dataset(d), op, Value::List(l))),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        comparison().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_strings_never_panic(input in any::<String>()) {
            exercise(&input);
        }

        #[test]
        fn token_soup_never_panics(input in soup()) {
            exercise(&input);
        }

        #[test]
        fn printed_asts_round_trip(ast in expr()) {
            let printed = print_expr(&ast);
            let parsed = parse_filter(Runs, &printed);
            prop_assert!(parsed.is_ok(), "{printed:?} failed: {:?}", parsed);
            prop_assert_eq!(parsed.ok().flatten(), Some(normalize(ast)), "printed: {:?}", printed);
        }
    }

    #[test]
    fn filters_are_bounded_in_size_terms_and_list_values() {
        let message = |input: &str| {
            parse_filter(SearchEntity::Runs, input)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let terms = |n: usize| vec!["metrics.a > 1"; n].join(" OR ");
        assert!(parse_filter(SearchEntity::Runs, &terms(MAX_COMPARISONS)).is_ok());
        assert!(message(&terms(MAX_COMPARISONS + 1)).contains("comparisons"));
        let list = |n: usize| {
            let values: Vec<String> = (0..n).map(|i| format!("'r{i}'")).collect();
            format!("attributes.run_id IN ({})", values.join(","))
        };
        assert!(parse_filter(SearchEntity::Runs, &list(MAX_LIST_VALUES)).is_ok());
        assert!(message(&list(MAX_LIST_VALUES + 1)).contains("IN lists"));
        // The limit counts every list of the filter together.
        let half = list(MAX_LIST_VALUES / 2 + 1);
        assert!(message(&format!("{half} AND {half}")).contains("IN lists"));
        let long = format!("tags.t = '{}'", "a".repeat(MAX_FILTER_BYTES));
        assert!(message(&long).contains("bytes long"));
    }
}
