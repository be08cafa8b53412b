//! Mutators: raw bytes, and the structures inside them (a safetensors JSON header, an npy
//! header, zip members, TOML values, JSON values), each rebuilt so that the outer framing stays
//! valid often enough to reach the inner checks.

use crate::Rng;

/// Numbers that break size arithmetic.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "255",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1000000000000",
    "1e308",
    "-0",
    "3.5",
];

const U64S: &[u64] = &[
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    u64::MAX / 2,
    u64::MAX,
];

/// One byte-level edit: bit flip, interesting byte or integer, truncation, a chunk deleted,
/// repeated or inserted.
pub fn bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    if b.is_empty() {
        return vec![rng.next_u64() as u8; rng.below(16)];
    }
    let at = rng.below(b.len());
    match rng.below(7) {
        0 => b[at] ^= 1 << rng.below(8),
        1 => b[at] = *rng.pick(&[0u8, 1, 0x7f, 0x80, 0xff, b'{', b'"', b',', b'\n']),
        2 => {
            let v = rng.pick(U64S).to_le_bytes();
            let w = *rng.pick(&[2usize, 4, 8]);
            for (i, x) in v.iter().take(w).enumerate() {
                if let Some(y) = b.get_mut(at + i) {
                    *y = *x;
                }
            }
        }
        3 => b.truncate(at),
        4 => {
            let end = (at + 1 + rng.below(64)).min(b.len());
            b.drain(at..end);
        }
        5 => {
            let end = (at + 1 + rng.below(64)).min(b.len());
            let chunk = b[at..end].to_vec();
            b.splice(at..at, chunk);
        }
        _ => {
            let n = 1 + rng.below(16);
            let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            b.splice(at..at, ins);
        }
    }
    b
}

/// Replaces one number, word or quoted string of `text` with a value of another kind.
pub fn text_value(rng: &mut Rng, text: &str) -> String {
    let spans: Vec<(usize, usize)> = tokens(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let (s, e) = *rng.pick(&spans);
    let new = match rng.below(4) {
        0 | 1 => rng.pick(NUMBERS).to_string(),
        2 => rng
            .pick(&[
                "\"\"", "\"x\"", "\"F64\"", "\"I64\"", "\"BOOL\"", "null", "true", "[]", "{}",
            ])
            .to_string(),
        _ => "\"".repeat(rng.below(2)) + &"9".repeat(1 + rng.below(40)),
    };
    format!("{}{new}{}", &text[..s], &text[e..])
}

/// Spans of numbers (with sign, dot, exponent) and of double-quoted strings.
fn tokens(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            out.push((start, (i + 1).min(b.len())));
            i += 1;
        } else if b[i].is_ascii_digit()
            || (b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b"._+-".contains(&b[i])) {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// A safetensors file: its JSON header's values edited, the length prefix rewritten to match
/// (or not); otherwise a byte edit.
pub fn safetensors(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let n = input
        .get(..8)
        .map(|h| u64::from_le_bytes(h.try_into().unwrap_or([0; 8])) as usize);
    let header = n.and_then(|n| input.get(8..8usize.checked_add(n)?));
    let (Some(header), true) = (
        header.and_then(|h| std::str::from_utf8(h).ok()),
        rng.below(4) > 0,
    ) else {
        return bytes(rng, input);
    };
    let new = text_value(rng, header);
    let mut out = Vec::with_capacity(input.len() + 64);
    let len = if rng.below(8) == 0 {
        header.len()
    } else {
        new.len()
    };
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&input[8 + header.len()..]);
    out
}

/// An `.npy` array: its header dictionary edited (shape, dtype, order), the header length
/// rewritten; otherwise a byte edit.
pub fn npy(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    // magic (6), version (2), header length (2 in version 1), header.
    let ok = input.len() > 10 && input.starts_with(b"\x93NUMPY") && input[6] == 1;
    if !ok || rng.below(4) == 0 {
        return bytes(rng, input);
    }
    let hlen = u16::from_le_bytes([input[8], input[9]]) as usize;
    let Some(header) = input
        .get(10..10 + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
    else {
        return bytes(rng, input);
    };
    let new = match rng.below(3) {
        0 => {
            let from = *rng.pick(&["'<f4'", "'<f8'", "'<i8'", "'|u1'"]);
            let to = *rng.pick(&[
                "'<f4'", "'<f8'", "'<i8'", "'|u1'", "'>f4'", "'<c8'", "'|O'", "'<U3'", "'V4'",
            ]);
            header.replacen(from, to, 1)
        }
        1 => header.replacen("False", "True", 1),
        _ => text_value(rng, header),
    };
    let mut out = input[..8].to_vec();
    out.extend_from_slice(&(new.len() as u16).to_le_bytes());
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&input[10 + hlen..]);
    out
}

/// An `.npz`: one member's `.npy` mutated and the archive rebuilt, or a byte edit of the zip
/// itself (its size and offset fields).
pub fn npz(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    if rng.below(3) == 0 {
        return bytes(rng, input);
    }
    let Ok(mut z) = zip::ZipArchive::new(std::io::Cursor::new(input)) else {
        return bytes(rng, input);
    };
    let mut members = Vec::new();
    for i in 0..z.len() {
        let Ok(mut f) = z.by_index(i) else {
            return bytes(rng, input);
        };
        let mut data = Vec::new();
        if f.read_to_end(&mut data).is_err() {
            return bytes(rng, input);
        }
        let name = f.name().map(|n| n.to_string()).unwrap_or_default();
        members.push((name, data));
    }
    if members.is_empty() {
        return bytes(rng, input);
    }
    let k = rng.below(members.len());
    match rng.below(4) {
        0 => {
            members[k].0 = rng
                .pick(&["arr_0.npy", "arr_1.npy", "x", "pool.npy", ""])
                .to_string()
        }
        1 => {
            let dup = members[k].clone();
            members.push(dup);
        }
        _ => members[k].1 = npy(rng, &members[k].1),
    }
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in &members {
        if out.start_file(name.as_str(), opts).is_err() || out.write_all(data).is_err() {
            return bytes(rng, input);
        }
    }
    match out.finish() {
        Ok(c) => c.into_inner(),
        Err(_) => bytes(rng, input),
    }
}

/// TOML: a value of another type or size, a line deleted or repeated, or a key renamed.
pub fn toml(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(input) else {
        return bytes(rng, input);
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return bytes(rng, input);
    }
    let i = rng.below(lines.len());
    match rng.below(6) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 | 3 => {
            if let Some((key, _)) = lines[i].split_once('=') {
                let v = rng.pick(&[
                    "3",
                    "-1",
                    "0",
                    "1e400",
                    "nan",
                    "inf",
                    "\"x\"",
                    "[]",
                    "[1, \"a\"]",
                    "{ a = 1 }",
                    "true",
                    "18446744073709551616",
                    "1000000000000",
                    "[1000000000000]",
                    "[0.0]",
                    "[-5]",
                    "\"../../../x\"",
                    "\"\"",
                ]);
                lines[i] = format!("{key}= {v}");
            }
        }
        4 => lines[i] = text_value(rng, &lines[i]),
        _ => return bytes(rng, input),
    }
    (lines.join("\n") + "\n").into_bytes()
}

/// JSON: one value replaced by one of another type, or a byte edit.
pub fn json(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(input) else {
        return bytes(rng, input);
    };
    if rng.below(4) == 0 {
        return bytes(rng, input);
    }
    // A random path down the document, then the value there replaced.
    let mut path = Vec::new();
    let mut node = &v;
    for _ in 0..rng.below(4) {
        let next = match node {
            serde_json::Value::Object(m) if !m.is_empty() => {
                let k = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                path.push(serde_json::Value::String(k.clone()));
                m.get(&k)
            }
            serde_json::Value::Array(a) if !a.is_empty() => {
                let k = rng.below(a.len());
                path.push(serde_json::json!(k));
                a.get(k)
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    let new = match rng.below(6) {
        0 => serde_json::Value::Null,
        1 => serde_json::json!(u64::MAX),
        2 => serde_json::json!(-1),
        3 => serde_json::json!("tf32"),
        4 => serde_json::json!([]),
        _ => serde_json::json!({}),
    };
    let mut node = &mut v;
    for step in &path {
        node = match step {
            serde_json::Value::String(k) => &mut node[k.as_str()],
            k => &mut node[k.as_u64().unwrap_or(0) as usize],
        };
    }
    *node = new;
    serde_json::to_vec(&v).unwrap_or_default()
}
