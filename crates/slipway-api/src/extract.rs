//! Request decoding the way MLflow's server reads requests: GET fields from the query string
//! (repeated keys for repeated fields), every other method from a JSON body.
//!
//! Protobuf's JSON mapping is lenient in ways clients rely on: int64 may be a number or a string,
//! doubles may be `"NaN"`/`"Infinity"`, bools arrive as `True` from Python's `requests`. The
//! wrapper types below accept exactly those forms. Unknown fields are refused (400), so a typo
//! in a field name is an error instead of silently ignored data.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use crate::error::ApiError;

/// The largest JSON body we parse. A 1000-metric log-batch is ~100 kB; dataset schemas and
/// profiles can be a few MB.
pub const MAX_JSON_BODY: usize = 32 * 1024 * 1024;

/// A request message decoded from the query (GET) or the JSON body (other methods).
pub struct Message<T>(pub T);

impl<S, T> FromRequest<S> for Message<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if request.method() == Method::GET {
            let query = request.uri().query().unwrap_or("");
            return from_query(query).map(Message);
        }
        let content_type = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_ascii_lowercase);
        // A POST without a content type is how a cross-site form or `fetch` gets in without a
        // preflight (a JSON content type needs one), so it is refused as MLflow refuses it
        // (`_validate_content_type`), with MLflow's status and words. PUT and PATCH are
        // refused the same way for consistency; DELETE bodies stay lenient, as in MLflow. A
        // body explicitly declared as something else is refused, as MLflow does.
        let method = request.method();
        if content_type.is_none()
            && (method == Method::POST || method == Method::PUT || method == Method::PATCH)
        {
            return Err(ApiError::Core(slipway_core::Error::invalid(
                "Bad Request. Content-Type header is missing.",
            )));
        }
        if let Some(content_type) = &content_type
            && !content_type.starts_with("application/json")
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type must be one of ['application/json'], got '{content_type}'"
            )));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "request body exceeds the limit of {MAX_JSON_BODY} bytes"
                    ))
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })?;
        from_json(&bytes).map(Message)
    }
}

/// NUL characters are refused in every text field: PostgreSQL cannot store them and SQLite
/// would, so accepting them would make the two backends disagree.
const NUL_MESSAGE: &str = "text values must not contain NUL (\\u0000) characters";

/// Whether the JSON text holds a `\u0000` escape (not the literal text `\\u0000`, whose
/// backslash is itself escaped).
fn has_escaped_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).enumerate().any(|(start, window)| {
        window.eq_ignore_ascii_case(b"\\u0000")
            && bytes[..start]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count()
                % 2
                == 0
    })
}

pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if has_escaped_nul(bytes) {
        return Err(ApiError::BadRequest(NUL_MESSAGE.to_owned()));
    }
    let trimmed = bytes.trim_ascii();
    let bytes = if trimmed.is_empty() {
        b"{}".as_slice()
    } else {
        trimmed
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // serde_json stops at depth 128, so a hostile nesting cannot overflow the stack.
    let value = deserialize_message(&mut deserializer)?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    Ok(value)
}

fn deserialize_message<'de, T: DeserializeOwned>(
    deserializer: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, ApiError> {
    T::deserialize(deserializer).map_err(|e| {
        let message = e.to_string();
        if e.is_syntax() || e.is_eof() {
            ApiError::BadRequest(format!("malformed JSON body: {message}"))
        } else {
            ApiError::BadRequest(format!("invalid request: {message}"))
        }
    })
}

/// Repeated fields of the GET messages MLflow defines. A query key names no type, so these are
/// always read as lists, and everything else as a scalar; a JSON body must send lists as lists.
const REPEATED_QUERY_FIELDS: &[&str] = &[
    "order_by",
    "stages",
    "run_ids",
    "experiment_ids",
    "trace_ids",
];

/// Query strings become a JSON object: repeated fields are arrays, everything else a string.
/// The lenient wrappers turn the strings into numbers and bools where the message wants them.
pub fn from_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in form_urlencoded_pairs(query) {
        if key.contains('\0') || value.contains('\0') {
            return Err(ApiError::BadRequest(NUL_MESSAGE.to_owned()));
        }
        fields.entry(key).or_default().push(value);
    }
    let object: serde_json::Map<String, serde_json::Value> = fields
        .into_iter()
        .map(|(key, mut values)| {
            let value = if values.len() == 1 && !REPEATED_QUERY_FIELDS.contains(&key.as_str()) {
                serde_json::Value::String(values.remove(0))
            } else {
                serde_json::Value::Array(
                    values.into_iter().map(serde_json::Value::String).collect(),
                )
            };
            (key, value)
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ApiError::BadRequest(format!("invalid query parameters: {e}")))
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// int64 as protobuf JSON allows: a number or a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I64(pub i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = I64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer (number or decimal string)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<I64, E> {
                Ok(I64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<I64, E> {
                i64::try_from(v)
                    .map(I64)
                    .map_err(|_| E::custom(format!("integer {v} is out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<I64, E> {
                if v.fract() == 0.0 && v.abs() < 9.2e18 {
                    Ok(I64(v as i64))
                } else {
                    Err(E::custom(format!("expected an integer, got {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<I64, E> {
                v.trim()
                    .parse::<i64>()
                    .map(I64)
                    .map_err(|_| E::custom(format!("expected an integer, got '{}'", short(v))))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// double as protobuf JSON allows: a number, a numeric string, or "NaN"/"Infinity"/"-Infinity".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F64(pub f64);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = F64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, or \"NaN\", \"Infinity\", \"-Infinity\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<F64, E> {
                Ok(F64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<F64, E> {
                match v.trim() {
                    "NaN" | "nan" => Ok(F64(f64::NAN)),
                    "Infinity" | "inf" | "+Infinity" => Ok(F64(f64::INFINITY)),
                    "-Infinity" | "-inf" => Ok(F64(f64::NEG_INFINITY)),
                    other => other
                        .parse::<f64>()
                        .map(F64)
                        .map_err(|_| E::custom(format!("expected a number, got '{}'", short(v)))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// bool as JSON, or as the strings `true`/`false` in any case (Python sends `True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bool(pub bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(Bool(true)),
                    "false" | "0" => Ok(Bool(false)),
                    _ => Err(E::custom(format!("expected a boolean, got '{}'", short(v)))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A string id that some clients send as a number (`"experiment_id": 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdString(pub String);

impl<'de> Deserialize<'de> for IdString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdString, E> {
                Ok(IdString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdString, E> {
                Ok(IdString(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdString, E> {
                Ok(IdString(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A repeated field: a JSON array (a missing field or null is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Repeated<T>(pub Vec<T>);

impl<T> Default for Repeated<T> {
    fn default() -> Self {
        Repeated(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Repeated<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Repeated(
            Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default(),
        ))
    }
}

// The OpenAPI schemas of the lenient wrappers: every form each one accepts.

/// `{"type": ...}` plus an optional pattern for a string form.
fn typed(ty: utoipa::openapi::Type, pattern: Option<&str>) -> utoipa::openapi::Schema {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(ty)
        .pattern(pattern)
        .into()
}

fn one_of(
    schemas: Vec<utoipa::openapi::Schema>,
) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    let mut builder = utoipa::openapi::schema::OneOfBuilder::new();
    for schema in schemas {
        builder = builder.item(schema);
    }
    utoipa::openapi::RefOr::T(builder.into())
}

impl utoipa::PartialSchema for I64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::Type;
        one_of(vec![
            typed(Type::Integer, None),
            typed(Type::String, Some(r"^\s*[+-]?[0-9]{1,18}\s*$")),
        ])
    }
}
impl utoipa::ToSchema for I64 {}

impl utoipa::PartialSchema for F64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::Type;
        one_of(vec![
            typed(Type::Number, None),
            typed(
                Type::String,
                Some(r"^(NaN|-?Infinity|[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?)$"),
            ),
        ])
    }
}
impl utoipa::ToSchema for F64 {}

impl utoipa::PartialSchema for Bool {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::Type;
        one_of(vec![
            typed(Type::Boolean, None),
            typed(
                Type::String,
                Some("^(true|false|True|False|TRUE|FALSE|1|0)$"),
            ),
        ])
    }
}
impl utoipa::ToSchema for Bool {}

impl utoipa::PartialSchema for IdString {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::Type;
        one_of(vec![typed(Type::String, None), typed(Type::Integer, None)])
    }
}
impl utoipa::ToSchema for IdString {}

fn short(raw: &str) -> String {
    slipway_core::validate::truncate_for_message(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Example {
        run_id: Option<String>,
        max_results: Option<I64>,
        value: Option<F64>,
        flag: Option<Bool>,
        #[serde(default)]
        order_by: Repeated<String>,
    }

    #[test]
    fn query_strings_decode_like_mlflow() {
        let example: Example = from_query(
            "run_id=abc&max_results=5&value=NaN&flag=True&order_by=a+DESC&order_by=b%20ASC",
        )
        .unwrap();
        assert_eq!(example.run_id.as_deref(), Some("abc"));
        assert_eq!(example.max_results, Some(I64(5)));
        assert!(example.value.unwrap().0.is_nan());
        assert_eq!(example.flag, Some(Bool(true)));
        assert_eq!(example.order_by.0, vec!["a DESC", "b ASC"]);
        let single: Example = from_query("order_by=x").unwrap();
        assert_eq!(single.order_by.0, vec!["x"]);
        assert!(from_json::<Example>(br#"{"order_by": "x"}"#).is_err());
    }

    #[test]
    fn bad_bodies_are_bad_requests() {
        for body in [
            &b"{"[..],
            b"[]",
            b"{\"max_results\": \"x\"}",
            b"{\"nope\": 1}",
            b"{} trailing",
        ] {
            assert!(
                matches!(from_json::<Example>(body), Err(ApiError::BadRequest(_))),
                "{body:?}"
            );
        }
        assert!(from_json::<Example>(br#"{"run_id": "a\u0000b"}"#).is_err());
        let literal: Example = from_json(br#"{"run_id": "a\\u0000b"}"#).unwrap();
        assert_eq!(literal.run_id.as_deref(), Some("a\\u0000b"));
        assert!(from_query::<Example>("run_id=a%00b").is_err());
        let empty: Example = from_json(b"").unwrap();
        assert!(empty.run_id.is_none());
        let typed: Example = from_json(br#"{"max_results": "7", "value": "-Infinity"}"#).unwrap();
        assert_eq!(typed.max_results, Some(I64(7)));
        assert_eq!(typed.value.unwrap().0, f64::NEG_INFINITY);
    }

    #[test]
    fn percent_decoding_tolerates_garbage() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
