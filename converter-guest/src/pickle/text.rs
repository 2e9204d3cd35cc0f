//! Python's readings of text: protocol-0 arguments (STRING, UNICODE, INT,
//! LONG, FLOAT) and `int()` of a record's bytes.

/// A Python string literal as `repr` writes it: `'...'` or `"..."` with
/// backslash escapes. Returns the raw bytes.
pub fn python_string_literal(line: &[u8]) -> Option<Vec<u8>> {
    let (&q, rest) = line.split_first()?;
    if q != b'\'' && q != b'"' {
        return None;
    }
    let (&last, body) = rest.split_last()?;
    if last != q {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                out.push(u8::try_from(hex_value(body.get(i..i + 2)?)?).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Python's `raw-unicode-escape`: bytes are Latin-1 except `\uXXXX` and
/// `\UXXXXXXXX`, which are escapes only after an odd number of backslashes
/// (CPython's decoder: `\\u0041` is two backslashes and `u0041`).
pub fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut backslashes = 0usize;
    while let Some(&c) = line.get(i) {
        let escape = c == b'\\' && backslashes.is_multiple_of(2);
        backslashes = if c == b'\\' { backslashes + 1 } else { 0 };
        let width = match line.get(i + 1) {
            Some(b'u') => Some(4),
            Some(b'U') => Some(8),
            _ => None,
        };
        if let Some(n) = width.filter(|_| escape) {
            backslashes = 0;
            let cp = hex_value(line.get(i + 2..i + 2 + n)?)?;
            out.push(char::from_u32(cp)?);
            i += 2 + n;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    Some(out)
}

/// Hex digits only (`from_str_radix` would also take a leading `+`).
fn hex_value(digits: &[u8]) -> Option<u32> {
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Whether Python's `int()` accepts these bytes as a base-10 integer:
/// surrounding ASCII whitespace, an optional sign, digits with single
/// underscores between them (`b" 64\n"`, `b"-1"`, `b"6_4"`).
pub fn python_int_literal(b: &[u8]) -> bool {
    // C's isspace, as `PyLong_FromString` strips (vertical tab included).
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut t = b;
    while let [c, rest @ ..] = t {
        if !space(c) {
            break;
        }
        t = rest;
    }
    while let [rest @ .., c] = t {
        if !space(c) {
            break;
        }
        t = rest;
    }
    let t = t
        .strip_prefix(b"-")
        .or_else(|| t.strip_prefix(b"+"))
        .unwrap_or(t);
    !t.is_empty()
        && t.split(|&c| c == b'_')
            .all(|part| !part.is_empty() && part.iter().all(u8::is_ascii_digit))
}

/// A decimal integer as Python's `repr` writes it: an optional `-`, then
/// `0` or digits without a leading zero.
pub fn is_canonical_decimal(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    match digits {
        [b'0'] => s.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// A FLOAT argument as `repr(float)` writes it (`1.5`, `-2e-05`, `inf`,
/// `nan`): decimal digits, one point, an exponent; anything else (`0x1p3`,
/// `1_0`, spaces) is refused rather than parsed one way or another.
pub fn canonical_float(s: &[u8]) -> Option<f64> {
    match s {
        b"inf" => return Some(f64::INFINITY),
        b"-inf" => return Some(f64::NEG_INFINITY),
        b"nan" => return Some(f64::NAN),
        _ => {}
    }
    let ok = !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && s.iter().any(u8::is_ascii_digit);
    if !ok {
        return None;
    }
    // CPython raises OverflowError where Rust rounds to infinity.
    std::str::from_utf8(s)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
}

/// A decimal integer literal as little-endian two's complement bytes
/// (minimal length, at least one byte).
pub fn decimal_to_le(digits: &[u8]) -> Option<Vec<u8>> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, digits),
    };
    // CPython refuses to convert more digits than this (sys.int_info's
    // default_max_str_digits).
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 4300 {
        return None;
    }
    // Magnitude in base 256, little-endian.
    let mut mag: Vec<u8> = vec![0];
    for &d in digits {
        let mut carry = (d - b'0') as u32;
        for b in mag.iter_mut() {
            let v = *b as u32 * 10 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push(carry as u8);
            carry >>= 8;
        }
    }
    // Room for the sign bit.
    if mag.last().is_some_and(|&b| b & 0x80 != 0) {
        mag.push(0);
    }
    if neg {
        // Two's complement: invert and add one.
        let mut carry = 1u16;
        for b in mag.iter_mut() {
            let v = (!*b) as u16 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
    }
    trim_sign_bytes(&mut mag);
    Some(mag)
}

/// Drops redundant sign bytes from little-endian two's complement: the
/// shortest encoding of the same int.
pub fn trim_sign_bytes(bytes: &mut Vec<u8>) {
    while let [.., prev, last] = *bytes.as_slice() {
        if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
            bytes.pop();
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_python_long_encoding() {
        // Values from CPython's pickle.encode_long.
        assert_eq!(decimal_to_le(b"0").unwrap(), vec![0]);
        assert_eq!(decimal_to_le(b"255").unwrap(), vec![0xff, 0x00]);
        assert_eq!(decimal_to_le(b"-256").unwrap(), vec![0x00, 0xff]);
        assert_eq!(decimal_to_le(b"-128").unwrap(), vec![0x80]);
        assert_eq!(decimal_to_le(b"127").unwrap(), vec![0x7f]);
        // torch's legacy MAGIC_NUMBER.
        assert_eq!(
            decimal_to_le(b"119547037146038801333356").unwrap(),
            vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]
        );
        assert!(decimal_to_le(b"12a").is_none());
    }

    #[test]
    fn string_literals() {
        assert_eq!(python_string_literal(b"'os'").unwrap(), b"os");
        assert_eq!(python_string_literal(br"'a\'b\x41\n'").unwrap(), b"a'bA\n");
        assert!(python_string_literal(b"'unterminated").is_none());
        assert_eq!(raw_unicode_escape(br"caf\u00e9").unwrap(), "café");
    }

    #[test]
    fn storage_alignment_reads_like_python_int() {
        // torch calls int() on `.storage_alignment`; decant refused " 64" and
        // "6_4", which torch loads, with a message saying torch fails.
        for ok in [
            &b"64"[..],
            b" 64",
            b"-1",
            b"6_4",
            b"64\n",
            b"\x0b64\x0c",
            b"+7",
        ] {
            assert!(python_int_literal(ok), "{ok:?}");
        }
        for bad in [
            &b""[..],
            b" ",
            b"6__4",
            b"_64",
            b"64_",
            b"+",
            b"1 2",
            b"abc",
            b"0x40",
        ] {
            assert!(!python_int_literal(bad), "{bad:?}");
        }
    }
}
