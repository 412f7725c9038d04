//! Canonical JSON: the exact bytes the MyCHIPs reference signs and hashes.
//!
//! Two forms, because the reference uses two serialisers:
//! - [`stable`]: npm `json-stable-stringify` (what `lib/subcrypto.js` signs): object keys
//!   sorted as JavaScript's default `sort()` sorts them (by UTF-16 code units), no
//!   whitespace, strings escaped as `JSON.stringify` escapes them (only `"`, `\` and control
//!   characters; everything else, non-ASCII included, is written as UTF-8), numbers written
//!   as JavaScript writes a double, `null` kept.
//! - [`ascii`]: Python's `json.dumps(obj, separators=(',',':'), sort_keys=True)` (what the
//!   reference's database function `mychips.j2h` hashes: the tally's `sign.hash` and the chit
//!   chain digests): keys sorted by code point, non-ASCII escaped as `\uXXXX` (astral
//!   characters as surrogate pairs), integers as integers.
//!
//! For ASCII text and integer numbers the two agree byte for byte; they differ for non-ASCII
//! text (escaped or not, and the key order of characters above U+FFFF).
//!
//! Numbers: JavaScript parses every number into a double, so [`stable`] writes what
//! `JSON.stringify` writes for that double (integers beyond 2^53 lose precision exactly as the
//! reference's `JSON.parse` makes them). A float is taken as the double `serde_json` parsed.

use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// `json-stable-stringify` of `value`.
pub fn stable(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, Form::Stable);
    out
}

/// Python's `json.dumps(value, separators=(',', ':'), sort_keys=True)`.
pub fn ascii(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, Form::Ascii);
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Stable,
    Ascii,
}

fn write_value(out: &mut String, value: &Value, form: Form) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n, form),
        Value::String(s) => write_string(out, s, form),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, form);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, form),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, form: Form) {
    let mut keys: Vec<&String> = map.keys().collect();
    match form {
        // JavaScript compares strings by UTF-16 code units.
        Form::Stable => keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16())),
        // Python compares by code point, which is UTF-8 byte order.
        Form::Ascii => keys.sort(),
    }
    out.push('{');
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key, form);
        out.push(':');
        write_value(out, &map[key.as_str()], form);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str, form: Form) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if form == Form::Ascii && (c as u32) > 0x7e => {
                // Python escapes everything beyond ASCII, but not DEL (0x7f).
                if c as u32 == 0x7f {
                    out.push(c);
                } else {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number, form: Form) {
    match form {
        Form::Stable => {
            // JavaScript holds every number as a double.
            let x = if let Some(i) = n.as_i64() {
                i as f64
            } else if let Some(u) = n.as_u64() {
                u as f64
            } else {
                n.as_f64().unwrap_or(0.0)
            };
            out.push_str(&js_number(x));
        }
        Form::Ascii => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                out.push_str(&python_float(n.as_f64().unwrap_or(0.0)));
            }
        }
    }
}

/// The shortest decimal digits that round-trip `x` (positive, finite, non-zero), and the
/// exponent `n` with `x = 0.DIGITS × 10^n`.
fn shortest_digits(x: f64) -> (String, i32) {
    // Rust's `{:e}` prints the shortest representation that round-trips: `d.ddde±x`.
    let text = format!("{x:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    (digits.to_owned(), exponent + 1)
}

/// ECMAScript `Number::toString(x)` (what `JSON.stringify` writes for a finite number).
pub fn js_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        // JSON.stringify writes -0 as 0 and non-finite numbers as null (JSON has none).
        return if x.is_finite() { "0" } else { "null" }.to_owned();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let (s, n) = shortest_digits(x.abs());
    let k = s.len() as i32;
    let body = if k <= n && n <= 21 {
        format!("{s}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &s[..n as usize], &s[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{s}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e = if e >= 0 {
            format!("+{e}")
        } else {
            e.to_string()
        };
        if k == 1 {
            format!("{s}e{e}")
        } else {
            format!("{}.{}e{e}", &s[..1], &s[1..])
        }
    };
    format!("{sign}{body}")
}

/// Python's `repr(float)`, which `json.dumps` writes for a float.
fn python_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    if !x.is_finite() {
        return "NaN".to_owned();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let (s, n) = shortest_digits(x.abs());
    let k = s.len() as i32;
    let exponent = n - 1;
    let body = if (-4..16).contains(&exponent) {
        if n <= 0 {
            format!("0.{}{s}", "0".repeat((-n) as usize))
        } else if n >= k {
            format!("{s}{}.0", "0".repeat((n - k) as usize))
        } else {
            format!("{}.{}", &s[..n as usize], &s[n as usize..])
        }
    } else {
        let mantissa = if k == 1 {
            s.clone()
        } else {
            format!("{}.{}", &s[..1], &s[1..])
        };
        let sign_e = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign_e}{:02}", exponent.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_no_whitespace_nulls_kept() {
        let v = json!({"b": 1, "a": [true, null, {"d": "x", "c": false}], "memo": null});
        assert_eq!(
            stable(&v),
            r#"{"a":[true,null,{"c":false,"d":"x"}],"b":1,"memo":null}"#
        );
        assert_eq!(ascii(&v), stable(&v));
    }

    #[test]
    fn strings_escape_as_javascript_and_python_do() {
        let v = json!({"k": "é\u{1F600}\"\\\n\u{1}\u{7f}/"});
        assert_eq!(
            stable(&v),
            "{\"k\":\"é\u{1F600}\\\"\\\\\\n\\u0001\u{7f}/\"}"
        );
        assert_eq!(
            ascii(&v),
            "{\"k\":\"\\u00e9\\ud83d\\ude00\\\"\\\\\\n\\u0001\u{7f}/\"}"
        );
    }

    #[test]
    fn astral_keys_sort_by_utf16_in_javascript() {
        // U+FF61 is above the surrogates in code points, below them in UTF-16 units.
        let v = json!({"\u{FF61}": 1, "\u{1F600}": 2});
        assert_eq!(stable(&v), "{\"\u{1F600}\":2,\"\u{FF61}\":1}");
        assert_eq!(ascii(&v), "{\"\\uff61\":1,\"\\ud83d\\ude00\":2}");
    }

    #[test]
    fn numbers_as_javascript_writes_them() {
        for (x, want) in [
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (1.2345e-9, "1.2345e-9"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(js_number(x), want, "{x}");
        }
        assert_eq!(stable(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(ascii(&json!(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn floats_as_python_writes_them() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (123.25, "123.25"),
            (1234567890123456.0, "1234567890123456.0"),
        ] {
            assert_eq!(python_float(x), want, "{x}");
        }
    }
}
