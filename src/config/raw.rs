//! The file as written: serde structs that mirror `altoshield.toml` key for key.
//!
//! Every value stays a `toml::Value`, so a wrong type or format does not stop serde at the first
//! mistake: `build` converts each value and reports every problem together. Unknown keys are found
//! here, all of them and with their full key path, by comparing the file's keys with the field
//! lists of these structs; `deny_unknown_fields` stays on as the backstop that keeps the structs
//! and that check honest.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::{Table, Value};

use super::Problem;

/// The whole file: one table per section, each optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: RawListen,
    pub admin: RawAdmin,
    pub origin: RawOrigin,
    pub cache: RawCache,
    pub ecs: RawEcs,
    pub limits: RawLimits,
}

/// `[listen]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawListen {
    pub addr: Option<Value>,
    pub tls: Option<Value>,
    pub cert: Option<Value>,
    pub key: Option<Value>,
    pub client_ca: Option<Value>,
    pub public_url: Option<Value>,
    pub trusted_proxies: Option<Value>,
    pub allow: Option<Value>,
}

/// `[admin]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub addr: Option<Value>,
    pub token: Option<Value>,
}

/// `[origin]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawOrigin {
    pub ird: Option<Value>,
    pub ca: Option<Value>,
    pub cert: Option<Value>,
    pub key: Option<Value>,
    pub connect_timeout: Option<Value>,
    pub timeout: Option<Value>,
    pub max_in_flight: Option<Value>,
    pub max_body: Option<Value>,
    pub ird_refresh: Option<Value>,
}

/// `[cache]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCache {
    pub default_ttl: Option<Value>,
    pub stale_while_revalidate: Option<Value>,
    pub stale_if_error: Option<Value>,
    pub max_bytes: Option<Value>,
}

/// `[ecs]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawEcs {
    pub mode: Option<Value>,
    pub rank_locally: Option<Value>,
    pub merge_waste: Option<Value>,
    pub merge_window: Option<Value>,
    pub auto_warmup: Option<Value>,
    pub auto_sample: Option<Value>,
}

/// `[limits]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_body: Option<Value>,
    pub per_client_rps: Option<Value>,
    pub max_in_flight: Option<Value>,
    pub max_connections: Option<Value>,
    pub header_timeout: Option<Value>,
    pub handshake_timeout: Option<Value>,
    pub coalesce_timeout: Option<Value>,
    pub shutdown_grace: Option<Value>,
}

/// The section names, in file order.
pub(super) fn sections() -> &'static [&'static str] {
    field_names::<RawConfig>()
}

/// The keys of `section`, or `None` for an unknown section.
pub(super) fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "listen" => field_names::<RawListen>(),
        "admin" => field_names::<RawAdmin>(),
        "origin" => field_names::<RawOrigin>(),
        "cache" => field_names::<RawCache>(),
        "ecs" => field_names::<RawEcs>(),
        "limits" => field_names::<RawLimits>(),
        _ => return None,
    })
}

/// Parses `text` into the raw form, pushing syntax errors, unknown keys and sections that are not
/// tables. `None` only when the text is not TOML at all; unknown keys are dropped, so the values
/// of the known ones are still checked.
pub(super) fn read(text: &str, problems: &mut Vec<Problem>) -> Option<RawConfig> {
    let mut root: Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(e) => {
            problems.push(Problem::new("", syntax_message(text, &e)));
            return None;
        }
    };
    let mut found = Vec::new();
    root.retain(|section, value| {
        let Some(keys) = section_keys(section) else {
            found.push(unknown(section.to_string(), section, sections()));
            return false;
        };
        let Value::Table(table) = value else {
            let message = format!("expected a table, found {}", value.type_str());
            found.push(Problem::new(section, message));
            return false;
        };
        table.retain(|key, _| {
            let known = keys.contains(&key);
            if !known {
                found.push(unknown(format!("{section}.{key}"), key, keys));
            }
            known
        });
        true
    });
    // The table iterates alphabetically; report in the sections' documented order instead.
    found.sort_by_key(|problem| {
        let section = problem.key.split('.').next().unwrap_or_default();
        sections().iter().position(|&s| s == section).unwrap_or(usize::MAX)
    });
    problems.append(&mut found);
    match Value::Table(root).try_into::<RawConfig>() {
        Ok(raw) => Some(raw),
        Err(e) => {
            // Unreachable while the checks above match the structs; reported, never a panic.
            problems.push(Problem::new("", e.message().to_string()));
            None
        }
    }
}

/// A TOML error's message, with the line its span starts on (`line 3: invalid key`).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    // One problem is one line: toml's messages may span several.
    let message = e.message().trim_end().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn unknown(path: String, name: &str, known: &[&str]) -> Problem {
    let message = match closest(name, known) {
        Some(near) => format!("unknown key (did you mean `{near}`?)"),
        None => "unknown key".to_string(),
    };
    Problem::new(path, message)
}

/// The known name within two edits of `name` (so `max-body` suggests `max_body`), if any.
pub(super) fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, k)| d <= 2 && d < k.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The field names serde's derive gives a struct: it passes them to `deserialize_struct`, so a
/// deserializer that records them and stops there reads them without any value. This keeps one
/// list of keys, the struct itself.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The error is the expected way out: the recorder stops every deserialization.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}
