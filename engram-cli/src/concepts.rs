//! Concepts as JSON Lines, one object per concept: what `concepts export` writes and
//! `concepts import` reads, so that concepts formed elsewhere (another clustering tool, or
//! another database over the same episode ids) can be brought in with their bindings.
//!
//! `{"id": 3, "label": "tides", "members": 40, "coherence": 0.61, "centroid": [0.1, …],
//! "bindings": [[17, 0.8], [42, 1.0]]}`: bindings as `[episode id, strength]`, ascending by
//! episode. Floats are written as the f64 of each f32, whose text reads back bit for bit. On
//! import `centroid` is required (the database's dimension, finite); `label` defaults to
//! empty and `bindings` to none; `id`, `members` and `coherence` are ignored (the database
//! assigns ids, and a concept placed by hand records no formation); any other field is
//! refused, so a misspelt one does not silently drop data.

use engram_core::{BindingInfo, Concept};
use serde_json::{Value, json};

/// One line's concept, as an import inserts it.
#[derive(Debug, PartialEq)]
pub struct Fields {
    pub label: String,
    pub centroid: Vec<f32>,
    /// `(episode, strength)`.
    pub bindings: Vec<(u64, f32)>,
}

/// The JSON line of concept `c`, whose bindings are `bindings` (without the newline).
pub fn to_line(c: &Concept<'_>, bindings: &mut [BindingInfo]) -> engram_core::Result<String> {
    bindings.sort_unstable_by_key(|b| b.episode);
    let pairs: Vec<Value> = bindings
        .iter()
        .map(|b| json!([b.episode, b.strength]))
        .collect();
    Ok(json!({
        "id": c.id(),
        "label": c.label()?,
        "members": c.members(),
        "coherence": c.coherence(),
        "centroid": c.centroid(),
        "bindings": pairs,
    })
    .to_string())
}

/// An f32 from a JSON number: one the f32 holds exactly or rounds to, never one out of its
/// range (which would read as infinity).
fn float(v: &Value) -> Option<f32> {
    let x = v.as_f64()?;
    let f = x as f32;
    f.is_finite().then_some(f)
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Fields, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    let mut f = Fields {
        label: String::new(),
        centroid: Vec::new(),
        bindings: Vec::new(),
    };
    let mut centroid = false;
    for (name, value) in &o {
        match name.as_str() {
            "id" | "members" | "coherence" => {}
            "label" => f.label = value.as_str().ok_or("label is not a string")?.to_string(),
            "centroid" => {
                let values = value.as_array().ok_or("centroid is not an array")?;
                f.centroid = values
                    .iter()
                    .enumerate()
                    .map(|(i, x)| float(x).ok_or(format!("centroid[{i}] is not a finite f32")))
                    .collect::<Result<_, _>>()?;
                centroid = true;
            }
            "bindings" => {
                let pairs = value.as_array().ok_or("bindings is not an array")?;
                for (i, p) in pairs.iter().enumerate() {
                    let bad = || format!("bindings[{i}] is not [episode id, finite strength]");
                    match p.as_array().map(Vec::as_slice) {
                        Some([e, s]) => f
                            .bindings
                            .push((e.as_u64().ok_or_else(bad)?, float(s).ok_or_else(bad)?)),
                        _ => return Err(bad()),
                    }
                }
            }
            _ => return Err(format!("unknown field {name:?}")),
        }
    }
    if !centroid {
        return Err("no centroid".into());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_default_and_are_checked() {
        let f = parse(r#"{"centroid": [1, -0.5]}"#).unwrap();
        assert_eq!(
            f,
            Fields {
                label: String::new(),
                centroid: vec![1.0, -0.5],
                bindings: vec![]
            }
        );
        let f = parse(
            r#"{"id": 9, "members": 2, "coherence": 0.5, "label": "a\nb", "centroid": [0.25], "bindings": [[3, 0.5], [7, 1]]}"#,
        )
        .unwrap();
        assert_eq!(
            (f.label.as_str(), f.bindings),
            ("a\nb", vec![(3, 0.5), (7, 1.0)])
        );
        for (line, why) in [
            ("{}", "no centroid"),
            ("[1]", "not a JSON object"),
            (r#"{"centroid": [1e39]}"#, "centroid[0] is not a finite f32"),
            (r#"{"centroid": ["1"]}"#, "centroid[0]"),
            (r#"{"centroid": [1], "bindings": [[1]]}"#, "bindings[0]"),
            (
                r#"{"centroid": [1], "bindings": [[-1, 0.5]]}"#,
                "bindings[0]",
            ),
            (
                r#"{"centroid": [1], "lable": "x"}"#,
                "unknown field \"lable\"",
            ),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn every_f32_reads_back_bit_for_bit() {
        // Through the text `to_line` writes: each f32 as its f64.
        let mut x = 0x0000_0001u32;
        let mut floats = vec![f32::MIN, f32::MAX, f32::MIN_POSITIVE, -0.0, 0.1, 1.0 / 3.0];
        for _ in 0..100_000 {
            x = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
            let f = f32::from_bits(x);
            if f.is_finite() {
                floats.push(f);
            }
        }
        let line = json!({ "centroid": floats }).to_string();
        let back = parse(&line).unwrap().centroid;
        assert_eq!(
            back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }
}
