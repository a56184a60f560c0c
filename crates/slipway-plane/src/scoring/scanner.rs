//! The hand scanner for the hottest body shape, `{"inputs": [[...]]}`: what it does not
//! recognise exactly goes to the budgeted visitors of `body.rs`.

use super::*;

/// The hottest shape, `{"inputs": [[n, ...], ...]}` (or `"instances"`), read by hand: numbers
/// go straight from the body's bytes to `f64::from_str` (correctly rounded, the same value
/// serde_json's `float_roundtrip` gives, which the tracking API needs and which costs it a
/// buffer copy per number) and then to f32, as pandas and serde read them. Anything this does
/// not recognise exactly, whitespace aside, returns `Ok(None)` for the full parser. Rows and
/// values count against the limits as they are read, and a number beyond f32 is refused.
pub(crate) fn scan_matrix(
    body: &[u8],
    limits: &Limits,
) -> Result<Option<Vec<Vec<f32>>>, ScoringError> {
    struct Scanner<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl Scanner<'_> {
        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
                self.at += 1;
            }
        }
        fn eat(&mut self, byte: u8) -> bool {
            self.skip_ws();
            if self.bytes.get(self.at) == Some(&byte) {
                self.at += 1;
                true
            } else {
                false
            }
        }
        fn eat_literal(&mut self, literal: &[u8]) -> bool {
            self.skip_ws();
            if self.bytes[self.at..].starts_with(literal) {
                self.at += literal.len();
                true
            } else {
                false
            }
        }
        /// A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        fn number(&mut self) -> Option<f64> {
            self.skip_ws();
            let start = self.at;
            let digits = |s: &mut Self| {
                let from = s.at;
                while s.bytes.get(s.at).is_some_and(u8::is_ascii_digit) {
                    s.at += 1;
                }
                s.at - from
            };
            if self.bytes.get(self.at) == Some(&b'-') {
                self.at += 1;
            }
            let first = *self.bytes.get(self.at)?;
            let integer = digits(self);
            if integer == 0 || (first == b'0' && integer > 1) {
                return None;
            }
            if self.bytes.get(self.at) == Some(&b'.') {
                self.at += 1;
                if digits(self) == 0 {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = self.bytes.get(self.at) {
                self.at += 1;
                if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                    self.at += 1;
                }
                if digits(self) == 0 {
                    return None;
                }
            }
            let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
            // Beyond f64 (1e400): serde_json refuses it, so the full parser words the error.
            text.parse::<f64>().ok().filter(|v| v.is_finite())
        }
    }
    let mut s = Scanner { bytes: body, at: 0 };
    let field = if !s.eat(b'{') {
        return Ok(None);
    } else if s.eat_literal(b"\"inputs\"") {
        "inputs"
    } else if s.eat_literal(b"\"instances\"") {
        "instances"
    } else {
        return Ok(None);
    };
    if !s.eat(b':') || !s.eat(b'[') {
        return Ok(None);
    }
    let mut budget = limits.budget();
    let mut rows = Vec::new();
    if !s.eat(b']') {
        loop {
            if !s.eat(b'[') {
                return Ok(None);
            }
            budget.row()?;
            let mut row = Vec::with_capacity(rows.first().map_or(8, Vec::len));
            if !s.eat(b']') {
                loop {
                    let Some(number) = s.number() else {
                        return Ok(None);
                    };
                    budget.values(1)?;
                    let at = format_args!("{field}[{}][{}]", rows.len(), row.len());
                    row.push(body::to_f32(number, at)?);
                    if s.eat(b']') {
                        break;
                    }
                    if !s.eat(b',') {
                        return Ok(None);
                    }
                }
            }
            rows.push(row);
            if s.eat(b']') {
                break;
            }
            if !s.eat(b',') {
                return Ok(None);
            }
        }
    }
    if !s.eat(b'}') {
        return Ok(None);
    }
    s.skip_ws();
    Ok((s.at == body.len()).then_some(rows))
}
