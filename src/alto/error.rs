//! ALTO error bodies (RFC 7285 §8.5): the four registered codes and the `field` / `value` /
//! `syntax-error` members, serialised as `application/alto-error+json`.

use serde_json::{json, Map, Value};

/// The registered ALTO error codes (RFC 7285 §8.5.2, Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request could not be parsed (bad JSON, bad identifiers).
    Syntax,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong JSON type.
    InvalidFieldType,
    /// A field has a value the server does not accept.
    InvalidFieldValue,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Syntax => "E_SYNTAX",
            ErrorCode::MissingField => "E_MISSING_FIELD",
            ErrorCode::InvalidFieldType => "E_INVALID_FIELD_TYPE",
            ErrorCode::InvalidFieldValue => "E_INVALID_FIELD_VALUE",
        }
    }
}

/// One ALTO error: a client mistake, reported as exactly one error (RFC 7285 §8.5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", code.as_str(), detail(self))]
pub struct AltoError {
    pub code: ErrorCode,
    /// The full path of the offending field, `/`-separated (`cost-type/cost-metric`).
    pub field: Option<String>,
    /// The offending value, as a string (RFC 7285 §8.5.2: `value` MUST be a string).
    pub value: Option<String>,
    /// Free text for `E_SYNTAX`.
    pub syntax_error: Option<String>,
}

fn detail(e: &AltoError) -> String {
    let mut s = String::new();
    if let Some(f) = &e.field {
        s.push_str(&format!(" field={f}"));
    }
    if let Some(v) = &e.value {
        s.push_str(&format!(" value={v}"));
    }
    if let Some(t) = &e.syntax_error {
        s.push_str(&format!(": {t}"));
    }
    s
}

impl AltoError {
    /// `E_SYNTAX` with a text naming the cause.
    pub fn syntax(text: impl Into<String>) -> Self {
        AltoError { code: ErrorCode::Syntax, field: None, value: None, syntax_error: Some(text.into()) }
    }

    /// `E_MISSING_FIELD` for the field at `path`.
    pub fn missing(path: impl Into<String>) -> Self {
        AltoError { code: ErrorCode::MissingField, field: Some(path.into()), value: None, syntax_error: None }
    }

    /// `E_INVALID_FIELD_TYPE` for the field at `path`.
    pub fn invalid_type(path: impl Into<String>) -> Self {
        AltoError {
            code: ErrorCode::InvalidFieldType,
            field: Some(path.into()),
            value: None,
            syntax_error: None,
        }
    }

    /// `E_INVALID_FIELD_VALUE` for the field at `path`; a non-string `value` is stringified.
    pub fn invalid_value(path: impl Into<String>, value: &Value) -> Self {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        AltoError {
            code: ErrorCode::InvalidFieldValue,
            field: Some(path.into()),
            value: Some(value),
            syntax_error: None,
        }
    }

    /// The error as an `application/alto-error+json` body.
    pub fn to_json(&self) -> Value {
        let mut meta = Map::new();
        meta.insert("code".into(), json!(self.code.as_str()));
        if let Some(t) = &self.syntax_error {
            meta.insert("syntax-error".into(), json!(t));
        }
        if let Some(f) = &self.field {
            meta.insert("field".into(), json!(f));
        }
        if let Some(v) = &self.value {
            meta.insert("value".into(), json!(v));
        }
        json!({ "meta": meta })
    }

    /// The serialised body.
    pub fn to_body(&self) -> Vec<u8> {
        // Serialising a Value built from strings cannot fail.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_code_field_and_value() {
        let e = AltoError::invalid_value("endpoints/srcs", &json!(42));
        assert_eq!(
            e.to_json(),
            json!({"meta": {"code": "E_INVALID_FIELD_VALUE", "field": "endpoints/srcs", "value": "42"}})
        );
        let e = AltoError::syntax("expected value at line 1 column 1");
        assert_eq!(e.to_json()["meta"]["code"], "E_SYNTAX");
        assert_eq!(AltoError::missing("cost-type").to_json()["meta"]["field"], "cost-type");
    }
}
