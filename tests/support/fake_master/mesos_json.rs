//! Mesos's JSON encoding of protobuf messages (stout `JSON::protobuf` / `protobuf::parse`),
//! driven by the descriptors of the project's own `proto/` files, so every message and field of
//! the subset is covered without hand-written mappings.
//!
//! Rules implemented (reference §2.13): snake_case proto field names; enums as names; bytes as
//! padded standard base64; 64-bit integers as JSON numbers; fields written in declaration order;
//! repeated fields only when non-empty; unset optional fields with an explicit, non-deprecated
//! default written with that default; non-finite doubles as bare `Infinity`/`NaN` tokens.
//! Parsing ignores unknown keys, treats `null` as unset, accepts numbers given as strings, drops an
//! unknown enum name on an optional field, and reports missing required fields by path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use prost_types::field_descriptor_proto::{Label, Type};

/// One field of a message, in declaration order.
#[derive(Debug, Clone)]
struct FieldDesc {
    name: String,
    number: u32,
    repeated: bool,
    required: bool,
    ty: Type,
    /// Full name without the leading dot, for messages and enums.
    type_name: String,
    default: Option<String>,
    deprecated: bool,
}

#[derive(Debug, Default)]
struct MessageDesc {
    fields: Vec<FieldDesc>,
    by_number: HashMap<u32, usize>,
    by_name: HashMap<String, usize>,
    map_entry: bool,
}

#[derive(Debug, Default)]
struct EnumDesc {
    names: HashMap<i32, String>,
    numbers: HashMap<String, i32>,
}

/// The message and enum descriptors of `proto/mesos/v1/*.proto`.
#[derive(Debug, Default)]
pub struct Schema {
    messages: HashMap<String, MessageDesc>,
    enums: HashMap<String, EnumDesc>,
}

/// Why a JSON body could not be turned into a protobuf message. The `Display` text is the
/// master's wording (without the "Failed to ..." prefix the HTTP layer adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// The body is not JSON at all (`syntax error at line N near: ...`).
    Syntax(String),
    /// The JSON does not fit the message (wrong type, bad enum, missing required fields).
    Convert(String),
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Syntax(m) | JsonError::Convert(m) => f.write_str(m),
        }
    }
}

impl Schema {
    /// The schema of the crate's `proto/` files (the descriptor set `build.rs` embeds).
    pub fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            use prost::Message as _;
            let fds = prost_types::FileDescriptorSet::decode(
                airflow_mesos::mesos::proto::FILE_DESCRIPTOR_SET,
            )
            .expect("the crate's descriptor set decodes");
            Schema::from_descriptors(&fds)
        })
    }

    /// Builds the schema from a compiled descriptor set.
    pub fn from_descriptors(fds: &prost_types::FileDescriptorSet) -> Schema {
        let mut schema = Schema::default();
        for file in &fds.file {
            let package = file.package().to_string();
            for m in &file.message_type {
                schema.add_message(&package, m);
            }
            for e in &file.enum_type {
                schema.add_enum(&package, e);
            }
        }
        schema
    }

    fn add_message(&mut self, scope: &str, m: &prost_types::DescriptorProto) {
        let full = join(scope, m.name());
        let mut desc = MessageDesc {
            map_entry: m.options.as_ref().is_some_and(|o| o.map_entry()),
            ..MessageDesc::default()
        };
        for f in &m.field {
            let idx = desc.fields.len();
            desc.by_number.insert(f.number() as u32, idx);
            desc.by_name.insert(f.name().to_string(), idx);
            desc.fields.push(FieldDesc {
                name: f.name().to_string(),
                number: f.number() as u32,
                repeated: f.label() == Label::Repeated,
                required: f.label() == Label::Required,
                ty: f.r#type(),
                type_name: f.type_name().trim_start_matches('.').to_string(),
                default: f.default_value.clone(),
                deprecated: f.options.as_ref().is_some_and(|o| o.deprecated()),
            });
        }
        self.messages.insert(full.clone(), desc);
        for nested in &m.nested_type {
            self.add_message(&full, nested);
        }
        for e in &m.enum_type {
            self.add_enum(&full, e);
        }
    }

    fn add_enum(&mut self, scope: &str, e: &prost_types::EnumDescriptorProto) {
        let mut desc = EnumDesc::default();
        for v in &e.value {
            desc.names.insert(v.number(), v.name().to_string());
            desc.numbers.insert(v.name().to_string(), v.number());
        }
        self.enums.insert(join(scope, e.name()), desc);
    }

    fn message(&self, name: &str) -> &MessageDesc {
        self.messages
            .get(name)
            .unwrap_or_else(|| panic!("message {name} is not in proto/"))
    }

    /// Whether `proto/` defines the message (the proto files may still be placeholders).
    pub fn has_message(&self, name: &str) -> bool {
        self.messages.contains_key(name)
    }

    /// Renders serialized protobuf `bytes` of message `name` (e.g. `mesos.v1.scheduler.Event`)
    /// as compact Mesos JSON.
    pub fn render_json(&self, name: &str, bytes: &[u8]) -> Result<String, String> {
        let mut out = String::with_capacity(bytes.len() * 2);
        self.write_message(name, bytes, &mut out)?;
        Ok(out)
    }

    fn write_message(&self, name: &str, bytes: &[u8], out: &mut String) -> Result<(), String> {
        let desc = self.message(name);
        let mut values: Vec<Vec<Wire<'_>>> = vec![Vec::new(); desc.fields.len()];
        let mut rd = Reader { buf: bytes, pos: 0 };
        while !rd.done() {
            let key = rd.varint()?;
            let number = (key >> 3) as u32;
            let wire = rd.value((key & 7) as u8)?;
            if let Some(&idx) = desc.by_number.get(&number) {
                values[idx].push(wire);
            }
        }
        out.push('{');
        let mut first = true;
        for (idx, field) in desc.fields.iter().enumerate() {
            let vals = &values[idx];
            if vals.is_empty() {
                if !field.repeated && !field.deprecated {
                    if let Some(default) = &field.default {
                        sep(out, &mut first);
                        write_key(out, &field.name);
                        self.write_default(field, default, out);
                    }
                }
                continue;
            }
            sep(out, &mut first);
            write_key(out, &field.name);
            if field.repeated {
                let items = self.expand_packed(field, vals)?;
                let entry = (field.ty == Type::Message)
                    .then(|| self.message(&field.type_name))
                    .filter(|m| m.map_entry);
                if entry.is_some() {
                    out.push('{');
                    let mut first_entry = true;
                    for item in &items {
                        let Wire::Len(b) = item else {
                            return Err(format!(
                                "map field {} is not length-delimited",
                                field.name
                            ));
                        };
                        sep(out, &mut first_entry);
                        self.write_map_entry(&field.type_name, b, out)?;
                    }
                    out.push('}');
                } else {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.write_value(field, item, out)?;
                    }
                    out.push(']');
                }
            } else {
                self.write_value(field, vals.last().expect("non-empty"), out)?;
            }
        }
        out.push('}');
        Ok(())
    }

    fn write_map_entry(&self, entry: &str, bytes: &[u8], out: &mut String) -> Result<(), String> {
        let desc = self.message(entry);
        let mut key = String::new();
        let mut value = String::from("null");
        let mut rd = Reader { buf: bytes, pos: 0 };
        while !rd.done() {
            let k = rd.varint()?;
            let wire = rd.value((k & 7) as u8)?;
            let Some(&idx) = desc.by_number.get(&((k >> 3) as u32)) else {
                continue;
            };
            let field = &desc.fields[idx];
            let mut s = String::new();
            self.write_value(field, &wire, &mut s)?;
            if field.number == 1 {
                key = s;
            } else {
                value = s;
            }
        }
        if !key.starts_with('"') {
            key = format!("\"{key}\"");
        }
        out.push_str(&key);
        out.push(':');
        out.push_str(&value);
        Ok(())
    }

    fn expand_packed<'a>(
        &self,
        field: &FieldDesc,
        vals: &[Wire<'a>],
    ) -> Result<Vec<Wire<'a>>, String> {
        let scalar_numeric = !matches!(
            field.ty,
            Type::String | Type::Bytes | Type::Message | Type::Group
        );
        let mut items = Vec::with_capacity(vals.len());
        for v in vals {
            match (scalar_numeric, v) {
                (true, Wire::Len(b)) => {
                    let mut rd = Reader { buf: b, pos: 0 };
                    while !rd.done() {
                        let item = match field.ty {
                            Type::Double | Type::Fixed64 | Type::Sfixed64 => rd.value(1)?,
                            Type::Float | Type::Fixed32 | Type::Sfixed32 => rd.value(5)?,
                            _ => rd.value(0)?,
                        };
                        items.push(item);
                    }
                }
                _ => items.push(v.clone()),
            }
        }
        Ok(items)
    }

    fn write_value(
        &self,
        field: &FieldDesc,
        wire: &Wire<'_>,
        out: &mut String,
    ) -> Result<(), String> {
        let bad = || format!("field {} has an unexpected wire type", field.name);
        match (field.ty, wire) {
            (Type::Message, Wire::Len(b)) => self.write_message(&field.type_name, b, out)?,
            (Type::String, Wire::Len(b)) => write_str(out, &String::from_utf8_lossy(b)),
            (Type::Bytes, Wire::Len(b)) => {
                write_str(out, &base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Type::Double, Wire::Fixed64(v)) => write_double(out, f64::from_bits(*v)),
            (Type::Float, Wire::Fixed32(v)) => write_double(out, f64::from(f32::from_bits(*v))),
            (Type::Fixed64, Wire::Fixed64(v)) => write!(out, "{v}").expect("write to String"),
            (Type::Sfixed64, Wire::Fixed64(v)) => write!(out, "{}", *v as i64).expect("write"),
            (Type::Fixed32, Wire::Fixed32(v)) => write!(out, "{v}").expect("write"),
            (Type::Sfixed32, Wire::Fixed32(v)) => write!(out, "{}", *v as i32).expect("write"),
            (Type::Bool, Wire::Varint(v)) => out.push_str(if *v != 0 { "true" } else { "false" }),
            (Type::Int64, Wire::Varint(v)) => write!(out, "{}", *v as i64).expect("write"),
            (Type::Uint64, Wire::Varint(v)) => write!(out, "{v}").expect("write"),
            (Type::Int32, Wire::Varint(v)) => write!(out, "{}", *v as i64 as i32).expect("write"),
            (Type::Uint32, Wire::Varint(v)) => write!(out, "{}", *v as u32).expect("write"),
            (Type::Sint32 | Type::Sint64, Wire::Varint(v)) => {
                let n = ((*v >> 1) as i64) ^ -((*v & 1) as i64);
                write!(out, "{n}").expect("write")
            }
            (Type::Enum, Wire::Varint(v)) => {
                let n = *v as i64 as i32;
                match self
                    .enums
                    .get(&field.type_name)
                    .and_then(|e| e.names.get(&n))
                {
                    Some(name) => write_str(out, name),
                    None => write!(out, "{n}").expect("write"),
                }
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    fn write_default(&self, field: &FieldDesc, default: &str, out: &mut String) {
        match field.ty {
            Type::String => write_str(out, default),
            Type::Bytes => write_str(
                out,
                &base64::engine::general_purpose::STANDARD.encode(default),
            ),
            Type::Enum => write_str(out, default),
            Type::Double | Type::Float => write_double(out, default.parse().unwrap_or(0.0)),
            _ => out.push_str(default),
        }
    }

    /// Checks serialized protobuf `bytes` of message `name` the way a C++ parse does: valid
    /// wire format and every required field present (reported by path).
    pub fn check_protobuf(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let mut missing = Vec::new();
        self.check_message(name, bytes, "", &mut missing)?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("Missing required fields: {}", missing.join(", ")))
        }
    }

    fn check_message(
        &self,
        name: &str,
        bytes: &[u8],
        path: &str,
        missing: &mut Vec<String>,
    ) -> Result<(), String> {
        let desc = self.message(name);
        let mut seen = vec![false; desc.fields.len()];
        let mut counts = vec![0usize; desc.fields.len()];
        let mut rd = Reader { buf: bytes, pos: 0 };
        while !rd.done() {
            let key = rd.varint()?;
            let wire = rd.value((key & 7) as u8)?;
            let Some(&idx) = desc.by_number.get(&((key >> 3) as u32)) else {
                continue;
            };
            seen[idx] = true;
            let field = &desc.fields[idx];
            if field.ty == Type::Message {
                let Wire::Len(b) = wire else {
                    return Err(format!("field {} is not length-delimited", field.name));
                };
                let child = if field.repeated {
                    format!("{}{}[{}]", prefix(path), field.name, counts[idx])
                } else {
                    format!("{}{}", prefix(path), field.name)
                };
                counts[idx] += 1;
                self.check_message(&field.type_name, b, &child, missing)?;
            }
        }
        for (idx, field) in desc.fields.iter().enumerate() {
            if field.required && !seen[idx] {
                missing.push(format!("{}{}", prefix(path), field.name));
            }
        }
        Ok(())
    }

    /// Parses a Mesos JSON `text` as message `name` and returns its protobuf encoding.
    pub fn parse_json(&self, name: &str, text: &str) -> Result<Vec<u8>, JsonError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let line = e.line().max(1);
            let near: String = if e.is_eof() {
                String::new()
            } else {
                text.lines()
                    .nth(line - 1)
                    .map(|l| {
                        l.chars()
                            .skip(e.column().saturating_sub(1))
                            .take(64)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            JsonError::Syntax(format!("syntax error at line {line} near: {near}"))
        })?;
        let serde_json::Value::Object(obj) = &value else {
            return Err(JsonError::Convert("Expecting a JSON object".to_string()));
        };
        let mut missing = Vec::new();
        let mut out = Vec::new();
        self.encode_message(name, obj, "", &mut missing, &mut out)
            .map_err(JsonError::Convert)?;
        if !missing.is_empty() {
            return Err(JsonError::Convert(format!(
                "Missing required fields: {}",
                missing.join(", ")
            )));
        }
        Ok(out)
    }

    fn encode_message(
        &self,
        name: &str,
        obj: &serde_json::Map<String, serde_json::Value>,
        path: &str,
        missing: &mut Vec<String>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let desc = self.message(name);
        let mut present = vec![false; desc.fields.len()];
        // Encode in field-number order, as C++ protobuf serializes, independent of key order.
        let mut order: Vec<usize> = (0..desc.fields.len()).collect();
        order.sort_by_key(|&i| desc.fields[i].number);
        for idx in order {
            let field = &desc.fields[idx];
            let Some(value) = obj.get(&field.name) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let child_path = if path.is_empty() {
                field.name.clone()
            } else {
                format!("{path}.{}", field.name)
            };
            if field.repeated {
                let entry = (field.ty == Type::Message)
                    .then(|| self.message(&field.type_name))
                    .filter(|m| m.map_entry);
                if let Some(entry) = entry {
                    let serde_json::Value::Object(map) = value else {
                        return Err(format!(
                            "Expecting a JSON object for field '{}'",
                            field.name
                        ));
                    };
                    let key_field = &entry.fields[entry.by_number[&1]];
                    let value_field = &entry.fields[entry.by_number[&2]];
                    for (k, v) in map {
                        let mut body = Vec::new();
                        let key_json = serde_json::Value::String(k.clone());
                        self.encode_value(key_field, &key_json, &child_path, missing, &mut body)?;
                        self.encode_value(value_field, v, &child_path, missing, &mut body)?;
                        put_tag(out, field.number, 2);
                        put_varint(out, body.len() as u64);
                        out.extend_from_slice(&body);
                    }
                } else {
                    let serde_json::Value::Array(items) = value else {
                        return Err(format!(
                            "Not expecting a JSON {} for repeated field '{}'",
                            kind(value),
                            field.name
                        ));
                    };
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{child_path}[{i}]");
                        self.encode_value(field, item, &item_path, missing, out)?;
                    }
                }
                present[idx] = true;
            } else {
                present[idx] = self.encode_value(field, value, &child_path, missing, out)?;
            }
        }
        for (idx, field) in desc.fields.iter().enumerate() {
            if field.required && !present[idx] {
                missing.push(if path.is_empty() {
                    field.name.clone()
                } else {
                    format!("{path}.{}", field.name)
                });
            }
        }
        Ok(())
    }

    /// Encodes one value with its tag; returns false if it was dropped (unknown optional enum).
    fn encode_value(
        &self,
        field: &FieldDesc,
        value: &serde_json::Value,
        path: &str,
        missing: &mut Vec<String>,
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        use serde_json::Value as J;
        let wrong = || {
            format!(
                "Not expecting a JSON {} for field '{}'",
                kind(value),
                field.name
            )
        };
        match field.ty {
            Type::Message => {
                let J::Object(obj) = value else {
                    return Err(wrong());
                };
                let mut body = Vec::new();
                self.encode_message(&field.type_name, obj, path, missing, &mut body)?;
                put_tag(out, field.number, 2);
                put_varint(out, body.len() as u64);
                out.extend_from_slice(&body);
            }
            Type::String => {
                let J::String(s) = value else {
                    return Err(wrong());
                };
                put_tag(out, field.number, 2);
                put_varint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            Type::Bytes => {
                let J::String(s) = value else {
                    return Err(wrong());
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("Failed to base64 decode '{}': {e}", field.name))?;
                put_tag(out, field.number, 2);
                put_varint(out, bytes.len() as u64);
                out.extend_from_slice(&bytes);
            }
            Type::Enum => {
                let J::String(s) = value else {
                    return Err(wrong());
                };
                match self
                    .enums
                    .get(&field.type_name)
                    .and_then(|e| e.numbers.get(s))
                {
                    Some(n) => {
                        put_tag(out, field.number, 0);
                        put_varint(out, *n as i64 as u64);
                    }
                    None if field.required => {
                        return Err(format!("Failed to find enum for '{s}'"));
                    }
                    None => return Ok(false),
                }
            }
            Type::Bool => {
                let b = match value {
                    J::Bool(b) => *b,
                    J::String(s) if s == "true" => true,
                    J::String(s) if s == "false" => false,
                    _ => return Err(wrong()),
                };
                put_tag(out, field.number, 0);
                put_varint(out, u64::from(b));
            }
            Type::Double | Type::Float => {
                let d = match value {
                    J::Number(n) => n.as_f64().ok_or_else(wrong)?,
                    J::String(s) => match s.as_str() {
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        other => other.trim().parse::<f64>().map_err(|_| wrong())?,
                    },
                    _ => return Err(wrong()),
                };
                if field.ty == Type::Double {
                    put_tag(out, field.number, 1);
                    out.extend_from_slice(&d.to_bits().to_le_bytes());
                } else {
                    put_tag(out, field.number, 5);
                    out.extend_from_slice(&(d as f32).to_bits().to_le_bytes());
                }
            }
            _ => {
                let n: i128 = match value {
                    J::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            i128::from(i)
                        } else if let Some(u) = n.as_u64() {
                            i128::from(u)
                        } else {
                            let f = n.as_f64().ok_or_else(wrong)?;
                            if f.fract() != 0.0 {
                                return Err(wrong());
                            }
                            f as i128
                        }
                    }
                    J::String(s) => s.trim().parse::<i128>().map_err(|_| wrong())?,
                    _ => return Err(wrong()),
                };
                match field.ty {
                    Type::Fixed64 | Type::Sfixed64 => {
                        put_tag(out, field.number, 1);
                        out.extend_from_slice(&(n as u64).to_le_bytes());
                    }
                    Type::Fixed32 | Type::Sfixed32 => {
                        put_tag(out, field.number, 5);
                        out.extend_from_slice(&(n as u32).to_le_bytes());
                    }
                    Type::Sint32 | Type::Sint64 => {
                        let i = n as i64;
                        put_tag(out, field.number, 0);
                        put_varint(out, ((i << 1) ^ (i >> 63)) as u64);
                    }
                    Type::Uint32 => {
                        put_tag(out, field.number, 0);
                        put_varint(out, u64::from(n as u32));
                    }
                    _ => {
                        put_tag(out, field.number, 0);
                        put_varint(out, n as i64 as u64);
                    }
                }
            }
        }
        Ok(true)
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn sep(out: &mut String, first: &mut bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
}

fn write_key(out: &mut String, key: &str) {
    write_str(out, key);
    out.push(':');
}

fn write_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// rapidjson's double format: shortest round-trip digits, always with a fraction or exponent,
/// and bare `Infinity`/`NaN` tokens for non-finite values.
pub fn write_double(out: &mut String, d: f64) {
    if d.is_nan() {
        out.push_str("NaN");
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 { "Infinity" } else { "-Infinity" });
    } else if d.fract() == 0.0 && d.abs() < 1e17 {
        write!(out, "{d:.1}").expect("write to String");
    } else {
        write!(out, "{d:?}").expect("write to String");
    }
}

#[derive(Debug, Clone)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".to_string())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.buf.get(self.pos..end).ok_or("truncated field")?;
        self.pos = end;
        Ok(s)
    }

    fn value(&mut self, wire_type: u8) -> Result<Wire<'a>, String> {
        Ok(match wire_type {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Wire::Len(self.take(n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            other => return Err(format!("unsupported wire type {other}")),
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}
