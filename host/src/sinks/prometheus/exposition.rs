//! The Prometheus text exposition format (0.0.4), as far as the textfile
//! needs it: sample values and label values written, sample lines read back.

/// A sample value (and a bucket bound): integers without a fraction, others
/// as Rust prints them (shortest round-trip form), which Prometheus parses.
pub(super) fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// A label value escaped per the exposition format: `\`, `"`, newline.
pub(super) fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One sample line: metric name, labels in file order, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// `name{k="v",...} value` (or `name value`); comments and anything else
/// give `None`.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?.to_owned();
    let mut rest = line.get(name_end..)?;
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let end: Option<usize>;
        loop {
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                if c == '}' && key.is_empty() {
                    break;
                }
                key.push(c);
            }
            if key.is_empty() {
                // `{}` or a trailing comma: the label set ended.
                end = inner.find('}').map(|i| i + 1);
                break;
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
            match chars.next()? {
                (_, ',') => continue,
                (i, '}') => {
                    end = Some(i + 1);
                    break;
                }
                _ => return None,
            }
        }
        rest = inner.get(end?..)?;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples() {
        assert_eq!(parse_sample("a 1"), Some(("a".into(), vec![], 1.0)));
        assert_eq!(
            parse_sample(r#"a_bucket{flavor="x\\y\"z\n",le="+Inf"} 3"#),
            Some(("a_bucket".into(), vec![("flavor".into(), "x\\y\"z\n".into()), ("le".into(), "+Inf".into())], 3.0))
        );
        assert_eq!(parse_sample("# HELP a b"), None);
        assert_eq!(parse_sample(r#"a{b="c} 1"#), None);
    }

    #[test]
    fn an_escaped_label_value_reads_back_as_itself() {
        let value = "a\\b\"c\nd";
        let line = format!("m{{k=\"{}\"}} {}", escape_label(value), format_value(0.25));
        assert_eq!(parse_sample(&line), Some(("m".into(), vec![("k".into(), value.into())], 0.25)));
        assert_eq!(format_value(432000.0), "432000");
    }
}
