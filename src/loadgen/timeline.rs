//! The per-second timeline of a run, as `timeline.csv` and as an SVG chart (plotters) of client
//! requests against origin requests.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::stats::Second;

/// The CSV header; the columns scripts read.
pub const CSV_HEADER: &str = "t_s,client_requests,client_errors,origin_requests,origin_pairs,p50_ms,p99_ms";

/// One row per second; empty cells where nothing was measured.
pub fn csv(seconds: &[Second]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for (t, s) in seconds.iter().enumerate() {
        csv_row(&mut out, t, s);
    }
    out
}

/// Appends `t,client_requests,…` for one second (no leading label).
pub fn csv_row(out: &mut String, t: usize, s: &Second) {
    let opt = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "{t},{},{},{},{},{},{}",
        s.requests,
        s.errors,
        opt(s.origin_requests, 0),
        opt(s.origin_pairs, 0),
        opt(s.p50_ms, 3),
        opt(s.p99_ms, 3)
    );
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// (second, value) points.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed-looking (thin) rather than bold.
    pub thin: bool,
}

/// Client requests per second.
pub fn client_series(seconds: &[Second], name: &str) -> Series {
    Series {
        name: name.to_string(),
        points: seconds.iter().enumerate().map(|(t, s)| (t as f64, s.requests as f64)).collect(),
        thin: false,
    }
}

/// Origin requests per second, when they were sampled.
pub fn origin_series(seconds: &[Second], name: &str) -> Option<Series> {
    seconds.iter().any(|s| s.origin_requests.is_some()).then(|| Series {
        name: name.to_string(),
        points: seconds
            .iter()
            .enumerate()
            .filter_map(|(t, s)| s.origin_requests.map(|v| (t as f64, v)))
            .collect(),
        thin: false,
    })
}

/// Client requests and (when sampled) origin requests per second.
pub fn series(seconds: &[Second], client: &str, origin: &str) -> Vec<Series> {
    std::iter::once(client_series(seconds, client)).chain(origin_series(seconds, origin)).collect()
}

const COLORS: [RGBColor; 5] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(255, 127, 14), BLACK];

/// An SVG line chart of `lines` (requests per second over seconds of the run).
pub fn svg(title: &str, lines: &[Series]) -> Result<String, String> {
    let x_max = lines.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    // Head room above the highest line for the legend.
    let y_max = lines.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.4;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 480)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| format!("drawing the chart: {e}");
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc("requests per second")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        for (i, s) in lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let style = color.stroke_width(if s.thin { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(e)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(out)
}

/// The seconds worth charting: a last second cut short by the end of the run would look like
/// a collapse of the load.
pub fn whole_seconds(seconds: &[Second], elapsed: std::time::Duration) -> &[Second] {
    let whole = (elapsed.as_secs() as usize).clamp(1, seconds.len().max(1));
    &seconds[..whole.min(seconds.len())]
}

/// Writes `timeline.csv` (every second) and `timeline.svg` (the whole seconds of `elapsed`)
/// into `dir` (created if needed).
pub fn write(
    dir: &Path,
    seconds: &[Second],
    elapsed: std::time::Duration,
    title: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let csv_path = dir.join("timeline.csv");
    std::fs::write(&csv_path, csv(seconds))
        .map_err(|e| format!("cannot write {}: {e}", csv_path.display()))?;
    let chart =
        svg(title, &series(whole_seconds(seconds, elapsed), "client requests/s", "origin requests/s"))?;
    let svg_path = dir.join("timeline.svg");
    std::fs::write(&svg_path, chart).map_err(|e| format!("cannot write {}: {e}", svg_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_one_row_per_second_and_empty_unmeasured_cells() {
        let seconds = vec![
            Second { requests: 10, errors: 1, p50_ms: Some(1.5), p99_ms: Some(9.25), ..Default::default() },
            Second {
                requests: 0,
                origin_requests: Some(3.0),
                origin_pairs: Some(60.0),
                ..Default::default()
            },
        ];
        let text = csv(&seconds);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, [CSV_HEADER, "0,10,1,,,1.500,9.250", "1,0,0,3,60,,"]);
    }

    #[test]
    fn svg_is_a_chart_with_a_legend() {
        let seconds: Vec<Second> = (0..5)
            .map(|i| Second { requests: 100 + i, origin_requests: Some(i as f64), ..Default::default() })
            .collect();
        let s = svg("test", &series(&seconds, "client", "origin")).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..50]);
        assert!(s.contains("client") && s.contains("origin") && s.contains("<polyline"));
    }
}
