//! Event lines byte-identical to the reference's `json.dumps(event)` (spec 5).
//!
//! Log pipelines and dashboards were built against the Python reference, which
//! writes Python's default `json.dumps` output: `", "` and `": "` separators,
//! `ensure_ascii=True` escaping and `repr(float)` numbers. `serde_json` formats
//! all three differently, so the line is assembled here by hand.

use std::fmt::Write as _;

use crate::model::{CodeInformation, Event, RunnerInstalled, RunnerMetrics, RunnerStart, RunnerStop};

/// CPython's `repr(x)` of a float: the shortest digits that round-trip, in
/// fixed notation when the decimal exponent is in `[-4, 16)` (always with a
/// fractional part, `2.0`), otherwise in exponent notation with a signed,
/// at-least-two-digit exponent (`1e+16`, `1.5e-07`).
pub fn python_float_repr(x: f64) -> String {
    let mut out = String::new();
    push_python_float_repr(&mut out, x);
    out
}

/// Appends [`python_float_repr`] of `x` to `out`, with no allocation of its
/// own: a line's floats are written straight into the line.
pub fn push_python_float_repr(out: &mut String, x: f64) {
    if x.is_nan() {
        return out.push_str("nan");
    }
    if x.is_infinite() {
        return out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    }
    if x.is_sign_negative() {
        out.push('-');
    }
    // Whole numbers below 1e16 (most timestamps and durations) are their
    // integer and ".0": no float formatting, which costs thousands of
    // instructions a number.
    if x.fract() == 0.0 && x.abs() < 1e16 {
        out.push_str(itoa::Buffer::new().format(x.abs() as u64));
        return out.push_str(".0");
    }
    push_repr_by_digits(out, x.abs());
}

/// [`push_python_float_repr`] of a finite `x >= 0` by its shortest
/// round-trip digits.
fn push_repr_by_digits(out: &mut String, x: f64) {
    let mut buffer = zmij::Buffer::new();
    let decimal = shortest_digits(x, &mut buffer);
    if (-4..16).contains(&decimal.exponent) {
        push_fixed_notation(out, &decimal);
    } else {
        push_exponent_notation(out, &decimal);
    }
}

/// The shortest round-trip significant digits of a finite `x >= 0` and the
/// decimal exponent of the first one: `1234.5` -> (`"12345"`, 3).
///
/// Like CPython's `repr` (David Gay's shortest mode), Żmij gives the
/// shortest digits that round-trip and, of several, the nearest to `x`, ties
/// to even; `{:e}` alone may pick the other one of a tie
/// (`1226808092080115.25`: CPython `...115.2`). The unit tests hold the two
/// together against an exactly rounded oracle.
fn shortest_digits(x: f64, buffer: &mut zmij::Buffer) -> Decimal<'_> {
    split_decimal(buffer.format_finite(x))
}

/// A decimal number's significant digits, read in place from its written
/// form, and the decimal exponent of the first one.
struct Decimal<'a> {
    /// The written mantissa (`1234.5`, `0.00012`), digits and a point.
    mantissa: &'a str,
    /// Zeros of `mantissa` before the first significant digit.
    leading_zeros: usize,
    /// How many significant digits follow them (at least one: zero is `0`).
    len: usize,
    exponent: i32,
}

impl Decimal<'_> {
    /// The significant digits, without leading or trailing zeros.
    fn digits(&self) -> impl Iterator<Item = char> + '_ {
        self.mantissa.chars().filter(char::is_ascii_digit).skip(self.leading_zeros).take(self.len)
    }
}

/// A decimal number as written (`1234.5`, `0.00012`, `1.5e-7`, `1e+16`) as
/// its significant digits and the decimal exponent of the first one.
fn split_decimal(text: &str) -> Decimal<'_> {
    let (mantissa, exponent) =
        text.split_once(['e', 'E']).map_or((text, 0), |(m, e)| (m, e.trim_start_matches('+').parse().unwrap_or(0)));
    let integer = mantissa.split_once('.').map_or(mantissa, |(integer, _)| integer);
    let digits = || mantissa.bytes().filter(u8::is_ascii_digit);
    let leading_zeros = digits().take_while(|&d| d == b'0').count();
    let trailing_zeros = digits().rev().take_while(|&d| d == b'0').count();
    let total = digits().count();
    if leading_zeros == total {
        return Decimal { mantissa: "0", leading_zeros: 0, len: 1, exponent: 0 };
    }
    let integer_digits = integer.bytes().filter(u8::is_ascii_digit).count();
    let exponent = exponent + integer_digits as i32 - 1 - leading_zeros as i32;
    Decimal { mantissa, leading_zeros, len: total - leading_zeros - trailing_zeros, exponent }
}

/// `digits` with the decimal point after digit `exponent + 1`, for
/// `exponent` in `[-4, 16)`.
fn push_fixed_notation(out: &mut String, decimal: &Decimal<'_>) {
    let integer_len = match usize::try_from(decimal.exponent) {
        Ok(exponent) => exponent + 1,
        Err(_) => {
            out.push_str("0.");
            let leading_zeros = usize::try_from(-decimal.exponent - 1).unwrap_or(0);
            out.extend(std::iter::repeat_n('0', leading_zeros));
            return out.extend(decimal.digits());
        }
    };
    out.extend(decimal.digits().take(integer_len));
    if decimal.len > integer_len {
        out.push('.');
        out.extend(decimal.digits().skip(integer_len));
    } else {
        out.extend(std::iter::repeat_n('0', integer_len - decimal.len));
        out.push_str(".0");
    }
}

/// `d[.ddd]e±XX`.
fn push_exponent_notation(out: &mut String, decimal: &Decimal<'_>) {
    let mut digits = decimal.digits();
    out.extend(digits.next());
    if decimal.len > 1 {
        out.push('.');
        out.extend(digits);
    }
    out.push('e');
    out.push(if decimal.exponent < 0 { '-' } else { '+' });
    let magnitude = decimal.exponent.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    out.push_str(itoa::Buffer::new().format(magnitude));
}

/// How `json.dumps` writes a float: `repr`, except the non-finite values,
/// which it spells as JavaScript does.
fn push_python_json_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        push_python_float_repr(out, x);
    }
}

/// Appends `s` as a JSON string the way `json.dumps` does with
/// `ensure_ascii=True`: printable ASCII as is, `"` `\` and the five short
/// control escapes, everything else as lower-case `\uXXXX` (UTF-16 surrogate
/// pairs beyond the BMP).
pub fn push_python_json_string(out: &mut String, s: &str) {
    out.push('"');
    // Most strings (flavors, workflow names, repositories) need no escape:
    // copied whole, not a char at a time.
    if s.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => push_unicode_escape(out, c),
        }
    }
    out.push('"');
}

fn push_unicode_escape(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\u{unit:04x}");
    }
}

/// One event as a JSON line (without the newline), keys in the order of
/// spec 5, absent optional values left out.
pub fn render_event(event: &Event) -> String {
    let mut line = ObjectWriter::new();
    match event {
        Event::RunnerInstalled(installed) => write_installed(&mut line, event.kind(), installed),
        Event::RunnerStart(start) => write_start(&mut line, event.kind(), start),
        Event::RunnerStop(stop) => write_stop(&mut line, event.kind(), stop),
    }
    line.finish()
}

/// Extracted metrics as one JSON line (`runner-metrics extract`, emit
/// `metrics`). Keys and spellings follow the metrics files (spec 3), so the
/// output reads like the input it came from.
pub fn render_metrics(m: &RunnerMetrics) -> String {
    serde_json::json!({
        "runner_name": m.runner_name,
        "installation_start_timestamp": m.installation_start_timestamp,
        "installed_timestamp": m.installed_timestamp,
        "pre_job": m.pre_job.as_ref().map(|p| {
            let mut pre_job = serde_json::json!({
                "timestamp": p.timestamp,
                "workflow": p.workflow,
                "workflow_run_id": p.workflow_run_id,
                "repository": p.repository,
                "event": p.event,
            });
            // Only when the file had one: the lines of files without stay as they were.
            if let (Some(attempt), Some(object)) = (p.workflow_run_attempt, pre_job.as_object_mut()) {
                object.insert("workflow_run_attempt".to_owned(), attempt.into());
            }
            pre_job
        }),
        "post_job": m.post_job.as_ref().map(|p| serde_json::json!({
            "timestamp": p.timestamp,
            "status": p.status.as_str(),
            "status_info": p.status_code().map(|code| serde_json::json!({"code": code})),
        })),
    })
    .to_string()
}

fn write_header(line: &mut ObjectWriter, timestamp: f64, kind: &str, flavor: &str) {
    line.float("timestamp", timestamp);
    line.string("event", kind);
    line.string("flavor", flavor);
}

fn write_installed(line: &mut ObjectWriter, kind: &str, e: &RunnerInstalled) {
    write_header(line, e.timestamp, kind, &e.flavor);
    line.float("duration", e.duration);
}

fn write_start(line: &mut ObjectWriter, kind: &str, e: &RunnerStart) {
    write_header(line, e.timestamp, kind, &e.flavor);
    line.string("workflow", &e.workflow);
    line.string("repo", &e.repo);
    line.string("github_event", &e.github_event);
    line.float("idle", e.idle);
    if let Some(queue_duration) = e.queue_duration {
        line.float("queue_duration", queue_duration);
    }
}

fn write_stop(line: &mut ObjectWriter, kind: &str, e: &RunnerStop) {
    write_header(line, e.timestamp, kind, &e.flavor);
    line.string("workflow", &e.workflow);
    line.string("repo", &e.repo);
    line.string("github_event", &e.github_event);
    line.string("status", e.status.as_str());
    if let Some(CodeInformation { code }) = e.status_info {
        line.key("status_info");
        line.out.push_str("{\"code\": ");
        line.out.push_str(itoa::Buffer::new().format(code));
        line.out.push('}');
    }
    line.float("job_duration", e.job_duration);
    if let Some(conclusion) = e.job_conclusion {
        line.string("job_conclusion", conclusion.as_str());
    }
}

/// The capacity a line starts with.
const LINE_CAPACITY: usize = 320;

/// Writes one JSON object with Python's default separators.
struct ObjectWriter {
    out: String,
    empty: bool,
}

impl ObjectWriter {
    fn new() -> Self {
        // Room for a usual line (100 to 260 bytes): one allocation, no regrowth.
        let mut out = String::with_capacity(LINE_CAPACITY);
        out.push('{');
        Self { out, empty: true }
    }

    /// `key` is one of this file's own spellings (`status_info`, ...): plain
    /// ASCII that `json.dumps` writes as it is, so it is copied unscanned.
    fn key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{key}");
        if !self.empty {
            self.out.push_str(", ");
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\": ");
    }

    fn string(&mut self, key: &'static str, value: &str) {
        self.key(key);
        push_python_json_string(&mut self.out, value);
    }

    fn float(&mut self, key: &'static str, value: f64) {
        self.key(key);
        push_python_json_float(&mut self.out, value);
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobConclusion, PostJobStatus};

    /// `(x, repr(x))`, generated with CPython 3.11. The tie cases are exact
    /// binary values written out in full, hence the allow.
    #[allow(clippy::excessive_precision)]
    const FLOAT_REPRS: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (2.0, "2.0"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (0.3333333333333333, "0.3333333333333333"),
        (0.6666666666666666, "0.6666666666666666"),
        (1e22, "1e+22"),
        (1e23, "1e+23"),
        (123456789012345680.0, "1.2345678901234568e+17"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.7976931348623157e308, "-1.7976931348623157e+308"),
        (2.2250738585072014e-308, "2.2250738585072014e-308"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (0.00012345, "0.00012345"),
        (1.5e-07, "1.5e-07"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (9999999999999998.0, "9999999999999998.0"),
        (1234567890123456.0, "1234567890123456.0"),
        (12345678901234567.0, "1.2345678901234568e+16"),
        (1700000000.123456, "1700000000.123456"),
        (1700000000.1234567, "1700000000.1234567"),
        (1700000000.0, "1700000000.0"),
        (3600.0, "3600.0"),
        (100.0, "100.0"),
        (1e100, "1e+100"),
        (-1e-100, "-1e-100"),
        (0.30000000000000004, "0.30000000000000004"),
        (123.456, "123.456"),
        (4.35, "4.35"),
        (2.675, "2.675"),
        (1e21, "1e+21"),
        (999999999999999.9, "999999999999999.9"),
        (0.001, "0.001"),
        (9.999999999999999e-05, "9.999999999999999e-05"),
        (1.0000000000000002, "1.0000000000000002"),
        (5e-05, "5e-05"),
        (0.5, "0.5"),
        (1e301, "1e+301"),
        // Ties between two shortest candidates go to the even digit.
        (1226808092080115.25, "1226808092080115.2"),
        (122034507889505.125, "122034507889505.12"),
        (-130076704275028.625, "-130076704275028.62"),
        (976237252619766.25, "976237252619766.2"),
    ];

    /// `(s, json.dumps(s))`, generated with CPython 3.11.
    const STRING_ESCAPES: &[(&str, &str)] = &[
        ("plain", r#""plain""#),
        ("", r#""""#),
        ("quote\"back\\\\slash/", r#""quote\"back\\\\slash/""#),
        ("nl\nret\rtab\tbs\x08ff\x0c", r#""nl\nret\rtab\tbs\bff\f""#),
        ("nul\0", r#""nul\u0000""#),
        ("\x1b[31mred\x1b[0m", r#""\u001b[31mred\u001b[0m""#),
        ("é", r#""\u00e9""#),
        ("€", r#""\u20ac""#),
        ("😀", r#""\ud83d\ude00""#),
        ("\x7f", r#""\u007f""#),
        ("\x1f", r#""\u001f""#),
        ("\u{2028}", r#""\u2028""#),
        ("\u{d7ff}\u{e000}\u{ffff}", r#""\ud7ff\ue000\uffff""#),
        ("\u{10ffff}", r#""\udbff\udfff""#),
        ("mix é😀\x01", r#""mix \u00e9\ud83d\ude00\u0001""#),
    ];

    fn json_string(s: &str) -> String {
        let mut out = String::new();
        push_python_json_string(&mut out, s);
        out
    }

    fn start(queue_duration: Option<f64>) -> RunnerStart {
        RunnerStart {
            timestamp: 3.0,
            flavor: "small".into(),
            workflow: "ci".into(),
            repo: "org/repo".into(),
            github_event: "push".into(),
            idle: 1.0,
            queue_duration,
        }
    }

    fn stop(status_code: Option<i64>, job_conclusion: Option<JobConclusion>) -> RunnerStop {
        RunnerStop {
            timestamp: 5.0,
            flavor: "small".into(),
            workflow: "ci".into(),
            repo: "org/repo".into(),
            github_event: "push".into(),
            status: PostJobStatus::Abnormal,
            status_info: status_code.map(|code| CodeInformation { code }),
            job_duration: 2.0,
            job_conclusion,
        }
    }

    /// The digits the way this module found them before Żmij: `{:e}` for
    /// the shortest length, then `{:.N$e}` (exactly rounded, ties to even)
    /// for the nearest of that length when it round-trips. Slow; an oracle.
    fn shortest_digits_by_std(x: f64) -> (String, i32) {
        let shortest = parts(split_decimal(&format!("{x:e}")));
        let precision = shortest.0.len().saturating_sub(1);
        let nearest = format!("{x:.precision$e}");
        if nearest.parse::<f64>() == Ok(x) {
            parts(split_decimal(&nearest))
        } else {
            shortest
        }
    }

    /// A `Decimal`'s digits, collected, and its exponent.
    fn parts(decimal: Decimal<'_>) -> (String, i32) {
        (decimal.digits().collect(), decimal.exponent)
    }

    /// The repr by digits alone, without the shortcut for whole numbers.
    fn repr_by_digits(x: f64) -> String {
        let mut out = String::from(if x.is_sign_negative() { "-" } else { "" });
        push_repr_by_digits(&mut out, x.abs());
        out
    }

    fn python_json_float(x: f64) -> String {
        let mut out = String::new();
        push_python_json_float(&mut out, x);
        out
    }

    #[test]
    #[allow(clippy::excessive_precision)] // a tie, written out in full
    fn shortest_digits_agree_with_the_exactly_rounded_oracle() {
        let mut bits: u64 = 0x0123_4567_89ab_cdef;
        let mut checked = vec![1226808092080115.25, 5e-324, f64::MAX, f64::MIN_POSITIVE, 0.1, 1e23, 9007199254740993.0];
        for _ in 0..200_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            checked.push(f64::from_bits(bits).abs());
            // Durations and timestamps, the values the lines carry.
            checked.push((bits % 4_000_000_000_000) as f64 / 1000.0);
            checked.push((bits % 10_000_000_000_000_000) as f64 / 1e6 + 0.25);
        }
        for x in checked.into_iter().filter(|x| x.is_finite()) {
            assert_eq!(parts(shortest_digits(x, &mut zmij::Buffer::new())), shortest_digits_by_std(x), "{x:e}");
        }
    }

    #[test]
    fn split_decimal_reads_every_notation() {
        assert_eq!(parts(split_decimal("1234.5")), ("12345".to_owned(), 3));
        assert_eq!(parts(split_decimal("0.00012345")), ("12345".to_owned(), -4));
        assert_eq!(parts(split_decimal("1.5e-7")), ("15".to_owned(), -7));
        assert_eq!(parts(split_decimal("1e+16")), ("1".to_owned(), 16));
        assert_eq!(parts(split_decimal("1.2345678901234568e17")), ("12345678901234568".to_owned(), 17));
        assert_eq!(parts(split_decimal("100.0")), ("1".to_owned(), 2));
        assert_eq!(parts(split_decimal("0.0")), ("0".to_owned(), 0));
        assert_eq!(parts(split_decimal("5e-324")), ("5".to_owned(), -324));
    }

    #[test]
    fn float_repr_matches_cpython() {
        for &(x, expected) in FLOAT_REPRS {
            assert_eq!(python_float_repr(x), expected, "{x:e}");
        }
    }

    #[test]
    fn whole_numbers_take_a_shortcut_to_the_same_repr() {
        let mut bits: u64 = 0x2545_f491_4f6c_dd1d;
        let mut checked = vec![0.0, -0.0, 1.0, -1.0, 1e15, 9999999999999998.0, 1700000060.0, 4503599627370497.0];
        for _ in 0..20_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let magnitude = (bits % 10_000_000_000_000_000) as f64;
            checked.push(if bits & 1 == 0 { magnitude } else { -magnitude });
        }
        for x in checked {
            assert_eq!(python_float_repr(x), repr_by_digits(x), "{x:e}");
        }
        assert_eq!(python_float_repr(-0.0), "-0.0");
    }

    #[test]
    fn float_repr_of_computed_values() {
        assert_eq!(python_float_repr(1.0 / 3.0), "0.3333333333333333");
        assert_eq!(python_float_repr(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(python_float_repr(f64::MIN_POSITIVE), "2.2250738585072014e-308");
        assert_eq!(python_float_repr(f64::MAX), "1.7976931348623157e+308");
    }

    #[test]
    fn float_repr_switches_notation_at_the_exponent_bounds() {
        assert_eq!(python_float_repr(0.00009), "9e-05");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(0.00010000000000000002), "0.00010000000000000002");
        assert_eq!(python_float_repr(9999999999999998.0), "9999999999999998.0");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5e16), "1.5e+16");
        assert_eq!(python_float_repr(-1e16), "-1e+16");
    }

    #[test]
    fn float_repr_of_non_finite_values() {
        assert_eq!(python_float_repr(f64::NAN), "nan");
        assert_eq!(python_float_repr(f64::INFINITY), "inf");
        assert_eq!(python_float_repr(f64::NEG_INFINITY), "-inf");
        assert_eq!(python_json_float(f64::NAN), "NaN");
        assert_eq!(python_json_float(f64::INFINITY), "Infinity");
        assert_eq!(python_json_float(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(python_json_float(2.0), "2.0");
    }

    #[test]
    fn float_repr_round_trips() {
        let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let x = f64::from_bits(bits);
            if x.is_finite() {
                let repr = python_float_repr(x);
                assert_eq!(repr.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{repr}");
            }
        }
    }

    #[test]
    fn string_escapes_match_cpython() {
        for &(s, expected) in STRING_ESCAPES {
            assert_eq!(json_string(s), expected, "{s:?}");
        }
    }

    #[test]
    fn every_ascii_char_escapes_like_cpython() {
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            let expected = match c {
                '"' => "\\\"".to_owned(),
                '\\' => "\\\\".to_owned(),
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                '\u{8}' => "\\b".to_owned(),
                '\u{c}' => "\\f".to_owned(),
                ' '..='~' => c.to_string(),
                _ => format!("\\u{byte:04x}"),
            };
            assert_eq!(json_string(&c.to_string()), format!("\"{expected}\""));
        }
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = String::from("x=");
        push_python_json_string(&mut out, "a");
        assert_eq!(out, "x=\"a\"");
    }

    #[test]
    fn renders_the_spec_example_lines() {
        let installed =
            Event::RunnerInstalled(RunnerInstalled { timestamp: 2.0, flavor: "small".into(), duration: 1.0 });
        assert_eq!(
            render_event(&installed),
            r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#
        );
        assert_eq!(
            render_event(&Event::RunnerStart(start(Some(3600.0)))),
            r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "idle": 1.0, "queue_duration": 3600.0}"#
        );
        assert_eq!(
            render_event(&Event::RunnerStop(stop(Some(1), Some(JobConclusion::Failure)))),
            r#"{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "status": "abnormal", "status_info": {"code": 1}, "job_duration": 2.0, "job_conclusion": "failure"}"#
        );
    }

    #[test]
    fn leaves_out_absent_values() {
        assert_eq!(
            render_event(&Event::RunnerStart(start(None))),
            r#"{"timestamp": 3.0, "event": "runner_start", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "idle": 1.0}"#
        );
        assert_eq!(
            render_event(&Event::RunnerStop(stop(None, None))),
            r#"{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "status": "abnormal", "job_duration": 2.0}"#
        );
        assert_eq!(
            render_event(&Event::RunnerStop(stop(Some(0), None))),
            r#"{"timestamp": 5.0, "event": "runner_stop", "flavor": "small", "workflow": "ci", "repo": "org/repo", "github_event": "push", "status": "abnormal", "status_info": {"code": 0}, "job_duration": 2.0}"#
        );
    }

    /// Lines generated with CPython 3.11 `json.dumps` of the same dicts.
    #[test]
    fn renders_tricky_values_like_cpython() {
        let installed =
            Event::RunnerInstalled(RunnerInstalled { timestamp: 1700000000.0, flavor: "large".into(), duration: 0.0 });
        assert_eq!(
            render_event(&installed),
            r#"{"timestamp": 1700000000.0, "event": "runner_installed", "flavor": "large", "duration": 0.0}"#
        );
        let start = Event::RunnerStart(RunnerStart {
            timestamp: 1700000000.1234567,
            flavor: "fl\u{e9}\"x".into(),
            workflow: "wf\n\u{2028}\u{1F600}".into(),
            repo: "o/r".into(),
            github_event: "pull_request".into(),
            idle: 1e-05,
            queue_duration: None,
        });
        assert_eq!(
            render_event(&start),
            r#"{"timestamp": 1700000000.1234567, "event": "runner_start", "flavor": "fl\u00e9\"x", "workflow": "wf\n\u2028\ud83d\ude00", "repo": "o/r", "github_event": "pull_request", "idle": 1e-05}"#
        );
        let stop = Event::RunnerStop(RunnerStop {
            timestamp: 1e16,
            flavor: "f".into(),
            workflow: String::new(),
            repo: "a/b".into(),
            github_event: "push".into(),
            status: PostJobStatus::RepoPolicyCheckFailure,
            status_info: Some(CodeInformation { code: i64::MIN }),
            job_duration: 123456789012345680.0,
            job_conclusion: None,
        });
        assert_eq!(
            render_event(&stop),
            r#"{"timestamp": 1e+16, "event": "runner_stop", "flavor": "f", "workflow": "", "repo": "a/b", "github_event": "push", "status": "repo-policy-check-failure", "status_info": {"code": -9223372036854775808}, "job_duration": 1.2345678901234568e+17}"#
        );
        let stop = Event::RunnerStop(RunnerStop {
            timestamp: 5.0,
            flavor: "f".into(),
            workflow: "w".into(),
            repo: "a/b".into(),
            github_event: "push".into(),
            status: PostJobStatus::Normal,
            status_info: None,
            job_duration: 0.5,
            job_conclusion: Some(JobConclusion::TimedOut),
        });
        assert_eq!(
            render_event(&stop),
            r#"{"timestamp": 5.0, "event": "runner_stop", "flavor": "f", "workflow": "w", "repo": "a/b", "github_event": "push", "status": "normal", "job_duration": 0.5, "job_conclusion": "timed_out"}"#
        );
    }

    #[test]
    fn renders_every_status_and_conclusion_spelling() {
        let statuses = [
            PostJobStatus::Normal,
            PostJobStatus::Abnormal,
            PostJobStatus::RepoPolicyCheckFailure,
            PostJobStatus::ExternalContributorCheckFailure,
        ];
        for status in statuses {
            let mut event = stop(None, None);
            event.status = status;
            let line = render_event(&Event::RunnerStop(event));
            assert!(line.contains(&format!("\"status\": \"{}\"", status.as_str())), "{line}");
        }
        let conclusions = [
            JobConclusion::ActionRequired,
            JobConclusion::Cancelled,
            JobConclusion::Failure,
            JobConclusion::Neutral,
            JobConclusion::Skipped,
            JobConclusion::Success,
            JobConclusion::TimedOut,
        ];
        for conclusion in conclusions {
            let line = render_event(&Event::RunnerStop(stop(None, Some(conclusion))));
            assert!(line.ends_with(&format!("\"job_conclusion\": \"{}\"}}", conclusion.as_str())), "{line}");
        }
    }

    #[test]
    fn lines_are_single_line_valid_json() {
        let mut event = start(Some(f64::MIN_POSITIVE));
        event.workflow = "a\nb\r\u{2028}\u{85}".into();
        let line = render_event(&Event::RunnerStart(event));
        assert!(!line.contains(['\n', '\r']));
        assert!(line.is_ascii());
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["workflow"], "a\nb\r\u{2028}\u{85}");
    }
}
