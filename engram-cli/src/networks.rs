//! Agents' networks as JSON Lines, one object per network, its tensors' blocks as stored:
//! what `networks --export` writes and `networks --import` reads, so that a network moves
//! between databases block for block, with no second quantization.
//!
//! `{"agent": 7, "name": "policy", "tensors": [{"name": "w0", "shape": [128, 64],
//! "scheme": "q8", "hex": "…"}]}`: `scheme` is one of `q8`, `q4`, `f16`, `mixed`, and `hex`
//! the tensor's encoding (`docs/format.md`, "Weight blocks"), which an import checks against its
//! shape and scheme. Any other field is refused.

use engram_core::Network;
use engram_core::quant::QuantScheme;
use serde_json::{Value, json};

use crate::episodes::{hex, unhex};

/// One tensor of a line: name, shape, scheme and encoding.
pub type Encoded = (String, Vec<usize>, QuantScheme, Vec<u8>);

/// One line's network.
#[derive(Debug, PartialEq)]
pub struct Fields {
    pub agent: u64,
    pub name: String,
    pub tensors: Vec<Encoded>,
}

fn scheme_name(s: QuantScheme) -> &'static str {
    match s {
        QuantScheme::Q8 => "q8",
        QuantScheme::Q4 => "q4",
        QuantScheme::F16 => "f16",
        QuantScheme::Mixed { .. } => "mixed",
    }
}

/// The JSON line of agent `agent`'s network `name` (without the newline).
pub fn to_line(agent: u64, name: &str, net: &Network<'_>) -> engram_core::Result<String> {
    let mut tensors = Vec::new();
    for t in net.tensors() {
        let t = t?;
        tensors.push(json!({
            "name": t.name,
            "shape": t.shape,
            "scheme": scheme_name(t.blocks.scheme()),
            "hex": hex(t.blocks.encoded()),
        }));
    }
    Ok(json!({ "agent": agent, "name": name, "tensors": tensors }).to_string())
}

fn tensor(v: &Value, i: usize) -> Result<Encoded, String> {
    let at = |why: &str| format!("tensors[{i}]: {why}");
    let o = v.as_object().ok_or_else(|| at("not an object"))?;
    let (mut name, mut shape, mut scheme, mut bytes) = (None, None, None, None);
    for (field, value) in o {
        match field.as_str() {
            "name" => name = Some(value.as_str().ok_or_else(|| at("name is not a string"))?),
            "shape" => {
                let dims = value
                    .as_array()
                    .ok_or_else(|| at("shape is not an array"))?;
                let dims: Option<Vec<usize>> = dims
                    .iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect();
                shape = Some(dims.ok_or_else(|| at("shape holds a non-integer"))?);
            }
            "scheme" => {
                scheme = Some(match value.as_str() {
                    Some("q8") => QuantScheme::Q8,
                    Some("q4") => QuantScheme::Q4,
                    Some("f16") => QuantScheme::F16,
                    // Fractions only matter when quantizing; the tags say each block's kind.
                    Some("mixed") => QuantScheme::Mixed { f16: 0.0, q8: 0.0 },
                    _ => return Err(at("scheme is not one of q8, q4, f16, mixed")),
                })
            }
            "hex" => {
                let text = value.as_str().ok_or_else(|| at("hex is not a string"))?;
                bytes = Some(unhex(text).map_err(|e| at(&format!("hex: {e}")))?);
            }
            _ => return Err(at(&format!("unknown field {field:?}"))),
        }
    }
    match (name, shape, scheme, bytes) {
        (Some(n), Some(s), Some(q), Some(b)) => Ok((n.to_string(), s, q, b)),
        _ => Err(at("needs name, shape, scheme and hex")),
    }
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Fields, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    let (mut agent, mut name, mut tensors) = (None, None, None);
    for (field, value) in &o {
        match field.as_str() {
            "agent" => agent = Some(value.as_u64().ok_or("agent is not an integer in range")?),
            "name" => name = Some(value.as_str().ok_or("name is not a string")?.to_string()),
            "tensors" => {
                let list = value.as_array().ok_or("tensors is not an array")?;
                tensors = Some(
                    list.iter()
                        .enumerate()
                        .map(|(i, t)| tensor(t, i))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            _ => return Err(format!("unknown field {field:?}")),
        }
    }
    match (agent, name, tensors) {
        (Some(agent), Some(name), Some(tensors)) => Ok(Fields {
            agent,
            name,
            tensors,
        }),
        _ => Err("needs agent, name and tensors".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_field_by_field() {
        let f = parse(
            r#"{"agent": 3, "name": "p", "tensors": [{"name": "w", "shape": [1, 32], "scheme": "mixed", "hex": "00ff"}]}"#,
        )
        .unwrap();
        assert_eq!((f.agent, f.name.as_str()), (3, "p"));
        assert_eq!(f.tensors[0].0, "w");
        assert_eq!(f.tensors[0].1, vec![1, 32]);
        assert_eq!(f.tensors[0].3, vec![0, 255]);
        for (line, why) in [
            (
                r#"{"agent": 1, "name": "p"}"#,
                "needs agent, name and tensors",
            ),
            (
                r#"{"agent": -1, "name": "p", "tensors": []}"#,
                "agent is not",
            ),
            (
                r#"{"agent": 1, "name": "p", "tensors": [], "x": 1}"#,
                "unknown field \"x\"",
            ),
            (
                r#"{"agent": 1, "name": "p", "tensors": [{"name": "w", "shape": [2], "scheme": "q2", "hex": ""}]}"#,
                "tensors[0]: scheme is not",
            ),
            (
                r#"{"agent": 1, "name": "p", "tensors": [{"name": "w", "shape": [2.5], "scheme": "q8", "hex": ""}]}"#,
                "shape holds a non-integer",
            ),
            (
                r#"{"agent": 1, "name": "p", "tensors": [{"name": "w", "shape": [2], "scheme": "q8", "hex": "f"}]}"#,
                "hex: an odd number",
            ),
            (
                r#"{"agent": 1, "name": "p", "tensors": [{"name": "w", "shape": [2], "scheme": "q8"}]}"#,
                "needs name, shape, scheme and hex",
            ),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
