//! Results: the markdown tables and the throughput plot (an SVG written by
//! hand, so the bench needs no plotting library).

use std::fmt::Write as _;
use std::time::Duration;

use crate::contenders::Contender;

/// The median wall time and the largest peak RSS of one contender at one N.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub wall: Duration,
    pub peak_rss: u64,
    pub runs: usize,
}

/// One contender at one N on one filesystem.
#[derive(Debug, Clone)]
pub struct Column {
    pub contender: Contender,
    /// `1`, `1a`, `2`, ...: how the tables name it.
    pub tag: String,
    pub label: String,
    pub cell: Cell,
    /// Every run's wall time, in run order: the contenders of one run ran
    /// back to back, so their ratio is the least touched by a slow phase of
    /// the machine.
    pub walls: Vec<Duration>,
}

/// All contenders at one N on one filesystem.
#[derive(Debug, Clone)]
pub struct Row {
    pub filesystem: String,
    pub n: usize,
    pub columns: Vec<Column>,
}

impl Row {
    pub fn rate(&self, column: &Column) -> f64 {
        self.n as f64 / column.cell.wall.as_secs_f64()
    }

    fn find(&self, contender: Contender) -> Option<&Column> {
        self.columns.iter().find(|c| c.contender == contender)
    }

    fn builds(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| matches!(c.contender, Contender::Sandboxed(_)))
    }

    /// The pairs whose ratios the tables give: each build against native
    /// and the floor, native against the floor, and each later build
    /// against the first.
    fn pairs(&self) -> Vec<(&Column, &Column)> {
        let (native, floor) = (self.find(Contender::Native), self.find(Contender::Floor));
        let mut pairs = Vec::new();
        for build in self.builds() {
            pairs.extend(native.map(|n| (build, n)));
            pairs.extend(floor.map(|f| (build, f)));
        }
        if let (Some(n), Some(f)) = (native, floor) {
            pairs.push((n, f));
        }
        let mut builds = self.builds();
        if let Some(first) = builds.next() {
            pairs.extend(builds.map(|later| (later, first)));
        }
        pairs
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The main table, one line per filesystem and N.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else { return out };
    let tags: Vec<&str> = first.columns.iter().map(|c| c.tag.as_str()).collect();
    let pairs: Vec<String> = first.pairs().iter().map(|(a, b)| format!("{}/{}", a.tag, b.tag)).collect();
    let mut header = vec!["filesystem".to_owned(), "N".to_owned()];
    header.extend(first.columns.iter().map(|c| format!("{} s", c.label)));
    header.extend(tags.iter().map(|t| format!("{t} storages/s")));
    header.push(format!("peak RSS {} MiB", tags.join(" / ")));
    header.extend(pairs);
    header.push("runs".to_owned());
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len() - 1));
    for row in rows {
        let mut cells = vec![row.filesystem.clone(), row.n.to_string()];
        cells.extend(row.columns.iter().map(|c| format!("{:.3}", c.cell.wall.as_secs_f64())));
        cells.extend(row.columns.iter().map(|c| format!("{:.0}", row.rate(c))));
        let rss: Vec<String> = row.columns.iter().map(|c| format!("{:.1}", mib(c.cell.peak_rss))).collect();
        cells.push(rss.join(" / "));
        cells.extend(
            row.pairs().iter().map(|(a, b)| format!("{:.2}x", a.cell.wall.as_secs_f64() / b.cell.wall.as_secs_f64())),
        );
        cells.push(row.columns.first().map_or(0, |c| c.cell.runs).to_string());
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The ratios of each run for the pairs of [`table`] (but native against
/// the floor), for sizes run three times or more: their median and
/// quartiles. A slow phase of the machine that spans a run slows all the
/// contenders of it, so these move less than the ratio of medians.
pub fn paired_ratios(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|row| row.columns.first().is_some_and(|c| c.walls.len() >= 3)) {
        let pairs: Vec<_> = row.pairs().into_iter().filter(|(a, _)| a.contender != Contender::Native).collect();
        if out.is_empty() {
            let heads: Vec<String> =
                pairs.iter().map(|(a, b)| format!("{}/{} run by run: median (quartiles)", a.tag, b.tag)).collect();
            let _ = writeln!(out, "| filesystem | N | {} | runs |", heads.join(" | "));
            let _ = writeln!(out, "|---|---:|{}---:|", "---:|".repeat(heads.len()));
        }
        let spread = |a: &[Duration], b: &[Duration]| {
            let mut ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.as_secs_f64() / y.as_secs_f64()).collect();
            ratios.sort_by(f64::total_cmp);
            let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
            format!("{:.2}x ({:.2}-{:.2}x)", at(2), at(1), at(3))
        };
        let cells: Vec<String> = pairs.iter().map(|(a, b)| spread(&a.walls, &b.walls)).collect();
        let runs = row.columns.first().map_or(0, |c| c.walls.len());
        let _ = writeln!(out, "| {} | {} | {} | {runs} |", row.filesystem, row.n, cells.join(" | "));
    }
    out
}

/// How time grows from one N to ten times it, per contender.
pub fn linearity(rows: &[Row]) -> String {
    let mut out = String::new();
    for small in rows {
        let Some(big) = rows.iter().find(|r| r.filesystem == small.filesystem && r.n == small.n * 10) else { continue };
        let _ = write!(out, "- {}: time({}) / time({}) =", small.filesystem, big.n, small.n);
        for (s, b) in small.columns.iter().zip(&big.columns) {
            let factor = b.cell.wall.as_secs_f64() / s.cell.wall.as_secs_f64();
            let _ = write!(out, " {} {factor:.2}x;", s.label);
        }
        out.pop();
        out.push('\n');
    }
    out
}

/// The builds' colours (reds and oranges), then native's and the floor's.
const BUILD_COLORS: [&str; 4] = ["#d62728", "#ff7f0e", "#8c564b", "#e377c2"];

fn color(column: &Column) -> &'static str {
    match column.contender {
        Contender::Sandboxed(i) => BUILD_COLORS[i % BUILD_COLORS.len()],
        Contender::Native => "#1f77b4",
        Contender::Floor => "#7f7f7f",
    }
}

/// Throughput (storages/s) against N, log-scaled N, one line per contender
/// and filesystem (solid: the first filesystem, dashed: the others).
pub fn svg(rows: &[Row], title: &str) -> String {
    let (w, h) = (720.0, 440.0);
    let (left, right, top, bottom) = (80.0, 200.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (min_n, max_n) = (*sizes.first().unwrap_or(&1) as f64, *sizes.last().unwrap_or(&10) as f64);
    let span = (max_n.log10() - min_n.log10()).max(1.0);
    let max_rate = rows.iter().flat_map(|r| r.columns.iter().map(|c| r.rate(c))).fold(0.0, f64::max);
    let y_max = nice_ceiling(max_rate.max(1.0));
    let x = |n: f64| left + (n.log10() - min_n.log10()) / span * pw;
    let y = |rate: f64| top + ph - rate / y_max * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    // Axes and grid.
    let _ = writeln!(s, r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, top + ph, left + pw, top + ph);
    let _ = writeln!(s, r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#, top + ph);
    for i in 0..=5 {
        let rate = y_max * f64::from(i) / 5.0;
        let yy = y(rate);
        let _ = writeln!(s, r##"<line x1="{left}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/>"##, left + pw);
        let _ =
            writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, left - 6.0, yy + 4.0, thousands(rate));
    }
    for &n in &sizes {
        let xx = x(n as f64);
        let _ = writeln!(s, r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{}" stroke="#ddd"/>"##, top + ph);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            top + ph + 18.0,
            thousands(n as f64)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">runners in the storage root (N, log scale)</text>"#,
        left + pw / 2.0,
        h - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">storages per second</text>"#,
        top + ph / 2.0
    );
    // One polyline per (filesystem, contender).
    let mut filesystems: Vec<&str> = Vec::new();
    for r in rows {
        if !filesystems.contains(&r.filesystem.as_str()) {
            filesystems.push(&r.filesystem);
        }
    }
    let mut legend_y = top + 10.0;
    for (fi, fs) in filesystems.iter().enumerate() {
        let dash = if fi == 0 { "" } else { r#" stroke-dasharray="6 4""# };
        let first = rows.iter().find(|r| r.filesystem == *fs).map(|r| r.columns.as_slice()).unwrap_or_default();
        for (ci, column) in first.iter().enumerate() {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.filesystem == *fs)
                .filter_map(|r| r.columns.get(ci).map(|c| (r.n as f64, r.rate(c))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = points.iter().map(|(n, r)| format!("{:.1},{:.1}", x(*n), y(*r))).collect();
            let color = color(column);
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for (n, r) in &points {
                let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, x(*n), y(*r));
            }
            let lx = left + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/>"#,
                lx + 24.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}">{} ({})</text>"#,
                lx + 30.0,
                legend_y + 4.0,
                column.label,
                escape(fs)
            );
            legend_y += 18.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(contender: Contender, tag: &str, wall: f64, walls: &[f64]) -> Column {
        let label = format!("{tag} {contender:?}");
        let cell = Cell { wall: Duration::from_secs_f64(wall), peak_rss: 1 << 20, runs: walls.len().max(1) };
        let walls = walls.iter().map(|&s| Duration::from_secs_f64(s)).collect();
        Column { contender, tag: tag.into(), label, cell, walls }
    }

    fn three(s: f64) -> Vec<Column> {
        vec![
            column(Contender::Sandboxed(0), "1", s * 1.2, &[]),
            column(Contender::Native, "2", s, &[]),
            column(Contender::Floor, "3", s / 2.0, &[]),
        ]
    }

    #[test]
    fn svg_has_a_line_per_contender_and_filesystem() {
        let rows: Vec<Row> = [("tmpfs", 1000, 0.1), ("tmpfs", 10000, 1.0), ("ext4", 1000, 0.2), ("ext4", 10000, 2.0)]
            .into_iter()
            .map(|(fs, n, s)| Row { filesystem: fs.into(), n, columns: three(s) })
            .collect();
        let svg = svg(&rows, "t");
        assert_eq!(svg.matches("<polyline").count(), 6);
        let table = table(&rows);
        assert!(table.contains("| tmpfs | 10000 | 1.200 | 1.000 | 0.500 |"), "{table}");
        assert!(table.contains("| 1/2 | 1/3 | 2/3 | runs |"), "{table}");
        assert!(linearity(&rows).contains("time(10000) / time(1000)"));
        assert_eq!(thousands(100000.0), "100,000");
        assert_eq!(paired_ratios(&rows), "", "no size ran three times");
    }

    #[test]
    fn ratios_are_taken_run_by_run() {
        // The second run is slow for everyone: its ratios are those of the others.
        let columns = vec![
            column(Contender::Sandboxed(0), "1", 0.0, &[1.5, 3.0, 1.6, 1.4]),
            column(Contender::Native, "2", 0.0, &[1.0, 2.0, 1.0, 1.0]),
            column(Contender::Floor, "3", 0.0, &[0.75, 1.5, 0.8, 0.7]),
        ];
        let table = paired_ratios(&[Row { filesystem: "tmpfs".into(), n: 10, columns }]);
        assert!(table.contains("| tmpfs | 10 | 1.50x (1.40-1.50x) | 2.00x (2.00-2.00x) | 4 |"), "{table}");
    }

    #[test]
    fn builds_side_by_side_are_each_compared_and_the_later_ones_with_the_first() {
        let columns = vec![
            column(Contender::Sandboxed(0), "1a", 2.0, &[2.0, 2.0, 2.0]),
            column(Contender::Sandboxed(1), "1b", 1.8, &[1.8, 1.9, 1.7]),
            column(Contender::Native, "2", 1.0, &[1.0, 1.0, 1.0]),
            column(Contender::Floor, "3", 0.5, &[0.5, 0.5, 0.5]),
        ];
        let rows = [Row { filesystem: "tmpfs".into(), n: 10, columns }];
        let table = table(&rows);
        assert!(table.contains("| 1a/2 | 1a/3 | 1b/2 | 1b/3 | 2/3 | 1b/1a | runs |"), "{table}");
        assert!(table.contains("| 2.00x | 4.00x | 1.80x | 3.60x | 2.00x | 0.90x | 3 |"), "{table}");
        let ratios = paired_ratios(&rows);
        assert!(ratios.contains("| 1b/1a run by run: median (quartiles) | runs |"), "{ratios}");
        assert!(ratios.contains("| 0.90x (0.85-0.90x) | 3 |"), "{ratios}");
        assert_eq!(svg(&rows, "t").matches("<polyline").count(), 4);
    }
}
