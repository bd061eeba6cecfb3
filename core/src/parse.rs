//! Validation of the untrusted files a runner leaves in its storage (spec 3).
//!
//! Each parser turns raw file bytes into a model value, `None` when the file
//! counts as missing, or a [`Corruption`] that names the reason for the
//! quarantine and, in its detail, the key and the problem.

use crate::json::{parse_strict, Json};
use crate::model::{CodeInformation, PostJobMetrics, PostJobStatus, PreJobMetrics, QuarantineReason};
use crate::render::python_float_repr;
use crate::FILE_SIZE_BYTES_LIMIT;

/// Longest untrusted string quoted in a detail message, in characters.
const QUOTE_LIMIT: usize = 64;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why one metrics file makes its storage corrupt: what the parsers return.
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub reason: QuarantineReason,
    pub detail: String,
}

impl Corruption {
    pub fn new(reason: QuarantineReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// Parses a `*.timestamp` file (spec 3.3): decimal text of a finite,
/// non-negative number with optional surrounding ASCII whitespace. Empty or whitespace-only
/// content counts as missing.
pub fn parse_timestamp(bytes: &[u8]) -> Result<Option<f64>, Corruption> {
    let text = decode(bytes)?.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    parse_decimal(text).map(Some).map_err(|problem| Corruption::new(QuarantineReason::InvalidTimestamp, problem))
}

/// Parses `pre-job-metrics.json` (spec 3.1).
pub fn parse_pre_job(bytes: &[u8]) -> Result<Option<PreJobMetrics>, Corruption> {
    let Some(object) = parse_object(bytes)? else {
        return Ok(None);
    };
    Ok(Some(PreJobMetrics {
        timestamp: number_or_numeric_string(&object, "timestamp")?,
        workflow: text_or_number(&object, "workflow")?,
        workflow_run_id: text_or_number(&object, "workflow_run_id")?,
        repository: repository(&object)?,
        event: string(&object, "event")?,
        workflow_run_attempt: run_attempt(&object)?,
    }))
}

/// Parses `post-job-metrics.json` (spec 3.2).
pub fn parse_post_job(bytes: &[u8]) -> Result<Option<PostJobMetrics>, Corruption> {
    let Some(object) = parse_object(bytes)? else {
        return Ok(None);
    };
    Ok(Some(PostJobMetrics {
        timestamp: number(&object, "timestamp")?,
        status: status(&object)?,
        status_info: status_code(&object)?.map(|code| CodeInformation { code }),
    }))
}

/// The file as UTF-8 text, refusing oversized content and a byte-order mark.
fn decode(bytes: &[u8]) -> Result<&str, Corruption> {
    if bytes.len() > FILE_SIZE_BYTES_LIMIT {
        return Err(Corruption::new(QuarantineReason::Oversized, format!("more than {FILE_SIZE_BYTES_LIMIT} bytes")));
    }
    if bytes.starts_with(UTF8_BOM) {
        return Err(Corruption::new(QuarantineReason::InvalidUtf8, "starts with a UTF-8 byte-order mark"));
    }
    std::str::from_utf8(bytes).map_err(|e| Corruption::new(QuarantineReason::InvalidUtf8, e.to_string()))
}

/// The top-level object of a JSON metrics file; `None` when the file is empty,
/// whitespace only or an empty object.
fn parse_object(bytes: &[u8]) -> Result<Option<Json<'_>>, Corruption> {
    let text = decode(bytes)?;
    if text.trim_ascii().is_empty() {
        return Ok(None);
    }
    let json = parse_strict(text).map_err(|e| Corruption::new(QuarantineReason::InvalidJson, e))?;
    match &json {
        Json::Object(members) if members.is_empty() => Ok(None),
        Json::Object(_) => Ok(Some(json)),
        other => Err(Corruption::new(
            QuarantineReason::InvalidJson,
            format!("the top-level value must be an object, got {}", other.kind()),
        )),
    }
}

/// An `InvalidValue` corruption about `key`: `"key": problem`.
fn invalid(key: &str, problem: impl std::fmt::Display) -> Corruption {
    Corruption::new(QuarantineReason::InvalidValue, format!("{key:?}: {problem}"))
}

/// `value` for detail messages: numbers and literals as written, strings
/// quoted and shortened, containers by kind.
fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => quote(s),
        Json::Array(_) | Json::Object(_) => value.kind().to_owned(),
    }
}

/// `s` quoted with control characters escaped, cut after [`QUOTE_LIMIT`]
/// characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{:?}...", s.get(..cut).unwrap_or_default()),
        None => format!("{s:?}"),
    }
}

fn required<'a, 'j>(object: &'a Json<'j>, key: &str) -> Result<&'a Json<'j>, Corruption> {
    object.get(key).ok_or_else(|| invalid(key, "required but missing"))
}

/// The member `key` unless it is missing or null.
fn optional<'a, 'j>(object: &'a Json<'j>, key: &str) -> Option<&'a Json<'j>> {
    object.get(key).filter(|value| **value != Json::Null)
}

/// A required JSON number, finite and >= 0 (post-job `timestamp`).
fn number(object: &Json, key: &str) -> Result<f64, Corruption> {
    match required(object, key)? {
        Json::Number(n) => non_negative_number(n).map_err(|problem| invalid(key, problem)),
        other => Err(invalid(key, format!("must be a number, got {}", describe(other)))),
    }
}

/// A required number or numeric string, finite and >= 0 (pre-job `timestamp`).
fn number_or_numeric_string(object: &Json, key: &str) -> Result<f64, Corruption> {
    match required(object, key)? {
        Json::Number(n) => non_negative_number(n),
        Json::String(s) => parse_decimal(s.trim_ascii()),
        other => Err(format!("must be a number or a numeric string, got {}", describe(other))),
    }
    .map_err(|problem| invalid(key, problem))
}

/// A required string; a number is accepted and rendered as Python's `str`
/// would (`123`, `1.5`).
fn text_or_number(object: &Json, key: &str) -> Result<String, Corruption> {
    match required(object, key)? {
        Json::String(s) => Ok(String::from(&**s)),
        Json::Number(n) => Ok(number_as_text(n)),
        other => Err(invalid(key, format!("must be a string or a number, got {}", describe(other)))),
    }
}

fn number_as_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(x) if n.is_f64() => python_float_repr(x),
        _ => n.to_string(),
    }
}

/// A required string.
fn string(object: &Json, key: &str) -> Result<String, Corruption> {
    match required(object, key)? {
        Json::String(s) => Ok(String::from(&**s)),
        other => Err(invalid(key, format!("must be a string, got {}", describe(other)))),
    }
}

/// The optional `repository`, shaped `owner/repo`.
fn repository(object: &Json) -> Result<Option<String>, Corruption> {
    const KEY: &str = "repository";
    match optional(object, KEY) {
        None => Ok(None),
        Some(Json::String(s)) if is_owner_slash_repo(s) => Ok(Some(String::from(&**s))),
        Some(Json::String(s)) => Err(invalid(KEY, format!("must look like owner/repo, got {}", quote(s)))),
        Some(other) => Err(invalid(KEY, format!("must be a string, got {}", describe(other)))),
    }
}

/// The optional `workflow_run_attempt` (spec 3.1): a positive integer (a
/// string of digits is accepted, as for the run id), at most `u32::MAX`.
fn run_attempt(object: &Json) -> Result<Option<u32>, Corruption> {
    const KEY: &str = "workflow_run_attempt";
    let attempt = match optional(object, KEY) {
        None => return Ok(None),
        Some(Json::Number(n)) if !n.is_f64() => n.as_u64(),
        Some(Json::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(other) => {
            return Err(invalid(KEY, format!("must be a positive integer, got {}", describe(other))));
        }
    };
    match attempt.and_then(|n| u32::try_from(n).ok()).filter(|n| *n >= 1) {
        Some(n) => Ok(Some(n)),
        None => Err(invalid(KEY, "must be a positive integer of at most 4294967295")),
    }
}

/// At least one character on each side of some `/`.
fn is_owner_slash_repo(s: &str) -> bool {
    s.char_indices().any(|(i, c)| c == '/' && i > 0 && i + 1 < s.len())
}

fn status(object: &Json) -> Result<PostJobStatus, Corruption> {
    const KEY: &str = "status";
    match required(object, KEY)? {
        Json::String(s) => PostJobStatus::from_str_exact(s).ok_or_else(|| {
            invalid(
                KEY,
                format!(
                    "must be one of normal, abnormal, repo-policy-check-failure, \
                     external-contributor-check-failure, got {}",
                    quote(s)
                ),
            )
        }),
        other => Err(invalid(KEY, format!("must be a string, got {}", describe(other)))),
    }
}

/// `status_info.code` when `status_info` is an object; `None` when it is
/// missing or null.
fn status_code(object: &Json) -> Result<Option<i64>, Corruption> {
    const KEY: &str = "status_info";
    const CODE_KEY: &str = "status_info.code";
    let info = match optional(object, KEY) {
        None => return Ok(None),
        Some(info @ Json::Object(_)) => info,
        Some(other) => return Err(invalid(KEY, format!("must be an object or null, got {}", describe(other)))),
    };
    match required(info, "code").map_err(|_| invalid(CODE_KEY, "required but missing"))? {
        Json::Number(n) if n.is_f64() => Err(invalid(CODE_KEY, format!("must be an integer, got {n}"))),
        Json::Number(n) => {
            n.as_i64().map(Some).ok_or_else(|| invalid(CODE_KEY, format!("out of range for a 64-bit integer, got {n}")))
        }
        other => Err(invalid(CODE_KEY, format!("must be an integer, got {}", describe(other)))),
    }
}

/// A JSON number that is finite and >= 0.
fn non_negative_number(n: &serde_json::Number) -> Result<f64, String> {
    let x = n.as_f64().ok_or_else(|| format!("not representable as a float: {n}"))?;
    non_negative(x, &n.to_string())
}

/// Decimal text `[+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?` of a
/// finite number >= 0, as in timestamp files.
fn parse_decimal(text: &str) -> Result<f64, String> {
    let not_decimal = || format!("must be a decimal number, got {}", quote(text));
    if !is_decimal_literal(text) {
        return Err(not_decimal());
    }
    let x: f64 = text.parse().map_err(|_| not_decimal())?;
    non_negative(x, text)
}

/// `x` if finite and >= 0, with `-0` turned into `0`; `shown` is how the
/// value was written, for the message.
fn non_negative(x: f64, shown: &str) -> Result<f64, String> {
    if !x.is_finite() {
        Err(format!("out of range, got {shown}"))
    } else if x < 0.0 {
        Err(format!("must be >= 0, got {shown}"))
    } else {
        Ok(x + 0.0)
    }
}

/// Whether `text` matches `[+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?`.
fn is_decimal_literal(text: &str) -> bool {
    let rest = skip_one(text.as_bytes(), |b| b == b'+' || b == b'-').0;
    let (rest, integer_digits) = skip_digits(rest);
    let (rest, fraction_digits) = match skip_one(rest, |b| b == b'.') {
        (after_point, true) => skip_digits(after_point),
        (rest, false) => (rest, 0),
    };
    if integer_digits + fraction_digits == 0 {
        return false;
    }
    match skip_one(rest, |b| b == b'e' || b == b'E') {
        (after_e, true) => {
            let after_sign = skip_one(after_e, |b| b == b'+' || b == b'-').0;
            let (rest, exponent_digits) = skip_digits(after_sign);
            exponent_digits > 0 && rest.is_empty()
        }
        (rest, false) => rest.is_empty(),
    }
}

/// `bytes` without its first byte if that byte matches, and whether it did.
fn skip_one(bytes: &[u8], matches: impl Fn(u8) -> bool) -> (&[u8], bool) {
    match bytes.split_first() {
        Some((&first, rest)) if matches(first) => (rest, true),
        _ => (bytes, false),
    }
}

/// `bytes` without its leading ASCII digits, and how many there were.
fn skip_digits(bytes: &[u8]) -> (&[u8], usize) {
    let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    (bytes.get(count..).unwrap_or_default(), count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuarantineReason::*;

    fn reason<T: std::fmt::Debug>(result: Result<T, Corruption>) -> QuarantineReason {
        result.unwrap_err().reason
    }

    fn detail<T: std::fmt::Debug>(result: Result<T, Corruption>) -> String {
        result.unwrap_err().detail
    }

    const PRE_JOB: &str = r#"{"workflow": "wf", "repository": "owner/repo", "event": "push",
        "timestamp": 1700000000, "workflow_run_id": "123456"}"#;

    fn pre_job_with(key: &str, value: &str) -> Result<Option<PreJobMetrics>, Corruption> {
        let mut members = vec![
            ("timestamp", "1700000000"),
            ("workflow", "\"wf\""),
            ("workflow_run_id", "\"123456\""),
            ("repository", "\"owner/repo\""),
            ("event", "\"push\""),
        ];
        members.retain(|(k, _)| *k != key);
        if value != "<absent>" {
            members.push((key, value));
        }
        let body: Vec<String> = members.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
        parse_pre_job(format!("{{{}}}", body.join(", ")).as_bytes())
    }

    fn post_job_with(key: &str, value: &str) -> Result<Option<PostJobMetrics>, Corruption> {
        let mut members = vec![("timestamp", "1700000100"), ("status", "\"normal\"")];
        members.retain(|(k, _)| *k != key);
        if value != "<absent>" {
            members.push((key, value));
        }
        let body: Vec<String> = members.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
        parse_post_job(format!("{{{}}}", body.join(", ")).as_bytes())
    }

    // ---- timestamp files ----

    #[test]
    fn timestamp_accepts_decimal_text() {
        let cases: &[(&str, f64)] = &[
            ("1700000000", 1_700_000_000.0),
            ("1700000000\n", 1_700_000_000.0),
            ("  1700000000 \r\n\t", 1_700_000_000.0),
            ("1700000000.5", 1_700_000_000.5),
            ("1700000000.1234567", 1_700_000_000.123_456_7),
            ("1e9", 1e9),
            ("1E9", 1e9),
            ("1e+9", 1e9),
            ("15e-1", 1.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("+5", 5.0),
            ("007", 7.0),
            ("0", 0.0),
            ("0.0", 0.0),
            ("1e-400", 0.0),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_timestamp(text.as_bytes()), Ok(Some(expected)), "{text:?}");
        }
    }

    #[test]
    fn timestamp_negative_zero_is_zero() {
        for text in ["-0", "-0.0", "-.0", "-0e5"] {
            let value = parse_timestamp(text.as_bytes()).unwrap().unwrap();
            assert_eq!(value.to_bits(), 0.0f64.to_bits(), "{text}");
        }
    }

    #[test]
    fn timestamp_empty_or_whitespace_is_missing() {
        for text in ["", " ", "\n", " \t\r\n\x0c "] {
            assert_eq!(parse_timestamp(text.as_bytes()), Ok(None), "{text:?}");
        }
        assert_eq!(parse_timestamp(&[b' '; FILE_SIZE_BYTES_LIMIT]), Ok(None));
    }

    #[test]
    fn timestamp_rejects_everything_else() {
        for text in [
            "abc", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "infinity", "1_000", "0x10", "1e", "1e+", ".", "+", "-",
            "e5", ".e5", "1.2.3", "1 2", "1\x002", "\0", "1\0", "--1", "+-1", "1e5.5", "१२", "1,5", "½", "\u{a0}1",
            "1\x0b", "{}", "\"1\"",
        ] {
            assert_eq!(reason(parse_timestamp(text.as_bytes())), InvalidTimestamp, "{text:?}");
        }
    }

    #[test]
    fn timestamp_rejects_overflow() {
        for text in ["1e400", "1e309", "9".repeat(400).as_str()] {
            let corruption = parse_timestamp(text.as_bytes()).unwrap_err();
            assert_eq!(corruption.reason, InvalidTimestamp, "{text}");
            assert!(corruption.detail.contains("out of range"), "{}", corruption.detail);
        }
    }

    #[test]
    fn timestamp_details_say_what_is_wrong() {
        assert_eq!(detail(parse_timestamp(b"-1")), "must be >= 0, got -1");
        assert_eq!(detail(parse_timestamp(b"abc\n")), "must be a decimal number, got \"abc\"");
        assert_eq!(detail(parse_timestamp(b"1e400")), "out of range, got 1e400");
    }

    #[test]
    fn timestamp_rejects_invalid_utf8_and_bom() {
        assert_eq!(reason(parse_timestamp(b"\xff1")), InvalidUtf8);
        assert_eq!(reason(parse_timestamp(b"17\xc3")), InvalidUtf8);
        assert_eq!(reason(parse_timestamp(b"\xEF\xBB\xBF1700000000")), InvalidUtf8);
    }

    #[test]
    fn timestamp_rejects_oversized_content() {
        let mut text = vec![b' '; FILE_SIZE_BYTES_LIMIT - 1];
        text.push(b'1');
        assert_eq!(parse_timestamp(&text), Ok(Some(1.0)));
        text.push(b' ');
        assert_eq!(reason(parse_timestamp(&text)), Oversized);
    }

    #[test]
    fn timestamp_long_quoted_detail_is_shortened() {
        let text = "x".repeat(500);
        let detail = detail(parse_timestamp(text.as_bytes()));
        assert!(detail.len() < 100, "{detail}");
        assert!(detail.ends_with("..."), "{detail}");
    }

    #[test]
    fn quote_escapes_control_characters() {
        assert_eq!(quote("a\x1b[31m\n"), "\"a\\u{1b}[31m\\n\"");
        assert_eq!(quote(&"é".repeat(QUOTE_LIMIT)), format!("{:?}", "é".repeat(QUOTE_LIMIT)));
        assert_eq!(quote(&"é".repeat(QUOTE_LIMIT + 1)), format!("{:?}...", "é".repeat(QUOTE_LIMIT)));
    }

    // ---- pre-job ----

    #[test]
    fn pre_job_reference_content() {
        let pre_job = parse_pre_job(PRE_JOB.as_bytes()).unwrap().unwrap();
        assert_eq!(
            pre_job,
            PreJobMetrics {
                timestamp: 1_700_000_000.0,
                workflow: "wf".into(),
                workflow_run_id: "123456".into(),
                repository: Some("owner/repo".into()),
                event: "push".into(),
                workflow_run_attempt: None,
            }
        );
    }

    #[test]
    fn pre_job_run_attempt_is_an_optional_positive_integer() {
        let with = |attempt: &str| {
            let text = format!(
                r#"{{"timestamp": 1, "workflow": "w", "workflow_run_id": "1", "event": "push", "workflow_run_attempt": {attempt}}}"#
            );
            parse_pre_job(text.as_bytes()).map(|p| p.and_then(|p| p.workflow_run_attempt))
        };
        for (attempt, expected) in [("1", Some(1)), ("\"2\"", Some(2)), ("4294967295", Some(u32::MAX)), ("null", None)]
        {
            assert_eq!(with(attempt), Ok(expected), "{attempt}");
        }
        for attempt in ["0", "-1", "1.5", "\"x\"", "\"\"", "true", "4294967296", "[1]"] {
            let e = with(attempt).unwrap_err();
            assert_eq!(e.reason, QuarantineReason::InvalidValue, "{attempt}");
            assert!(
                e.detail.starts_with("\"workflow_run_attempt\": must be a positive integer"),
                "{attempt}: {}",
                e.detail
            );
        }
    }

    #[test]
    fn pre_job_missing_when_empty() {
        for text in ["", "  \n", "{}", " {}\n", "\t{}\r\n", "{ }", "{\n}"] {
            assert_eq!(parse_pre_job(text.as_bytes()), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn pre_job_ignores_unknown_keys() {
        let pre_job = pre_job_with("extra", r#"{"deep": [1, 2, {"x": null}]}"#).unwrap().unwrap();
        assert_eq!(pre_job.workflow, "wf");
    }

    #[test]
    fn pre_job_timestamp_number_or_numeric_string() {
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("3.0", 3.0),
            ("1700000000.1234567", 1_700_000_000.123_456_7),
            ("\"1700000000\"", 1_700_000_000.0),
            ("\" 1700000000.5\\n\"", 1_700_000_000.5),
            ("\"1e9\"", 1e9),
            ("\".5\"", 0.5),
            ("1e2", 100.0),
        ];
        for &(value, expected) in cases {
            let pre_job = pre_job_with("timestamp", value).unwrap().unwrap();
            assert_eq!(pre_job.timestamp, expected, "{value}");
        }
    }

    #[test]
    fn pre_job_timestamp_negative_zero_is_zero() {
        for value in ["-0", "-0.0", "\"-0\""] {
            let pre_job = pre_job_with("timestamp", value).unwrap().unwrap();
            assert_eq!(pre_job.timestamp.to_bits(), 0.0f64.to_bits(), "{value}");
        }
    }

    #[test]
    fn pre_job_timestamp_invalid_values() {
        for value in [
            "-1",
            "-0.001",
            "\"-1\"",
            "\"abc\"",
            "\"\"",
            "\" \"",
            "\"nan\"",
            "\"inf\"",
            "\"1e400\"",
            "\"0x10\"",
            "\"1_0\"",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            "[1]",
            "<absent>",
        ] {
            assert_eq!(reason(pre_job_with("timestamp", value)), InvalidValue, "{value}");
        }
    }

    #[test]
    fn pre_job_timestamp_details() {
        assert_eq!(detail(pre_job_with("timestamp", "-1")), "\"timestamp\": must be >= 0, got -1");
        assert_eq!(detail(pre_job_with("timestamp", "-1.5")), "\"timestamp\": must be >= 0, got -1.5");
        assert_eq!(detail(pre_job_with("timestamp", "\"-1\"")), "\"timestamp\": must be >= 0, got -1");
        assert_eq!(
            detail(pre_job_with("timestamp", "\"abc\"")),
            "\"timestamp\": must be a decimal number, got \"abc\""
        );
        assert_eq!(
            detail(pre_job_with("timestamp", "true")),
            "\"timestamp\": must be a number or a numeric string, got true"
        );
        assert_eq!(detail(pre_job_with("timestamp", "<absent>")), "\"timestamp\": required but missing");
    }

    #[test]
    fn pre_job_workflow_and_run_id_accept_numbers_as_text() {
        let cases: &[(&str, &str)] = &[
            ("\"\"", ""),
            ("\"ci \\u00e9\"", "ci é"),
            ("123", "123"),
            ("-7", "-7"),
            ("0", "0"),
            ("18446744073709551615", "18446744073709551615"),
            ("1.5", "1.5"),
            ("1.0", "1.0"),
            ("1e3", "1000.0"),
            ("1e16", "1e+16"),
            ("-0.0", "-0.0"),
            ("0.1", "0.1"),
        ];
        for key in ["workflow", "workflow_run_id"] {
            for &(value, expected) in cases {
                let pre_job = pre_job_with(key, value).unwrap().unwrap();
                let actual = if key == "workflow" { &pre_job.workflow } else { &pre_job.workflow_run_id };
                assert_eq!(actual, expected, "{key}: {value}");
            }
        }
    }

    #[test]
    fn pre_job_workflow_and_run_id_invalid_values() {
        for key in ["workflow", "workflow_run_id"] {
            for value in ["true", "false", "null", "[]", "{}", "[\"a\"]", "<absent>"] {
                assert_eq!(reason(pre_job_with(key, value)), InvalidValue, "{key}: {value}");
            }
        }
        assert_eq!(detail(pre_job_with("workflow", "null")), "\"workflow\": must be a string or a number, got null");
        assert_eq!(detail(pre_job_with("workflow_run_id", "<absent>")), "\"workflow_run_id\": required but missing");
    }

    #[test]
    fn pre_job_repository_is_optional() {
        for value in ["null", "<absent>"] {
            let pre_job = pre_job_with("repository", value).unwrap().unwrap();
            assert_eq!(pre_job.repository, None, "{value}");
        }
    }

    #[test]
    fn pre_job_repository_shapes() {
        for value in ["a/b", "owner/repo", "a/b/c", "a//b", "/a/b", "a/b/", "é/ü", "o r/x y"] {
            let json = serde_json::to_string(value).unwrap();
            let pre_job = pre_job_with("repository", &json).unwrap().unwrap();
            assert_eq!(pre_job.repository.as_deref(), Some(value));
        }
        for value in ["", "a", "/", "a/", "/b", "//", "ab", "é/"] {
            let json = serde_json::to_string(value).unwrap();
            assert_eq!(reason(pre_job_with("repository", &json)), InvalidValue, "{value:?}");
        }
        for value in ["1", "true", "[]", "{}"] {
            assert_eq!(reason(pre_job_with("repository", value)), InvalidValue, "{value}");
        }
        assert_eq!(
            detail(pre_job_with("repository", "\"repo\"")),
            "\"repository\": must look like owner/repo, got \"repo\""
        );
        assert_eq!(detail(pre_job_with("repository", "5")), "\"repository\": must be a string, got 5");
    }

    #[test]
    fn pre_job_event_is_a_required_string() {
        assert_eq!(pre_job_with("event", "\"\"").unwrap().unwrap().event, "");
        assert_eq!(pre_job_with("event", "\"workflow_dispatch\"").unwrap().unwrap().event, "workflow_dispatch");
        for value in ["1", "true", "null", "[]", "{}", "<absent>"] {
            assert_eq!(reason(pre_job_with("event", value)), InvalidValue, "{value}");
        }
        assert_eq!(detail(pre_job_with("event", "1")), "\"event\": must be a string, got 1");
    }

    #[test]
    fn pre_job_structural_corruption() {
        let cases: &[(&[u8], QuarantineReason)] = &[
            (b"\xEF\xBB\xBF{}", InvalidUtf8),
            (b"{\"workflow\": \"\xff\"}", InvalidUtf8),
            (b"{", InvalidJson),
            (b"{} {}", InvalidJson),
            (b"{}x", InvalidJson),
            (b"[]", InvalidJson),
            (b"null", InvalidJson),
            (b"1700000000", InvalidJson),
            (b"\"{}\"", InvalidJson),
            (b"[{}]", InvalidJson),
            (b"{\"timestamp\": 1, \"timestamp\": 2}", InvalidJson),
            (b"{\"timestamp\": 1e400}", InvalidJson),
            (b"{\"timestamp\": NaN}", InvalidJson),
            (b"{\"timestamp\": Infinity}", InvalidJson),
            (b"{\"timestamp\": 1,}", InvalidJson),
            (b"{'timestamp': 1}", InvalidJson),
            (b"{\"workflow\": \"a\x01b\"}", InvalidJson),
            (b"{\"timestamp\": 1}", InvalidValue),
        ];
        for &(bytes, expected) in cases {
            assert_eq!(reason(parse_pre_job(bytes)), expected, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn pre_job_top_level_detail_names_the_kind() {
        assert_eq!(detail(parse_pre_job(b"[1]")), "the top-level value must be an object, got an array");
    }

    #[test]
    fn pre_job_too_deep_is_invalid_json() {
        let deep = format!("{{\"x\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(reason(parse_pre_job(deep.as_bytes())), InvalidJson);
    }

    #[test]
    fn pre_job_oversized() {
        let padding = " ".repeat(FILE_SIZE_BYTES_LIMIT);
        let text = format!("{PRE_JOB}{padding}");
        assert_eq!(reason(parse_pre_job(text.as_bytes())), Oversized);
        let exact = format!("{PRE_JOB}{}", " ".repeat(FILE_SIZE_BYTES_LIMIT - PRE_JOB.len()));
        assert!(parse_pre_job(exact.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn pre_job_first_problem_is_reported_in_key_order() {
        // Every field is wrong; the timestamp is checked first.
        let text = r#"{"timestamp": -1, "workflow": null, "workflow_run_id": null, "event": 1}"#;
        assert_eq!(detail(parse_pre_job(text.as_bytes())), "\"timestamp\": must be >= 0, got -1");
    }

    // ---- post-job ----

    #[test]
    fn post_job_reference_contents() {
        let normal = parse_post_job(br#"{"timestamp": 1700000100, "status": "normal"}"#).unwrap().unwrap();
        assert_eq!(
            normal,
            PostJobMetrics { timestamp: 1_700_000_100.0, status: PostJobStatus::Normal, status_info: None }
        );
        let abnormal = parse_post_job(br#"{"timestamp": 5.5, "status": "abnormal", "status_info": {"code": 1}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            abnormal,
            PostJobMetrics {
                timestamp: 5.5,
                status: PostJobStatus::Abnormal,
                status_info: Some(CodeInformation { code: 1 })
            }
        );
        let policy =
            parse_post_job(br#"{"timestamp": 0, "status": "repo-policy-check-failure", "status_info": {"code": 403}}"#)
                .unwrap()
                .unwrap();
        assert_eq!(
            policy,
            PostJobMetrics {
                timestamp: 0.0,
                status: PostJobStatus::RepoPolicyCheckFailure,
                status_info: Some(CodeInformation { code: 403 })
            }
        );
    }

    #[test]
    fn post_job_missing_when_empty() {
        for text in ["", "\n", "{}", "  {}  \n", "{ }"] {
            assert_eq!(parse_post_job(text.as_bytes()), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn post_job_every_status() {
        for status in [
            PostJobStatus::Normal,
            PostJobStatus::Abnormal,
            PostJobStatus::RepoPolicyCheckFailure,
            PostJobStatus::ExternalContributorCheckFailure,
        ] {
            let value = format!("\"{}\"", status.as_str());
            assert_eq!(post_job_with("status", &value).unwrap().unwrap().status, status);
        }
    }

    #[test]
    fn post_job_invalid_status() {
        for value in [
            "\"Normal\"",
            "\"NORMAL\"",
            "\" normal\"",
            "\"normal \"",
            "\"\"",
            "\"other\"",
            "\"repo_policy_check_failure\"",
            "1",
            "true",
            "null",
            "[]",
            "{}",
            "<absent>",
        ] {
            assert_eq!(reason(post_job_with("status", value)), InvalidValue, "{value}");
        }
        assert_eq!(
            detail(post_job_with("status", "\"bad\"")),
            "\"status\": must be one of normal, abnormal, repo-policy-check-failure, \
             external-contributor-check-failure, got \"bad\""
        );
    }

    #[test]
    fn post_job_timestamp_must_be_a_number() {
        assert_eq!(post_job_with("timestamp", "0").unwrap().unwrap().timestamp, 0.0);
        assert_eq!(post_job_with("timestamp", "3.0").unwrap().unwrap().timestamp, 3.0);
        let negative_zero = post_job_with("timestamp", "-0.0").unwrap().unwrap().timestamp;
        assert_eq!(negative_zero.to_bits(), 0.0f64.to_bits());
        for value in ["\"1700000000\"", "-1", "-1e-300", "true", "null", "[]", "{}", "<absent>"] {
            assert_eq!(reason(post_job_with("timestamp", value)), InvalidValue, "{value}");
        }
        assert_eq!(detail(post_job_with("timestamp", "-1")), "\"timestamp\": must be >= 0, got -1");
        assert_eq!(detail(post_job_with("timestamp", "\"1\"")), "\"timestamp\": must be a number, got \"1\"");
        assert_eq!(reason(post_job_with("timestamp", "1e400")), InvalidJson);
    }

    #[test]
    fn post_job_status_info_is_optional() {
        for value in ["null", "<absent>"] {
            assert_eq!(post_job_with("status_info", value).unwrap().unwrap().status_code(), None, "{value}");
        }
    }

    #[test]
    fn post_job_status_info_code() {
        let cases: &[(&str, i64)] = &[
            (r#"{"code": 0}"#, 0),
            (r#"{"code": 1}"#, 1),
            (r#"{"code": -1}"#, -1),
            (r#"{"code": 403, "message": "forbidden"}"#, 403),
            (r#"{"code": 9223372036854775807}"#, i64::MAX),
            (r#"{"code": -9223372036854775808}"#, i64::MIN),
        ];
        for &(value, expected) in cases {
            assert_eq!(post_job_with("status_info", value).unwrap().unwrap().status_code(), Some(expected), "{value}");
        }
    }

    #[test]
    fn post_job_invalid_status_info() {
        for value in [
            r#"{}"#,
            r#"{"Code": 1}"#,
            r#"{"code": null}"#,
            r#"{"code": 1.5}"#,
            r#"{"code": 1.0}"#,
            r#"{"code": 1e3}"#,
            r#"{"code": "1"}"#,
            r#"{"code": true}"#,
            r#"{"code": [1]}"#,
            r#"{"code": 9223372036854775808}"#,
            "1",
            "\"code\"",
            "true",
            "[]",
            "[{\"code\": 1}]",
        ] {
            assert_eq!(reason(post_job_with("status_info", value)), InvalidValue, "{value}");
        }
        // Beyond 64 bits a number is out of range: the whole file is corrupt JSON.
        assert_eq!(reason(post_job_with("status_info", r#"{"code": 18446744073709551616}"#)), InvalidJson);
        assert_eq!(
            detail(post_job_with("status_info", r#"{"code": 1.5}"#)),
            "\"status_info.code\": must be an integer, got 1.5"
        );
        assert_eq!(detail(post_job_with("status_info", r#"{}"#)), "\"status_info.code\": required but missing");
        assert_eq!(
            detail(post_job_with("status_info", r#"{"code": 9223372036854775808}"#)),
            "\"status_info.code\": out of range for a 64-bit integer, got 9223372036854775808"
        );
        assert_eq!(
            detail(post_job_with("status_info", "[]")),
            "\"status_info\": must be an object or null, got an array"
        );
    }

    #[test]
    fn post_job_structural_corruption() {
        let cases: &[(&[u8], QuarantineReason)] = &[
            (b"\xEF\xBB\xBF{\"timestamp\": 1, \"status\": \"normal\"}", InvalidUtf8),
            (b"\xc3\x28", InvalidUtf8),
            (b"[]", InvalidJson),
            (b"\"normal\"", InvalidJson),
            (b"{\"status\": \"normal\", \"status\": \"abnormal\", \"timestamp\": 1}", InvalidJson),
            (b"{\"timestamp\": 1, \"status\": \"normal\", \"status_info\": {\"code\": 1, \"code\": 2}}", InvalidJson),
            (b"{\"timestamp\": 1, \"status\": \"normal\"} trailing", InvalidJson),
        ];
        for &(bytes, expected) in cases {
            assert_eq!(reason(parse_post_job(bytes)), expected, "{}", String::from_utf8_lossy(bytes));
        }
        let oversized = vec![b' '; FILE_SIZE_BYTES_LIMIT + 1];
        assert_eq!(reason(parse_post_job(&oversized)), Oversized);
    }

    // ---- helpers ----

    #[test]
    fn decimal_literal_grammar() {
        for text in ["0", "5", "5.", ".5", "5.5", "+5", "-5", "5e1", "5E+1", "5e-1", ".5e1", "5.e1", "00.00e00"] {
            assert!(is_decimal_literal(text), "{text}");
        }
        for text in ["", ".", "+", "-", "e", "e1", ".e1", "5e", "5e+", "5ee1", "5..", "5.5.5", "++5", " 5", "5 ", "∞"]
        {
            assert!(!is_decimal_literal(text), "{text}");
        }
    }
}
