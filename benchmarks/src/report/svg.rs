//! Hand-written SVG charts: a figure of one or more panels of lines with min–max whiskers, or
//! of bars with whiskers and an optional dashed target, and a legend to the right.
//!
//! This module knows geometry and drawing only; which runs become which series, and their
//! colours, is the business of the report's `plots` module. Everything is laid out on fixed
//! slots (legend outside the plot area, one tick label per category slot, wrapped onto
//! lines) so that no two labels can overlap whatever the data.

use std::fmt::Write as _;

/// Text everywhere in a figure.
const FONT: &str = "sans-serif";
/// Width of one panel's plot area: wider when a figure has a single panel.
const PANEL_W_SINGLE: f64 = 540.0;
const PANEL_W_MULTI: f64 = 380.0;
/// Room left of each panel for the y tick labels and the y axis label.
const LEFT: f64 = 84.0;
/// Height of the whole figure, and the margins above and below the plot area.
const HEIGHT: f64 = 440.0;
const TOP: f64 = 70.0;
const TOP_WITH_PANEL_TITLES: f64 = 86.0;
const BOTTOM: f64 = 74.0;
/// Between the legend's left edge and the last panel's right edge.
const LEGEND_GAP: f64 = 24.0;
/// Rough advance of one character at a font size, for a sans-serif face: enough to keep
/// labels from colliding without measuring glyphs.
const CHAR_W: f64 = 0.6;
const TICK_FONT: f64 = 12.0;
const AXIS: &str = "#333333";
const GRID: &str = "#e3e3e3";
const TARGET: &str = "#c0392b";
const TARGET_DASH: &str = "7 5";

/// A median with its spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// One line: a point (or a gap) per category of its panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub colour: String,
    /// An SVG `stroke-dasharray`, to tell apart series of the same colour.
    pub dash: Option<String>,
    pub points: Vec<Option<Point>>,
}

/// One bar of a category's group.
#[derive(Debug, Clone)]
pub struct Bar {
    pub colour: String,
    pub point: Point,
}

#[derive(Debug, Clone)]
pub enum Marks {
    Lines(Vec<Series>),
    /// A group of bars side by side per category.
    Bars(Vec<Vec<Bar>>),
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub title: Option<String>,
    pub x_label: String,
    pub y_label: String,
    /// Tick labels along x, one per slot; `\n` breaks a label onto lines.
    pub categories: Vec<String>,
    pub marks: Marks,
}

#[derive(Debug, Clone)]
pub enum Swatch {
    Line { dash: Option<String> },
    Bar,
    Target,
}

#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub label: String,
    pub colour: String,
    pub swatch: Swatch,
}

/// A chart: panels side by side sharing one y scale, so they compare at a glance.
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub subtitle: String,
    pub panels: Vec<Panel>,
    pub legend: Vec<LegendEntry>,
    /// A logarithmic y axis (lines only: a bar's length means nothing on one).
    pub log_y: bool,
    /// Drawn as a dashed line across every panel.
    pub target: Option<f64>,
}

/// Escapes text for an SVG element's content or an attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// A tick label: 1k, 10k, 120k, 1.5M, 0.25.
pub fn si(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = if magnitude >= 1e9 {
        (value / 1e9, "G")
    } else if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let decimals = if scaled.abs() >= 1.0 || scaled == 0.0 {
        2
    } else {
        4
    };
    let text = format!("{scaled:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{suffix}")
}

fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * CHAR_W
}

/// The y axis: where a value sits, and which values get a tick.
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

/// 1, 2, 2.5 or 5 times a power of ten, giving about `count` steps over `range`.
fn nice_step(range: f64, count: f64) -> f64 {
    let raw = range / count;
    let magnitude = 10f64.powf(raw.log10().floor());
    let normal = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&n| normal <= n + 1e-9)
        .unwrap_or(10.0);
    nice * magnitude
}

impl Scale {
    fn new(low: f64, high: f64, log: bool) -> Scale {
        if log && low > 0.0 {
            let lo = 10f64.powf(low.log10().floor());
            let mut hi = 10f64.powf(high.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
            let decades = (hi / lo).log10().round() as i32;
            let mut ticks = Vec::new();
            for d in 0..=decades {
                let decade = lo * 10f64.powi(d);
                ticks.push(decade);
                // With few decades the powers of ten alone leave the axis unreadable.
                if decades <= 2 && d < decades {
                    ticks.extend([2.0 * decade, 5.0 * decade]);
                }
            }
            return Scale {
                log: true,
                lo,
                hi,
                ticks,
            };
        }
        // Rates and times start at zero, so a bar's or point's height is its size; the
        // headroom keeps whiskers and value labels off the frame.
        let lo = low.min(0.0);
        let top = if high > lo { high * 1.08 } else { 1.0 };
        let step = nice_step(top - lo, 6.0);
        let lo = (lo / step).floor() * step;
        let hi = (top / step).ceil() * step;
        let count = ((hi - lo) / step).round() as usize;
        let ticks = (0..=count).map(|k| lo + k as f64 * step).collect();
        Scale {
            log: false,
            lo,
            hi,
            ticks,
        }
    }

    /// 0 at the bottom of the axis, 1 at the top.
    fn fraction(&self, value: f64) -> f64 {
        let f = if self.log {
            let value = value.max(self.lo * 1e-3);
            (value / self.lo).log10() / (self.hi / self.lo).log10()
        } else {
            (value - self.lo) / (self.hi - self.lo)
        };
        f.clamp(-0.02, 1.02)
    }
}

/// The SVG text being built, with small drawing helpers.
struct Canvas {
    out: String,
}

impl Canvas {
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}"/>"#
        );
    }

    fn dashed(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}" stroke-dasharray="{TARGET_DASH}"/>"#
        );
    }

    /// Text; `\n` breaks it onto lines below the first. A white halo keeps it readable where
    /// it crosses a line.
    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        x: f64,
        y: f64,
        anchor: &str,
        size: f64,
        fill: &str,
        extra: &str,
        content: &str,
    ) {
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{extra}>"#
        );
        for (i, line) in content.split('\n').enumerate() {
            if i == 0 {
                let _ = write!(self.out, "<tspan x=\"{x:.1}\">{}</tspan>", escape(line));
            } else {
                let _ = write!(
                    self.out,
                    "<tspan x=\"{x:.1}\" dy=\"{:.1}\">{}</tspan>",
                    size * 1.2,
                    escape(line)
                );
            }
        }
        self.out.push_str("</text>\n");
    }
}

/// Where one panel's plot area is.
#[derive(Clone, Copy)]
struct Area {
    left: f64,
    top: f64,
    width: f64,
    bottom: f64,
}

impl Area {
    fn slot(&self, categories: usize) -> f64 {
        self.width / categories.max(1) as f64
    }

    fn x(&self, i: usize, categories: usize) -> f64 {
        self.left + (i as f64 + 0.5) * self.slot(categories)
    }

    fn y(&self, scale: &Scale, value: f64) -> f64 {
        self.bottom - scale.fraction(value) * (self.bottom - self.top)
    }
}

fn y_range(figure: &Figure) -> (f64, f64) {
    let mut low = f64::INFINITY;
    let mut high = f64::NEG_INFINITY;
    let mut take = |p: &Point| {
        low = low.min(p.min).min(p.median);
        high = high.max(p.max).max(p.median);
    };
    for panel in &figure.panels {
        match &panel.marks {
            Marks::Lines(series) => series
                .iter()
                .flat_map(|s| s.points.iter().flatten())
                .for_each(&mut take),
            Marks::Bars(groups) => groups.iter().flatten().for_each(|b| take(&b.point)),
        }
    }
    if let Some(target) = figure.target {
        low = low.min(target);
        high = high.max(target);
    }
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    (low, high)
}

impl Figure {
    /// The figure as a standalone SVG document.
    pub fn render(&self) -> String {
        let panels = self.panels.len().max(1);
        let panel_w = if panels == 1 {
            PANEL_W_SINGLE
        } else {
            PANEL_W_MULTI
        };
        let top = if self.panels.iter().any(|p| p.title.is_some()) {
            TOP_WITH_PANEL_TITLES
        } else {
            TOP
        };
        let legend_w = self
            .legend
            .iter()
            .map(|entry| 36.0 + text_width(&entry.label, 12.5))
            .fold(0.0, f64::max);
        let plots_right = LEFT + panels as f64 * (panel_w + LEFT) - LEFT;
        let width = (plots_right + LEGEND_GAP + legend_w + 16.0)
            .max(text_width(&self.title, 17.0) + 40.0)
            .ceil();
        let (low, high) = y_range(self);
        let log = self.log_y && low > 0.0;
        let scale = Scale::new(low, high, log);

        let mut canvas = Canvas { out: String::new() };
        let _ = writeln!(
            canvas.out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="{FONT}">"#
        );
        let _ = writeln!(canvas.out, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(
            canvas.out,
            r#"<rect x="0" y="0" width="{width}" height="{HEIGHT}" fill="white"/>"#
        );
        canvas.text(
            LEFT,
            28.0,
            "start",
            17.0,
            "#111111",
            r#" font-weight="bold""#,
            &self.title,
        );
        canvas.text(LEFT, 48.0, "start", 12.5, "#555555", "", &self.subtitle);

        for (i, panel) in self.panels.iter().enumerate() {
            let area = Area {
                left: LEFT + i as f64 * (panel_w + LEFT),
                top,
                width: panel_w,
                bottom: HEIGHT - BOTTOM,
            };
            self.render_panel(&mut canvas, panel, area, &scale);
        }
        self.render_legend(&mut canvas, plots_right + LEGEND_GAP, top + 4.0);
        canvas.out.push_str("</svg>\n");
        canvas.out
    }

    fn render_panel(&self, canvas: &mut Canvas, panel: &Panel, area: Area, scale: &Scale) {
        let right = area.left + area.width;
        // Grid and y ticks.
        for &tick in &scale.ticks {
            let y = area.y(scale, tick);
            canvas.line(area.left, y, right, y, GRID, 1.0);
            canvas.line(area.left - 5.0, y, area.left, y, AXIS, 1.0);
            canvas.text(
                area.left - 8.0,
                y + 4.0,
                "end",
                TICK_FONT,
                AXIS,
                "",
                &si(tick),
            );
        }
        if let Some(title) = &panel.title {
            canvas.text(
                area.left + area.width / 2.0,
                area.top - 12.0,
                "middle",
                13.5,
                "#222222",
                r#" font-weight="bold""#,
                title,
            );
        }
        // Axis labels: y rotated along the left edge, x centred below the tick labels.
        let (label_x, label_y) = (area.left - 62.0, (area.top + area.bottom) / 2.0);
        canvas.text(
            label_x,
            label_y,
            "middle",
            13.0,
            "#222222",
            &format!(r#" transform="rotate(-90 {label_x:.1} {label_y:.1})""#),
            &panel.y_label,
        );
        // Right under the tick labels, however many lines they take.
        let tick_lines = panel
            .categories
            .iter()
            .map(|c| c.split('\n').count())
            .max()
            .unwrap_or(1);
        canvas.text(
            area.left + area.width / 2.0,
            area.bottom + 19.0 + (tick_lines - 1) as f64 * TICK_FONT * 1.2 + 24.0,
            "middle",
            13.0,
            "#222222",
            "",
            &panel.x_label,
        );
        self.render_categories(canvas, panel, area);

        match &panel.marks {
            Marks::Lines(series) => {
                render_lines(canvas, series, panel.categories.len(), area, scale)
            }
            Marks::Bars(groups) => render_bars(canvas, groups, panel.categories.len(), area, scale),
        }
        if let Some(target) = self.target {
            let y = area.y(scale, target);
            canvas.dashed(area.left, y, right, y, TARGET, 2.0);
        }
        // The frame's axes last, over the bars' feet.
        canvas.line(area.left, area.top, area.left, area.bottom, AXIS, 1.2);
        canvas.line(area.left, area.bottom, right, area.bottom, AXIS, 1.2);
    }

    /// One tick label per category slot; on a line plot where labels are wider than their
    /// slot, only every n-th is written so that none overlap.
    fn render_categories(&self, canvas: &mut Canvas, panel: &Panel, area: Area) {
        let n = panel.categories.len();
        let slot = area.slot(n);
        let widest = panel
            .categories
            .iter()
            .flat_map(|c| c.split('\n'))
            .map(|line| text_width(line, TICK_FONT))
            .fold(0.0, f64::max);
        // Bar groups' labels are all needed (each names its group) and are few; line plots'
        // categories are an ordered axis, where every other label still reads.
        let every = match panel.marks {
            Marks::Lines(_) => ((widest + 6.0) / slot).ceil().max(1.0) as usize,
            Marks::Bars(_) => 1,
        };
        for (i, category) in panel.categories.iter().enumerate() {
            let x = area.x(i, n);
            canvas.line(x, area.bottom, x, area.bottom + 5.0, AXIS, 1.0);
            if i % every == 0 {
                canvas.text(
                    x,
                    area.bottom + 19.0,
                    "middle",
                    TICK_FONT,
                    AXIS,
                    "",
                    category,
                );
            }
        }
    }

    fn render_legend(&self, canvas: &mut Canvas, x: f64, top: f64) {
        for (i, entry) in self.legend.iter().enumerate() {
            let y = top + 8.0 + i as f64 * 22.0;
            let colour = entry.colour.as_str();
            match &entry.swatch {
                Swatch::Line { dash } => {
                    let dash = dash
                        .as_deref()
                        .map(|d| format!(r#" stroke-dasharray="{d}""#))
                        .unwrap_or_default();
                    let _ = writeln!(
                        canvas.out,
                        r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="2.5"{dash}/>"#,
                        x + 26.0
                    );
                    let _ = writeln!(
                        canvas.out,
                        r#"<circle cx="{:.1}" cy="{y:.1}" r="4" fill="{colour}" stroke="white" stroke-width="1"/>"#,
                        x + 13.0
                    );
                }
                Swatch::Bar => {
                    let _ = writeln!(
                        canvas.out,
                        r#"<rect x="{:.1}" y="{:.1}" width="16" height="14" fill="{colour}"/>"#,
                        x + 5.0,
                        y - 7.0
                    );
                }
                Swatch::Target => canvas.dashed(x, y, x + 26.0, y, TARGET, 2.0),
            }
            canvas.text(
                x + 34.0,
                y + 4.5,
                "start",
                12.5,
                "#222222",
                "",
                &entry.label,
            );
        }
    }
}

fn whisker(canvas: &mut Canvas, x: f64, y_min: f64, y_max: f64, colour: &str) {
    // A spread too small to see is left out rather than drawn as a smudge under the point.
    if (y_min - y_max).abs() < 1.5 {
        return;
    }
    canvas.line(x, y_min, x, y_max, colour, 1.5);
    canvas.line(x - 4.0, y_min, x + 4.0, y_min, colour, 1.5);
    canvas.line(x - 4.0, y_max, x + 4.0, y_max, colour, 1.5);
}

fn render_lines(
    canvas: &mut Canvas,
    series: &[Series],
    categories: usize,
    area: Area,
    scale: &Scale,
) {
    // Series are nudged apart sideways so that whiskers at one category do not hide each other.
    let dodge = (area.slot(categories) / (series.len() + 2) as f64).min(6.0);
    let offset = |s: usize| (s as f64 - (series.len() as f64 - 1.0) / 2.0) * dodge;
    for (s, line) in series.iter().enumerate() {
        for (i, point) in line.points.iter().enumerate() {
            if let Some(p) = point {
                let x = area.x(i, categories) + offset(s);
                whisker(
                    canvas,
                    x,
                    area.y(scale, p.min),
                    area.y(scale, p.max),
                    &line.colour,
                );
            }
        }
    }
    for (s, line) in series.iter().enumerate() {
        let dash = line
            .dash
            .as_deref()
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        // A missing point breaks the line rather than joining its neighbours across it.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, point) in line.points.iter().enumerate() {
            match point {
                Some(p) => segments
                    .last_mut()
                    .expect("never empty")
                    .push((area.x(i, categories) + offset(s), area.y(scale, p.median))),
                None => segments.push(Vec::new()),
            }
        }
        for segment in segments.iter().filter(|s| s.len() > 1) {
            let points: Vec<String> = segment
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                canvas.out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5" stroke-linejoin="round"{dash}/>"#,
                points.join(" "),
                line.colour
            );
        }
        for (x, y) in segments.iter().flatten() {
            let _ = writeln!(
                canvas.out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{}" stroke="white" stroke-width="1"/>"#,
                line.colour
            );
        }
    }
}

fn render_bars(
    canvas: &mut Canvas,
    groups: &[Vec<Bar>],
    categories: usize,
    area: Area,
    scale: &Scale,
) {
    let widest = groups.iter().map(Vec::len).max().unwrap_or(1).max(1) as f64;
    let bar_w = (area.slot(categories) * 0.7 / widest).min(72.0);
    let base = area.y(scale, 0f64.max(scale.lo));
    for (i, group) in groups.iter().enumerate() {
        let centre = area.x(i, categories);
        for (j, bar) in group.iter().enumerate() {
            let x = centre + (j as f64 - (group.len() as f64 - 1.0) / 2.0) * bar_w;
            let top = area.y(scale, bar.point.median);
            // A hairline of white between neighbours keeps bars of one group apart.
            let _ = writeln!(
                canvas.out,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}" stroke="white" stroke-width="1"/>"#,
                x - bar_w / 2.0,
                bar_w,
                (base - top).max(0.0),
                bar.colour
            );
            let (y_min, y_max) = (area.y(scale, bar.point.min), area.y(scale, bar.point.max));
            whisker(canvas, x, y_min, y_max, AXIS);
            // A value wider than its bar would run into the next one's: the table has it.
            let value = si_value(bar.point.median);
            if text_width(&value, 12.0) <= bar_w + 4.0 {
                canvas.text(
                    x,
                    y_max.min(top) - 7.0,
                    "middle",
                    12.0,
                    "#111111",
                    r#" stroke="white" stroke-width="3" paint-order="stroke""#,
                    &value,
                );
            }
        }
    }
}

/// A value printed on a bar: three significant figures, in the tick labels' style.
fn si_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        return "0".to_string();
    }
    let digits = magnitude.log10().floor() as i32;
    if digits >= 3 {
        let unit = 10f64.powi(digits - 2);
        return si((value / unit).round() * unit);
    }
    let decimals = (2 - digits).clamp(0, 4) as usize;
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(1000.0), "1k");
        assert_eq!(si(120_000.0), "120k");
        assert_eq!(si(1_500_000.0), "1.5M");
        assert_eq!(si(2500.0), "2.5k");
        assert_eq!(si(0.25), "0.25");
        assert_eq!(si(5.0), "5");
    }

    #[test]
    fn bar_values() {
        assert_eq!(si_value(48_213.0), "48.2k");
        assert_eq!(si_value(42.37), "42.4");
        assert_eq!(si_value(3.456), "3.46");
        assert_eq!(si_value(0.0), "0");
    }

    #[test]
    fn linear_scale_starts_at_zero_with_nice_ticks() {
        let scale = Scale::new(40_000.0, 49_000.0, false);
        assert_eq!(scale.lo, 0.0);
        assert!(scale.hi >= 49_000.0 * 1.08);
        assert_eq!(scale.ticks[1], 10_000.0);
    }

    #[test]
    fn log_scale_spans_decades() {
        let scale = Scale::new(2.0, 900.0, true);
        assert_eq!((scale.lo, scale.hi), (1.0, 1000.0));
        assert_eq!(scale.ticks, vec![1.0, 10.0, 100.0, 1000.0]);
    }
}
