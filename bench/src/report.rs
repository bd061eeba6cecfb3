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

/// All contenders at one N on one filesystem.
#[derive(Debug, Clone)]
pub struct Row {
    pub filesystem: String,
    pub n: usize,
    pub cells: [Cell; 3],
    /// Every run's wall time, per contender, in run order: the contenders
    /// of one run ran back to back, so their ratio is the least touched by
    /// a slow phase of the machine.
    pub walls: [Vec<Duration>; 3],
}

impl Row {
    pub fn rate(&self, c: Contender) -> f64 {
        self.n as f64 / self.cell(c).wall.as_secs_f64()
    }
    pub fn cell(&self, c: Contender) -> Cell {
        self.cells[Contender::ALL.iter().position(|&x| x == c).expect("known contender")]
    }
    pub fn ratio(&self, a: Contender, b: Contender) -> f64 {
        self.cell(a).wall.as_secs_f64() / self.cell(b).wall.as_secs_f64()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The main table, one line per filesystem and N.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| filesystem | N | 1 sandboxed s | 2 native s | 3 fs floor s | 1 storages/s | 2 storages/s | 3 storages/s | peak RSS 1 / 2 / 3 MiB | 1/2 | 2/3 | runs |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let [a, b, c] = row.cells;
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} | {:.2}x | {:.2}x | {} |",
            row.filesystem,
            row.n,
            a.wall.as_secs_f64(),
            b.wall.as_secs_f64(),
            c.wall.as_secs_f64(),
            row.rate(Contender::Sandboxed),
            row.rate(Contender::Native),
            row.rate(Contender::Floor),
            mib(a.peak_rss),
            mib(b.peak_rss),
            mib(c.peak_rss),
            row.ratio(Contender::Sandboxed, Contender::Native),
            row.ratio(Contender::Native, Contender::Floor),
            a.runs
        );
    }
    out
}

/// The ratios of each run (sandboxed / native, sandboxed / floor), for
/// sizes run three times or more: their median and quartiles. A slow phase
/// of the machine that spans a run slows all three contenders of it, so
/// these move less than the ratio of medians in the main table.
pub fn paired_ratios(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|row| row.walls[0].len() >= 3) {
        if out.is_empty() {
            out.push_str(
                "| filesystem | N | 1/2 run by run: median (quartiles) | 1/3 run by run: median (quartiles) | runs |\n",
            );
            out.push_str("|---|---:|---:|---:|---:|\n");
        }
        let [a, b, c] = &row.walls;
        let spread = |other: &[Duration]| {
            let mut ratios: Vec<f64> = a.iter().zip(other).map(|(x, y)| x.as_secs_f64() / y.as_secs_f64()).collect();
            ratios.sort_by(f64::total_cmp);
            let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
            format!("{:.2}x ({:.2}-{:.2}x)", at(2), at(1), at(3))
        };
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", row.filesystem, row.n, spread(b), spread(c), a.len());
    }
    out
}

/// How time grows from one N to ten times it, per contender.
pub fn linearity(rows: &[Row]) -> String {
    let mut out = String::new();
    for small in rows {
        let Some(big) = rows.iter().find(|r| r.filesystem == small.filesystem && r.n == small.n * 10) else { continue };
        let _ = write!(out, "- {}: time({}) / time({}) =", small.filesystem, big.n, small.n);
        for c in Contender::ALL {
            let factor = big.cell(c).wall.as_secs_f64() / small.cell(c).wall.as_secs_f64();
            let _ = write!(out, " {} {factor:.2}x;", c.label());
        }
        out.pop();
        out.push('\n');
    }
    out
}

const COLORS: [&str; 3] = ["#d62728", "#1f77b4", "#7f7f7f"];

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
    let max_rate = rows.iter().flat_map(|r| Contender::ALL.map(|c| r.rate(c))).fold(0.0, f64::max);
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
        for (ci, c) in Contender::ALL.iter().enumerate() {
            let mut points: Vec<(f64, f64)> =
                rows.iter().filter(|r| r.filesystem == *fs).map(|r| (r.n as f64, r.rate(*c))).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = points.iter().map(|(n, r)| format!("{:.1},{:.1}", x(*n), y(*r))).collect();
            let color = COLORS[ci];
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
            let _ =
                writeln!(s, r#"<text x="{}" y="{}">{} ({})</text>"#, lx + 30.0, legend_y + 4.0, c.label(), escape(fs));
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

    #[test]
    fn svg_has_a_line_per_contender_and_filesystem() {
        let cell = |s: f64| Cell { wall: Duration::from_secs_f64(s), peak_rss: 1 << 20, runs: 1 };
        let rows: Vec<Row> = [("tmpfs", 1000, 0.1), ("tmpfs", 10000, 1.0), ("ext4", 1000, 0.2), ("ext4", 10000, 2.0)]
            .into_iter()
            .map(|(fs, n, s)| Row {
                filesystem: fs.into(),
                n,
                cells: [cell(s * 1.2), cell(s), cell(s / 2.0)],
                walls: Default::default(),
            })
            .collect();
        let svg = svg(&rows, "t");
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(table(&rows).contains("| tmpfs | 10000 |"));
        assert!(linearity(&rows).contains("time(10000) / time(1000)"));
        assert_eq!(thousands(100000.0), "100,000");
        assert_eq!(paired_ratios(&rows), "", "no size ran three times");
    }

    #[test]
    fn ratios_are_taken_run_by_run() {
        let secs = |v: &[f64]| v.iter().map(|&s| Duration::from_secs_f64(s)).collect::<Vec<_>>();
        // The second run is slow for everyone: its ratios are those of the others.
        let walls = [secs(&[1.5, 3.0, 1.6, 1.4]), secs(&[1.0, 2.0, 1.0, 1.0]), secs(&[0.75, 1.5, 0.8, 0.7])];
        let cell = Cell { wall: Duration::ZERO, peak_rss: 0, runs: 4 };
        let row = Row { filesystem: "tmpfs".into(), n: 10, cells: [cell; 3], walls };
        let table = paired_ratios(&[row]);
        assert!(table.contains("| tmpfs | 10 | 1.50x (1.40-1.50x) | 2.00x (2.00-2.00x) | 4 |"), "{table}");
    }
}
