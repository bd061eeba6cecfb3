//! Strict JSON parsing for untrusted metrics files (spec 3).
//!
//! `serde_json` on its own keeps the last of duplicate keys, turns integers
//! beyond 64 bits into floats, and without its `float_roundtrip` feature
//! (which the workspace enables) may round a float literal to a
//! neighbouring value. [`parse_strict`] rejects duplicate keys, trailing
//! garbage, non-finite and out-of-range numbers, and nesting beyond
//! [`MAX_NESTING_DEPTH`]; numbers come out exactly as Python's `json` module
//! reads them (the tests below fail if `float_roundtrip` is ever dropped).
//! Strings and keys borrow from the text unless they hold an escape: no
//! allocation for each of them.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// The deepest nesting of arrays and objects [`parse_strict`] accepts
/// (spec 3: deeper than 128 levels is corrupt).
///
/// Checked by [`nesting_depth`] before parsing, so serde_json's own
/// recursion limit (which stops at 127) is switched off.
pub const MAX_NESTING_DEPTH: usize = 128;

/// A parsed JSON value, borrowing its strings from the text it was parsed
/// from where it can. Objects keep their members in document order and
/// never hold two members with the same key.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The member `key` of an object; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages ("a number", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Parses one JSON document strictly; the error says what is wrong and where.
pub fn parse_strict(text: &str) -> Result<Json<'_>, String> {
    let depth = nesting_depth(text);
    if depth > MAX_NESTING_DEPTH {
        return Err(format!("recursion limit exceeded: nesting deeper than {MAX_NESTING_DEPTH} levels"));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // Safe: the depth was bounded just above.
    deserializer.disable_recursion_limit();
    let mut json = Json::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    // Only a float of 2^63 or more may have been an integer literal too
    // long for 64 bits (spec 3: out of range), which only its literal
    // tells: then every float is read again from its literal. Below that,
    // `float_roundtrip` already rounded each one correctly, and the text is
    // not scanned a second time.
    if any_float_from(&json, TOO_LONG_FOR_64_BITS) {
        reread_floats(&mut json, &mut NumberLiterals::new(text))?;
    }
    Ok(json)
}

/// The smallest magnitude an integer literal beyond 64 bits reaches as a
/// float: -(2^63 + 1) rounds to -2^63 (2^64 and above for positive ones).
const TOO_LONG_FOR_64_BITS: f64 = 9_223_372_036_854_775_808.0;

/// Whether `json` holds a float of magnitude `at_least` or more.
fn any_float_from(json: &Json<'_>, at_least: f64) -> bool {
    match json {
        Json::Number(number) => number.is_f64() && number.as_f64().is_some_and(|f| f.abs() >= at_least),
        Json::Array(items) => items.iter().any(|item| any_float_from(item, at_least)),
        Json::Object(members) => members.iter().any(|(_, value)| any_float_from(value, at_least)),
        Json::Null | Json::Bool(_) | Json::String(_) => false,
    }
}

/// The deepest nesting of `[`/`{` outside strings. Unbalanced or invalid
/// text is left to the parser to reject; this only bounds its recursion.
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// An object's key, borrowed from the text unless it holds an escape
/// (serde's own `Cow<str>` always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(value)))
    }
}

struct JsonVisitor;

/// How many members of an object are checked for a duplicate key by
/// comparison before a set takes over.
const SET_FROM: usize = 16;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Json<'de>, E> {
        Number::from_f64(value).map(Json::Number).ok_or_else(|| E::custom(format!("non-finite number {value}")))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        // No size hint: the input alone bounds the growth.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        // Metrics files have a handful of keys: compared with those before,
        // no copy of each key. Past `SET_FROM`, a set of them, so a hostile
        // object of thousands of keys stays O(n log n).
        let mut seen: Option<BTreeSet<Cow<'de, str>>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let duplicate = match &mut seen {
                Some(seen) => !seen.insert(key.clone()),
                None => members.iter().any(|(earlier, _)| *earlier == key),
            };
            if duplicate {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value()?;
            members.push((key, value));
            if seen.is_none() && members.len() >= SET_FROM {
                seen = Some(members.iter().map(|(key, _)| key.clone()).collect());
            }
        }
        Ok(Json::Object(members))
    }
}

/// Replaces every float of `json` by the correctly rounded value of its
/// literal. `literals` yields the number literals of the source text in
/// document order, which is also the order of the tree's numbers.
fn reread_floats(json: &mut Json<'_>, literals: &mut NumberLiterals<'_>) -> Result<(), String> {
    match json {
        Json::Number(number) => {
            let literal = literals.next().ok_or("internal error: number literal not found")?;
            if number.is_f64() {
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    // serde_json turns integers beyond 64 bits into floats,
                    // losing digits; spec 3 makes them out of range.
                    return Err(format!("number out of range: integer {literal} does not fit in 64 bits"));
                }
                *number = exact_float(literal)?;
            }
        }
        Json::Array(items) => {
            for item in items {
                reread_floats(item, literals)?;
            }
        }
        Json::Object(members) => {
            for (_, value) in members {
                reread_floats(value, literals)?;
            }
        }
        Json::Null | Json::Bool(_) | Json::String(_) => {}
    }
    Ok(())
}

/// The correctly rounded finite value of a JSON number literal.
fn exact_float(literal: &str) -> Result<Number, String> {
    literal.parse::<f64>().ok().and_then(Number::from_f64).ok_or_else(|| format!("number out of range: {literal}"))
}

/// The number literals of a valid JSON text, in order; string contents are
/// skipped.
struct NumberLiterals<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> NumberLiterals<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn skip_string(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(&byte) = bytes.get(self.pos) {
            self.pos += 1;
            match byte {
                b'\\' => self.pos += 1,
                b'"' => return,
                _ => {}
            }
        }
    }

    fn take_number(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        while bytes.get(self.pos).is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.pos += 1;
        }
        self.text.get(start..self.pos)
    }
}

impl<'a> Iterator for NumberLiterals<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while let Some(&byte) = self.text.as_bytes().get(self.pos) {
            match byte {
                b'"' => {
                    self.pos += 1;
                    self.skip_string();
                }
                b'-' | b'0'..=b'9' => return self.take_number(),
                _ => self.pos += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(json: &Json) -> f64 {
        match json {
            Json::Number(n) => n.as_f64().unwrap(),
            other => panic!("not a number: {other:?}"),
        }
    }

    fn nested_arrays(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn nested_objects(depth: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn parses_every_kind_of_value() {
        let json = parse_strict(
            r#" {"n": null, "b": true, "i": -3, "u": 18446744073709551615,
            "f": 1.5, "s": "x\u00e9", "a": [1, [], {}]} "#,
        )
        .unwrap();
        let Json::Object(members) = &json else { panic!("not an object") };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["n", "b", "i", "u", "f", "s", "a"]);
        assert_eq!(json.get("n"), Some(&Json::Null));
        assert_eq!(json.get("b"), Some(&Json::Bool(true)));
        assert_eq!(json.get("i"), Some(&Json::Number((-3i64).into())));
        assert_eq!(json.get("u"), Some(&Json::Number(u64::MAX.into())));
        assert_eq!(json.get("f").map(num), Some(1.5));
        assert_eq!(json.get("s"), Some(&Json::String("xé".into())));
        assert_eq!(
            json.get("a"),
            Some(&Json::Array(vec![Json::Number(1u64.into()), Json::Array(vec![]), Json::Object(vec![])]))
        );
        assert_eq!(json.get("missing"), None);
        assert_eq!(Json::Null.get("n"), None);
    }

    #[test]
    fn scalars_at_top_level_parse() {
        assert_eq!(parse_strict("null").unwrap(), Json::Null);
        assert_eq!(parse_strict("\"s\"").unwrap(), Json::String("s".into()));
        assert_eq!(parse_strict(" 7 ").unwrap(), Json::Number(7u64.into()));
    }

    #[test]
    fn kind_names_each_variant() {
        let kinds: Vec<&str> = [
            Json::Null,
            Json::Bool(false),
            Json::Number(1u64.into()),
            Json::String("".into()),
            Json::Array(vec![]),
            Json::Object(vec![]),
        ]
        .iter()
        .map(Json::kind)
        .collect();
        assert_eq!(kinds, ["null", "a boolean", "a number", "a string", "an array", "an object"]);
    }

    #[test]
    fn strings_and_keys_borrow_from_the_text_unless_escaped() {
        let json = parse_strict(r#"{"plain": "text", "esc\u0061ped": "a\nb"}"#).unwrap();
        let Json::Object(members) = &json else { panic!("not an object") };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")), "{members:?}");
        assert!(matches!(members[0].1, Json::String(Cow::Borrowed("text"))), "{members:?}");
        assert!(matches!(&members[1].0, Cow::Owned(key) if key == "escaped"), "{members:?}");
        assert!(matches!(&members[1].1, Json::String(Cow::Owned(value)) if value == "a\nb"), "{members:?}");
        // A duplicate spelt with an escape is still the same key.
        assert!(parse_strict(r#"{"escaped": 1, "esc\u0061ped": 2}"#).unwrap_err().contains("duplicate key"));
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse_strict(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap_err();
        assert!(err.contains("duplicate key \"a\""), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn rejects_duplicate_keys_before_and_after_the_set_takes_over() {
        // Every position: a duplicate of every earlier key, in objects
        // shorter and longer than `SET_FROM`.
        for len in [2, SET_FROM - 1, SET_FROM, SET_FROM + 1, 3 * SET_FROM] {
            let keys: Vec<String> = (0..len).map(|i| format!("\"k{i}\": {i}")).collect();
            assert!(parse_strict(&format!("{{{}}}", keys.join(", "))).is_ok(), "{len} distinct keys");
            for dup in 0..len {
                let text = format!("{{{}, \"k{dup}\": 0}}", keys.join(", "));
                let err = parse_strict(&text).unwrap_err();
                assert!(err.contains(&format!("duplicate key \"k{dup}\"")), "{len} keys, k{dup}: {err}");
            }
        }
    }

    #[test]
    fn rejects_duplicate_keys_spelled_differently() {
        let err = parse_strict(r#"{"a": 1, "\u0061": 2}"#).unwrap_err();
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[test]
    fn rejects_duplicate_keys_in_nested_objects() {
        let err = parse_strict(r#"{"x": [{"k": 1, "k": 1}]}"#).unwrap_err();
        assert!(err.contains("duplicate key \"k\""), "{err}");
        // The same key in different objects is fine.
        assert!(parse_strict(r#"{"k": {"k": 1}, "l": [{"k": 2}, {"k": 3}]}"#).is_ok());
    }

    #[test]
    fn rejects_trailing_garbage() {
        for text in ["{} x", "1 2", "[1] ]", "{}{}", "null,", "\"a\" \"b\""] {
            let err = parse_strict(text).unwrap_err();
            assert!(err.contains("trailing characters"), "{text}: {err}");
        }
        assert!(parse_strict(" {} \n\t\r ").is_ok());
    }

    #[test]
    fn rejects_invalid_json() {
        for text in [
            "",
            "   ",
            "{",
            "{'a': 1}",
            "{\"a\" 1}",
            "[1,]",
            "{\"a\": 1,}",
            "01",
            "+1",
            ".5",
            "1.",
            "0x10",
            "tru",
            "\u{feff}{}",
            "\"unterminated",
            "\"raw\ncontrol\"",
            "\"\\ud800\"",
            "\"bad \\x escape\"",
            "// comment\n{}",
        ] {
            assert!(parse_strict(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn rejects_non_finite_numbers() {
        for text in ["NaN", "nan", "Infinity", "-Infinity", "inf", "[1, NaN]"] {
            assert!(parse_strict(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn rejects_out_of_range_numbers() {
        for text in ["1e400", "-1e400", "[1e309]", "{\"t\": 2e308}", "1.7976931348623159e308"] {
            let err = parse_strict(text).unwrap_err();
            assert!(err.contains("out of range"), "{text}: {err}");
        }
    }

    #[test]
    fn integers_beyond_64_bits_are_out_of_range() {
        for literal in ["18446744073709551616", "-9223372036854775809", "123456789012345678901234"] {
            let err = parse_strict(literal).unwrap_err();
            assert!(err.contains("out of range"), "{literal}: {err}");
        }
        for literal in ["18446744073709551615", "-9223372036854775808", "-0"] {
            assert!(parse_strict(literal).is_ok(), "{literal}");
        }
    }

    #[test]
    fn tiny_numbers_underflow_to_zero() {
        assert_eq!(num(&parse_strict("1e-400").unwrap()), 0.0);
        assert_eq!(num(&parse_strict("5e-324").unwrap()), 5e-324);
    }

    #[test]
    fn nesting_limit_is_128_levels() {
        assert_eq!(MAX_NESTING_DEPTH, 128);
        for depth in [1, 2, 127, MAX_NESTING_DEPTH] {
            assert!(parse_strict(&nested_arrays(depth)).is_ok(), "{depth} arrays");
            assert!(parse_strict(&nested_objects(depth)).is_ok(), "{depth} objects");
        }
        for depth in [MAX_NESTING_DEPTH + 1, 129, 1000, 100_000] {
            let err = parse_strict(&nested_arrays(depth)).unwrap_err();
            assert!(err.contains("recursion limit exceeded"), "{depth}: {err}");
            let err = parse_strict(&nested_objects(depth)).unwrap_err();
            assert!(err.contains("recursion limit exceeded"), "{depth}: {err}");
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let text = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(300), "{".repeat(300));
        assert!(parse_strict(&text).is_ok(), "{text}");
        let mixed = format!("{}1{}", r#"[{"a":"#.repeat(64), "}]".repeat(64));
        assert!(parse_strict(&mixed).is_ok(), "128 mixed levels parse");
    }

    #[test]
    fn nesting_limit_counts_mixed_containers() {
        let mixed = format!("{}1{}", r#"[{"a":"#.repeat(65), "}]".repeat(65));
        let err = parse_strict(&mixed).unwrap_err();
        assert!(err.contains("recursion limit exceeded"), "{err}");
        let mixed = format!("{}1{}", r#"[{"a":"#.repeat(63), "}]".repeat(63));
        assert!(parse_strict(&mixed).is_ok());
    }

    #[test]
    fn floats_are_correctly_rounded() {
        // serde_json without `float_roundtrip` reads these one ulp off.
        for literal in [
            "1700318902.1206151",
            "1700676440.6904165",
            "1700609362.8559281",
            "0.30000000000000004",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
            "123456789012345680.0",
            "9007199254740993.5",
            "1E+2",
            "-0.0",
        ] {
            let expected: f64 = literal.parse().unwrap();
            let parsed = num(&parse_strict(literal).unwrap());
            assert_eq!(parsed.to_bits(), expected.to_bits(), "{literal}");
        }
    }

    #[test]
    fn many_timestamp_literals_are_correctly_rounded() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let literal = format!("{}.{:07}", 1_600_000_000 + state % 200_000_000, (state >> 32) % 10_000_000);
            let text = format!("{{\"t\": [\"1.5\", {literal}, 2]}}");
            let json = parse_strict(&text).unwrap();
            let Some(Json::Array(items)) = json.get("t") else { panic!("{text}") };
            assert_eq!(num(&items[1]), literal.parse::<f64>().unwrap(), "{literal}");
        }
    }

    #[test]
    fn floats_are_matched_to_literals_in_document_order() {
        let text = r#"{"s": "1.0 -2e5 \" 3.5 \\", "a": [0.1, 7, -8, 1e2, {"3.25": 2.5e-3}], "z": 1700000000.1234567}"#;
        let json = parse_strict(text).unwrap();
        let Some(Json::Array(items)) = json.get("a") else { panic!() };
        assert_eq!(num(&items[0]), 0.1);
        assert_eq!(items[1], Json::Number(7u64.into()));
        assert_eq!(items[2], Json::Number((-8i64).into()));
        assert_eq!(num(&items[3]), 100.0);
        assert_eq!(items[4].get("3.25").map(num), Some(0.0025));
        assert_eq!(json.get("z").map(num), Some(1_700_000_000.123_456_7));
        assert_eq!(json.get("s"), Some(&Json::String("1.0 -2e5 \" 3.5 \\".into())));
    }

    #[test]
    fn floats_are_matched_to_literals_when_one_needs_its_literal() {
        // 1e19 is past 2^63: every float is read again from its literal.
        let text = r#"{"s": "2.5 \" 7e1", "a": [0.1, 1e19, -8, 1700000000.1206151], "z": 9223372036854775807}"#;
        let json = parse_strict(text).unwrap();
        let Some(Json::Array(items)) = json.get("a") else { panic!() };
        assert_eq!(num(&items[0]), 0.1);
        assert_eq!(num(&items[1]), 1e19);
        assert_eq!(items[2], Json::Number((-8i64).into()));
        assert_eq!(num(&items[3]).to_bits(), "1700000000.1206151".parse::<f64>().unwrap().to_bits());
        assert_eq!(json.get("z"), Some(&Json::Number(i64::MAX.into())));
        assert!(any_float_from(&json, TOO_LONG_FOR_64_BITS));
        assert!(!any_float_from(&parse_strict("[9.2e18, -9.2e18, 1]").unwrap(), TOO_LONG_FOR_64_BITS));
    }

    #[test]
    fn random_float_literals_read_as_rust_reads_them() {
        // Mantissas of 1 to 25 digits, with and without a fraction and an
        // exponent: what serde_json's `float_roundtrip` is trusted with.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..50_000 {
            let digits: String = (0..1 + next(25)).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let digits = digits.trim_start_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            let point = next(digits.len() as u64 + 1) as usize;
            let (int, frac) = digits.split_at(point);
            let int = if int.is_empty() { "0" } else { int };
            let mut literal = if frac.is_empty() { format!("{int}.5") } else { format!("{int}.{frac}") };
            if next(3) == 0 {
                literal.push_str(&format!("e{}", next(60) as i64 - 30));
            }
            if next(2) == 0 {
                literal.insert(0, '-');
            }
            let parsed = num(&parse_strict(&literal).unwrap());
            assert_eq!(parsed.to_bits(), literal.parse::<f64>().unwrap().to_bits(), "{literal}");
        }
    }

    #[test]
    fn integers_keep_their_kind() {
        let json = parse_strict("[0, -0, 9223372036854775807, -9223372036854775808, 1.0, 1e3]").unwrap();
        let Json::Array(items) = json else { panic!() };
        assert!(items[0].eq(&Json::Number(0u64.into())));
        let Json::Number(neg_zero) = &items[1] else { panic!() };
        assert!(neg_zero.is_f64());
        assert_eq!(items[2], Json::Number(i64::MAX.into()));
        assert_eq!(items[3], Json::Number(i64::MIN.into()));
        for float in &items[4..] {
            let Json::Number(n) = float else { panic!() };
            assert!(n.is_f64(), "{n}");
        }
    }

    #[test]
    fn number_literals_skip_strings_and_escapes() {
        let text = r#"["12", "\\", 3, "\"4", -5.5e1, "\u0036"]"#;
        let literals: Vec<&str> = NumberLiterals::new(text).collect();
        assert_eq!(literals, ["3", "-5.5e1"]);
    }

    #[test]
    fn number_literals_survive_truncated_text() {
        // Never reached with valid JSON, but must not panic.
        assert_eq!(NumberLiterals::new("\"abc\\").count(), 0);
        assert_eq!(NumberLiterals::new("\"é\\").count(), 0);
        assert_eq!(NumberLiterals::new("é1").collect::<Vec<_>>(), ["1"]);
    }
}
