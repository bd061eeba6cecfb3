//! A small JSON Schema (draft 2020-12) validator for the subset of keywords
//! `docs/schema/event-line.schema.json` uses: `type`, `required`,
//! `properties`, `additionalProperties`, `enum`, `const`, `minimum`,
//! `oneOf` and local `$ref`s (`#/...`), plus the annotations `$schema`,
//! `$id`, `$defs`, `title` and `description`.
//!
//! Any other keyword makes [`Schema::new`] fail, so a schema can never pass
//! an instance by using a keyword this validator would silently ignore.

use std::path::{Path, PathBuf};

use serde_json::Value;

const ASSERTIONS: [&str; 9] =
    ["type", "required", "properties", "additionalProperties", "enum", "const", "minimum", "oneOf", "$ref"];
const ANNOTATIONS: [&str; 5] = ["$schema", "$id", "$defs", "title", "description"];

/// `docs/schema/event-line.schema.json` in this repository.
pub fn event_line_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/event-line.schema.json")
}

/// The event-line schema, loaded and checked.
pub fn event_line_schema() -> Schema {
    let path = event_line_schema_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    Schema::new(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub struct Schema {
    root: Value,
}

impl Schema {
    /// Checks that every subschema uses only supported keywords, that
    /// every `$ref` resolves, and that the dialect is draft 2020-12.
    pub fn new(root: Value) -> Result<Self, String> {
        let dialect = root.get("$schema").and_then(Value::as_str);
        if dialect != Some("https://json-schema.org/draft/2020-12/schema") {
            return Err(format!("$schema is {dialect:?}, not draft 2020-12"));
        }
        let schema = Self { root };
        schema.check(&schema.root, "#")?;
        Ok(schema)
    }

    fn check(&self, schema: &Value, at: &str) -> Result<(), String> {
        let Some(object) = schema.as_object() else {
            return match schema {
                Value::Bool(_) => Ok(()),
                _ => Err(format!("{at}: a schema must be an object or a boolean")),
            };
        };
        for (key, value) in object {
            if !ASSERTIONS.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                return Err(format!("{at}: unsupported keyword {key:?}"));
            }
            match key.as_str() {
                "$defs" | "properties" => {
                    let map = value.as_object().ok_or_else(|| format!("{at}/{key} must be an object"))?;
                    for (name, sub) in map {
                        self.check(sub, &format!("{at}/{key}/{name}"))?;
                    }
                }
                "additionalProperties" => self.check(value, &format!("{at}/{key}"))?,
                "oneOf" => {
                    let list = value
                        .as_array()
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| format!("{at}/oneOf must be a non-empty array"))?;
                    for (i, sub) in list.iter().enumerate() {
                        self.check(sub, &format!("{at}/oneOf/{i}"))?;
                    }
                }
                "$ref" => {
                    let target = value.as_str().ok_or_else(|| format!("{at}/$ref must be a string"))?;
                    self.resolve(target).map_err(|e| format!("{at}: {e}"))?;
                }
                "type" => {
                    let names: Vec<&Value> = match value {
                        Value::Array(list) => list.iter().collect(),
                        single => vec![single],
                    };
                    for name in names {
                        let known = ["null", "boolean", "object", "array", "number", "integer", "string"];
                        if !name.as_str().is_some_and(|n| known.contains(&n)) {
                            return Err(format!("{at}/type: unknown type {name}"));
                        }
                    }
                }
                "required" | "enum" if !value.is_array() => return Err(format!("{at}/{key} must be an array")),
                "minimum" if !value.is_number() => return Err(format!("{at}/minimum must be a number")),
                _ => {}
            }
        }
        Ok(())
    }

    fn resolve(&self, reference: &str) -> Result<&Value, String> {
        let pointer =
            reference.strip_prefix('#').ok_or_else(|| format!("only local $refs are supported, not {reference:?}"))?;
        self.root.pointer(pointer).ok_or_else(|| format!("$ref {reference:?} does not resolve"))
    }

    /// `Ok` when `instance` is valid, else every error found, each naming
    /// the instance location (`/key`) and the schema location.
    pub fn validate(&self, instance: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.validate_at(&self.root, "#", instance, "", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Validates one line of text (it must be JSON).
    pub fn validate_line(&self, line: &str) -> Result<(), Vec<String>> {
        let value: Value = serde_json::from_str(line).map_err(|e| vec![format!("not JSON: {e}")])?;
        self.validate(&value)
    }

    fn validate_at(&self, schema: &Value, at: &str, instance: &Value, path: &str, errors: &mut Vec<String>) {
        let object = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(format!("{path}: not allowed here ({at})")),
            Value::Object(object) => object,
            _ => unreachable!("checked by Schema::new"),
        };
        if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(reference).expect("checked by Schema::new");
            self.validate_at(target, reference, instance, path, errors);
        }
        if let Some(types) = object.get("type") {
            let names: Vec<&str> = match types {
                Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                single => single.as_str().into_iter().collect(),
            };
            if !names.iter().any(|name| has_type(instance, name)) {
                errors.push(format!("{path}: {instance} is not of type {types} ({at}/type)"));
            }
        }
        if let Some(expected) = object.get("const") {
            if !json_equal(instance, expected) {
                errors.push(format!("{path}: {instance} is not {expected} ({at}/const)"));
            }
        }
        if let Some(Value::Array(options)) = object.get("enum") {
            if !options.iter().any(|option| json_equal(instance, option)) {
                errors.push(format!("{path}: {instance} is not one of {} ({at}/enum)", Value::Array(options.clone())));
            }
        }
        if let (Some(minimum), Some(number)) = (object.get("minimum").and_then(Value::as_f64), instance.as_f64()) {
            if number < minimum {
                errors.push(format!("{path}: {number} is less than the minimum {minimum} ({at}/minimum)"));
            }
        }
        if let Value::Object(fields) = instance {
            if let Some(Value::Array(required)) = object.get("required") {
                for key in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(key) {
                        errors.push(format!("{path}: required key {key:?} is missing ({at}/required)"));
                    }
                }
            }
            let properties = object.get("properties").and_then(Value::as_object);
            for (key, value) in fields {
                let child = format!("{path}/{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => self.validate_at(sub, &format!("{at}/properties/{key}"), value, &child, errors),
                    None => {
                        if let Some(additional) = object.get("additionalProperties") {
                            if additional == &Value::Bool(false) {
                                errors.push(format!("{path}: key {key:?} is not allowed ({at}/additionalProperties)"));
                            } else {
                                self.validate_at(
                                    additional,
                                    &format!("{at}/additionalProperties"),
                                    value,
                                    &child,
                                    errors,
                                );
                            }
                        }
                    }
                }
            }
        }
        if let Some(Value::Array(options)) = object.get("oneOf") {
            let mut failures = Vec::new();
            let mut passed = 0;
            for (i, option) in options.iter().enumerate() {
                let mut sub = Vec::new();
                self.validate_at(option, &format!("{at}/oneOf/{i}"), instance, path, &mut sub);
                if sub.is_empty() {
                    passed += 1;
                } else {
                    failures.push(format!("[{i}] {}", sub.join("; ")));
                }
            }
            if passed != 1 {
                errors.push(format!(
                    "{path}: matches {passed} of the oneOf schemas, not exactly 1 ({at}/oneOf): {}",
                    failures.join(" | ")
                ));
            }
        }
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        // Draft 2020-12: any number with a zero fractional part.
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// JSON equality: numbers by value (1 equals 1.0), objects by keys.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
