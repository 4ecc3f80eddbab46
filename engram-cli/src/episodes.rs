//! Episodes as JSON Lines, one object per vector row: what `export --episodes` writes and
//! `import --episodes` reads, so that an export loads into another database unchanged.
//!
//! `{"id": 7, "agent": 1, "timestamp": 1700000000, "expires_at": null, "key": "k", "payload": "text"}`
//! Bytes that are not UTF-8 go in `key_hex` / `payload_hex` instead. On import every field
//! is optional: `agent` defaults to `--agent`, `timestamp` to the row number, no `key` to
//! none, no payload to empty and no `expires_at` (or null) to never expiring; `id` is the
//! episode's id where it was exported, which the importing database does not keep (it
//! assigns its own; `import --id-map` records which became which); any other field is
//! refused, so a misspelt one does not silently drop data.

use engram_core::{Episode, Ttl};
use serde_json::{Map, Value, json};

/// One row's episode fields, as an import inserts them.
#[derive(Debug, PartialEq)]
pub struct Fields {
    /// The id the line gives (the episode's where it was exported), if any.
    pub id: Option<u64>,
    pub agent: u64,
    pub timestamp: i64,
    /// `At(expires_at)`, or `Never` when the line gives none.
    pub ttl: Ttl,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// The JSON line of `ep` (without the trailing newline).
pub fn to_line(ep: &Episode<'_>) -> engram_core::Result<String> {
    Ok(to_json(ep)?.to_string())
}

/// `ep` as the object [`to_line`] writes.
pub fn to_json(ep: &Episode<'_>) -> engram_core::Result<Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(ep.id()));
    o.insert("agent".into(), json!(ep.agent()));
    o.insert("timestamp".into(), json!(ep.timestamp()));
    o.insert("expires_at".into(), json!(ep.expires_at()?));
    if let Some(k) = ep.key()? {
        put_bytes(&mut o, "key", k);
    }
    put_bytes(&mut o, "payload", ep.payload()?);
    Ok(Value::Object(o))
}

fn put_bytes(o: &mut Map<String, Value>, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => o.insert(field.into(), json!(text)),
        Err(_) => o.insert(format!("{field}_hex"), json!(hex(bytes))),
    };
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .ok_or_else(|| format!("{:?} is not a hex digit", c as char))
    };
    if !s.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Ok((digit(p[0])? * 16 + digit(p[1])?) as u8))
        .collect()
}

/// Parses one line for row `row`.
pub fn parse(line: &str, row: usize, default_agent: u64) -> Result<Fields, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    let mut f = Fields {
        id: None,
        agent: default_agent,
        timestamp: row as i64,
        ttl: Ttl::Never,
        key: None,
        payload: Vec::new(),
    };
    for name in ["key", "payload"] {
        let hex = format!("{name}_hex");
        if o.contains_key(name) && o.contains_key(&hex) {
            return Err(format!("both {name} and {hex} are given"));
        }
    }
    for (name, value) in &o {
        let int = || format!("{name} is not an integer in range");
        let text = || format!("{name} is not a string");
        match name.as_str() {
            "id" => f.id = Some(value.as_u64().ok_or_else(int)?),
            "agent" => f.agent = value.as_u64().ok_or_else(int)?,
            "timestamp" => f.timestamp = value.as_i64().ok_or_else(int)?,
            "expires_at" if value.is_null() => {}
            "expires_at" => f.ttl = Ttl::At(value.as_i64().ok_or_else(int)?),
            "key" => f.key = Some(value.as_str().ok_or_else(text)?.as_bytes().to_vec()),
            "key_hex" => {
                f.key = Some(
                    unhex(value.as_str().ok_or_else(text)?).map_err(|e| format!("key_hex: {e}"))?,
                )
            }
            "payload" => f.payload = value.as_str().ok_or_else(text)?.as_bytes().to_vec(),
            "payload_hex" => {
                f.payload = unhex(value.as_str().ok_or_else(text)?)
                    .map_err(|e| format!("payload_hex: {e}"))?
            }
            _ => return Err(format!("unknown field {name:?}")),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_hex_and_bad_hex_is_refused() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)).unwrap(), all);
        assert_eq!(unhex("0A").unwrap(), [10]);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn fields_default_and_are_checked() {
        let f = parse("{}", 5, 9).unwrap();
        assert_eq!(
            f,
            Fields {
                id: None,
                agent: 9,
                timestamp: 5,
                ttl: Ttl::Never,
                key: None,
                payload: vec![]
            }
        );
        let f = parse(
            r#"{"id": 3, "agent": 2, "timestamp": -4, "expires_at": 10, "key_hex": "ff00", "payload": "a\nb"}"#,
            0,
            9,
        )
        .unwrap();
        assert_eq!(
            f,
            Fields {
                id: Some(3),
                agent: 2,
                timestamp: -4,
                ttl: Ttl::At(10),
                key: Some(vec![255, 0]),
                payload: b"a\nb".to_vec()
            }
        );
        for (line, why) in [
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"agent": -1}"#, "agent is not an integer"),
            (r#"{"id": "7"}"#, "id is not an integer"),
            (r#"{"timestamp": 1.5}"#, "timestamp is not an integer"),
            (r#"{"payload": 3}"#, "payload is not a string"),
            (
                r#"{"payload": "a", "payload_hex": "62"}"#,
                "both payload and payload_hex",
            ),
            (
                r#"{"timestamp": 1, "timestmap": 2}"#,
                "unknown field \"timestmap\"",
            ),
        ] {
            let e = parse(line, 0, 0).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
