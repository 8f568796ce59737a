//! A submission: the body of `POST /v1/tasks` (JSON) and a job file (YAML, which includes
//! JSON) are read by the one function here, into the one schema ([`TaskSpec`]).
//!
//! Three shapes are accepted: one spec, a list of specs, or `{tasks: [...]}` (with no other
//! key beside `tasks`). Unknown keys and keys given twice (at any depth: in a spec, its `env`,
//! its `executor_config`) are refused, and every error names the field by its path from the
//! top of the document: `tasks[0].cpus: invalid type: string "x", expected f64`.
//!
//! Reading is two passes: the document is first read into a JSON value by a visitor that
//! refuses duplicate keys (serde_json and serde_yaml_ng both keep one of two equal keys when
//! reading into a map or a value), then each spec is deserialized from its value, both
//! through `serde_path_to_error` for the field path.

use super::TaskSpec;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A submission that could not be read, with the path of the field at fault (`tasks[2].env`,
/// `cpus`; `""` for the document as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for SubmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SubmissionError {}

impl SubmissionError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> SubmissionError {
        SubmissionError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a JSON submission (the body of `POST /v1/tasks`).
pub fn from_json(body: &[u8]) -> Result<Vec<TaskSpec>, SubmissionError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = strict_value(&mut de)?;
    de.end()
        .map_err(|e| SubmissionError::new("", format!("not JSON: {e}")))?;
    specs(value)
}

/// Reads a YAML (or JSON) submission: a job file.
pub fn from_yaml(text: &str) -> Result<Vec<TaskSpec>, SubmissionError> {
    let value = strict_value(serde_yaml_ng::Deserializer::from_str(text))?;
    specs(value)
}

fn strict_value<'de, D: Deserializer<'de>>(de: D) -> Result<Value, SubmissionError>
where
    D::Error: fmt::Display,
{
    match serde_path_to_error::deserialize::<_, Strict>(de) {
        Ok(Strict(v)) => Ok(v),
        Err(e) => {
            let path = path_text(&e.path().to_string());
            // serde_yaml_ng puts the path in its own message too.
            let message = e.into_inner().to_string();
            let message = message
                .strip_prefix(&format!("{path}: "))
                .map(str::to_string)
                .unwrap_or(message);
            Err(SubmissionError::new(path, message))
        }
    }
}

/// `serde_path_to_error`'s path without its `.` for "the top" and `?` for "a key not read".
fn path_text(p: &str) -> String {
    p.split('.')
        .filter(|s| !s.is_empty() && *s != "?")
        .collect::<Vec<_>>()
        .join(".")
}

fn specs(value: Value) -> Result<Vec<TaskSpec>, SubmissionError> {
    let (items, prefix) = match value {
        Value::Array(items) => (items, "tasks"),
        Value::Object(mut o) if o.contains_key("tasks") => {
            let tasks = o.remove("tasks");
            if let Some(k) = o.keys().next() {
                return Err(SubmissionError::new(
                    k.clone(),
                    "unknown key beside `tasks` (a list of specs goes in `tasks`, nothing else)",
                ));
            }
            match tasks {
                Some(Value::Array(items)) => (items, "tasks"),
                _ => {
                    return Err(SubmissionError::new(
                        "tasks",
                        "must be a list of task specs",
                    ))
                }
            }
        }
        o @ Value::Object(_) => (vec![o], ""),
        _ => {
            return Err(SubmissionError::new(
                "",
                "expected a task spec, a list of specs, or {\"tasks\": [...]}",
            ))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_path_to_error::deserialize::<_, TaskSpec>(v).map_err(|e| {
                let inner = path_text(&e.path().to_string());
                let at = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}[{i}]")
                };
                let field = match (at.is_empty(), inner.is_empty()) {
                    (_, true) => at,
                    (true, false) => inner,
                    (false, false) => format!("{at}.{inner}"),
                };
                SubmissionError::new(field, e.into_inner().to_string())
            })
        })
        .collect()
}

/// A JSON value read from any format, refusing a key given twice in one mapping.
struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a task spec (JSON or YAML)")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(k)) = map.next_key()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{}`",
                    k.chars().take(100).collect::<String>()
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

use serde::Deserialize as _;

/// A mapping key: a string, or a YAML scalar key (`1:`, `true:`) as its text.
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_string<E>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            fn visit_bool<E>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        d.deserialize_any(KeyVisitor).map(Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_shapes_in_both_formats() {
        assert_eq!(from_json(br#"{"command": "a"}"#).unwrap().len(), 1);
        assert_eq!(from_json(br#"[{"command": "a"}, {}]"#).unwrap().len(), 2);
        assert_eq!(
            from_json(br#"{"tasks": [{"command": "a", "cpus": 0.5}]}"#).unwrap()[0].cpus,
            Some(0.5)
        );
        assert_eq!(from_yaml("command: echo hi\n").unwrap().len(), 1);
        assert_eq!(
            from_yaml("- command: a\n- command: [b]\n").unwrap().len(),
            2
        );
        assert_eq!(
            from_yaml("tasks:\n  - command: a\n    env: {1: x}\n").unwrap()[0].env["1"],
            "x"
        );
    }

    #[test]
    fn errors_name_the_field_path() {
        let e = from_yaml("tasks:\n  - command: a\n  - cpus: lots\n").unwrap_err();
        assert_eq!(e.field, "tasks[1].cpus", "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = from_json(br#"{"tasks": [{"retries": -1}]}"#).unwrap_err();
        assert_eq!(e.field, "tasks[0].retries", "{e}");
        let e = from_json(br#"{"ports": [{"container_port": "x"}]}"#).unwrap_err();
        assert!(e.field.starts_with("ports[0]"), "{e}");
        let e = from_json(br#"{"comand": "a"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `comand`"), "{e}");
        let e = from_yaml("tasks:\n  - command: a\n  - comand: b\n").unwrap_err();
        assert!(
            e.to_string().starts_with("tasks[1]") && e.message.contains("comand"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_beside_tasks_are_refused_in_both_formats() {
        let e = from_json(br#"{"tasks": [{"command": "a"}], "priority": 1}"#).unwrap_err();
        assert_eq!(e.field, "priority", "{e}");
        let e = from_yaml("tasks: [{command: a}]\npriority: 1\n").unwrap_err();
        assert_eq!(e.field, "priority", "{e}");
        assert_eq!(from_json(br#"{"tasks": 3}"#).unwrap_err().field, "tasks");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = from_json(br#"{"command": "a", "cpus": 1, "cpus": 2}"#).unwrap_err();
        assert!(e.message.contains("duplicate key `cpus`"), "{e}");
        let e = from_json(br#"{"tasks": [{"command": "a", "env": {"A": "1", "A": "2"}}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "tasks[0].env", "{e}");
        assert!(e.message.contains("duplicate key `A`"), "{e}");
        let e = from_json(br#"{"executor_config": {"cpus": 1, "cpus": 2}}"#).unwrap_err();
        assert_eq!(e.field, "executor_config", "{e}");
        let e =
            from_yaml("tasks:\n  - command: a\n    labels:\n      x: 1\n      x: 2\n").unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
        let e = from_json(br#"{"tasks": [], "tasks": []}"#).unwrap_err();
        assert!(e.message.contains("duplicate key `tasks`"), "{e}");
    }

    #[test]
    fn not_a_document() {
        assert_eq!(from_json(b"{").unwrap_err().field, "");
        assert_eq!(from_json(b"{not json").unwrap_err().field, "");
        assert!(from_json(b"{} x").is_err());
        assert!(from_json(b"3").is_err());
        assert!(from_yaml("a: [").is_err());
    }
}
