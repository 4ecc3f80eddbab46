//! SVG plots of a report: the concept lookup latency CDF, the similarity kernels' scan speed
//! beside the scalar reference and the memory bandwidth, and clustering time by thread
//! count beside faiss. Each is drawn when the report holds its data.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

use super::BoxError;

/// Writes every plot `report` has data for into `dir`; returns their paths.
pub fn write_all(report: &Value, dir: &Path) -> Result<Vec<PathBuf>, BoxError> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    if let Some(p) = lookup_cdf(report, dir)? {
        out.push(p);
    }
    if let Some(p) = scan_speed(report, dir)? {
        out.push(p);
    }
    if let Some(p) = cluster_threads(report, dir)? {
        out.push(p);
    }
    Ok(out)
}

/// A chart of the common size and style with `caption`.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48);
    b
}

/// The series' legend, boxed, at `at`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> Result<(), BoxError> {
    chart
        .configure_series_labels()
        .position(at)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn lookup_cdf(report: &Value, dir: &Path) -> Result<Option<PathBuf>, BoxError> {
    let cases = &report["concept_lookup"]["sizes"]["100000"]["zipf"];
    let series: Vec<(&str, Vec<(f64, f64)>)> = ["cached_1t", "warm_1t", "cold_1t"]
        .iter()
        .filter_map(|c| {
            let pts = cases[*c]["cdf"].as_array()?;
            Some((
                *c,
                pts.iter()
                    .filter_map(|p| Some((p[1].as_f64()?.max(1.0), p[0].as_f64()?)))
                    .collect(),
            ))
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let path = dir.join("concept_lookup_cdf.svg");
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = frame(
        &root,
        "Concept lookup latency CDF (100k concepts, Zipf, 1 thread)",
    )
    .build_cartesian_2d((50f64..max * 1.5).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("latency, ns (log)")
        .y_desc("fraction of lookups")
        .draw()?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name.trim_end_matches("_1t"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    drop((chart, root));
    Ok(Some(path))
}

fn scan_speed(report: &Value, dir: &Path) -> Result<Option<PathBuf>, BoxError> {
    let sim = &report["similarity"];
    let Some(kernels) = sim["kernels"].as_object() else {
        return Ok(None);
    };
    let bw = sim["bandwidth_1core_gb_s"].as_f64().unwrap_or(0.0);
    let rows: Vec<(String, f64, f64)> = kernels
        .iter()
        .filter(|(k, _)| k.starts_with("cosine_"))
        .filter_map(|(k, v)| {
            Some((
                k.trim_start_matches("cosine_").to_string(),
                v["cached_1k_gb_s"].as_f64()?,
                v["memory_200k_gb_s"].as_f64()?,
            ))
        })
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let top = rows.iter().map(|r| r.1.max(r.2)).fold(bw, f64::max) * 1.45;
    let path = dir.join("scan_bandwidth.svg");
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = rows.len();
    let mut chart = frame(&root, "Cosine scan speed per kernel, 768-d, 1 thread")
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("GB/s of embeddings scored")
        .draw()?;
    // Kernel names above their pair of bars (a float axis would label round numbers).
    chart.draw_series(rows.iter().enumerate().map(|(i, (name, c, m))| {
        Text::new(
            name.clone(),
            (i as f64 + 0.3, c.max(*m) + top * 0.07),
            ("sans-serif", 14),
        )
    }))?;
    for (i, (_, cached, memory)) in rows.iter().enumerate() {
        let x = i as f64;
        chart.draw_series([Rectangle::new(
            [(x + 0.12, 0.0), (x + 0.48, *cached)],
            COLORS[0].filled(),
        )])?;
        chart.draw_series([Rectangle::new(
            [(x + 0.52, 0.0), (x + 0.88, *memory)],
            COLORS[1].filled(),
        )])?;
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, bw), (n as f64, bw)],
            COLORS[3].stroke_width(2),
        ))?
        .label(format!("memory read bandwidth, 1 core ({bw:.1} GB/s)"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[3].stroke_width(2)));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("1k rows, in cache")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], COLORS[0].filled()));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("200k rows, from memory")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], COLORS[1].filled()));
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    drop((chart, root));
    Ok(Some(path))
}

fn cluster_threads(report: &Value, dir: &Path) -> Result<Option<PathBuf>, BoxError> {
    let Some(cases) = report["cluster.cases"].as_object() else {
        return Ok(None);
    };
    // case name without its thread suffix → [(threads, engram s, faiss s)]
    let mut by_case: std::collections::BTreeMap<String, Vec<(f64, f64, Option<f64>)>> =
        Default::default();
    for (name, v) in cases {
        let (Some(t), Some(s)) = (v["threads"].as_f64(), v["seconds"].as_f64()) else {
            continue;
        };
        let base = name
            .rsplit_once(' ')
            .map_or(name.as_str(), |(b, _)| b)
            .to_string();
        if base.contains("sampled") || base.starts_with("real") {
            continue;
        }
        by_case
            .entry(base)
            .or_default()
            .push((t, s, v["faiss_seconds"].as_f64()));
    }
    by_case.retain(|_, v| v.len() >= 2);
    if by_case.is_empty() {
        return Ok(None);
    }
    let max_t = by_case.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_s = by_case
        .values()
        .flatten()
        .map(|p| p.1.max(p.2.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let path = dir.join("cluster_threads.svg");
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = frame(
        &root,
        "k-means on 100k x 768: seconds by thread count (20 iterations)",
    )
    .build_cartesian_2d(
        (0.9f64..max_t * 1.1).log_scale(),
        (0.5f64..max_s * 1.5).log_scale(),
    )?;
    chart
        .configure_mesh()
        .x_desc("threads")
        .y_desc("seconds (log)")
        .draw()?;
    for (i, (name, mut pts)) in by_case.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = COLORS[i % COLORS.len()];
        let ours: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(ours.clone(), color.stroke_width(2)))?
            .label(format!("engram, {name}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(ours.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        let faiss: Vec<(f64, f64)> = pts.iter().filter_map(|p| Some((p.0, p.2?))).collect();
        if !faiss.is_empty() {
            chart
                .draw_series(DashedLineSeries::new(faiss, 6, 4, color.stroke_width(1)))?
                .label(format!("faiss, {name}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    drop((chart, root));
    Ok(Some(path))
}
