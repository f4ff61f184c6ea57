//! Text output: numbers with units, UTC times, and tables that fit the terminal width.

use agent_profiler_report::date::UtcDateTime;

/// Every text line the tool prints fits this many columns.
pub const WIDTH: usize = 80;

/// What stands for a cut-off end of a cell or line.
const ELLIPSIS: char = '…';

/// A duration in ms: `1234.5 ms`.
pub fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

/// `v` rounded to `decimals`, with a change that rounds to nothing shown as `+0`, not `-0`.
fn signed(v: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    let r = (v * scale).round() / scale;
    if r == 0.0 { 0.0 } else { r }
}

/// A signed duration in ms: `+12.0 ms`, `-3.5 ms`.
pub fn delta_ms(v: f64) -> String {
    format!("{:+.1} ms", signed(v, 1))
}

/// A cost in USD: `$0.001234`.
pub fn usd(v: f64) -> String {
    format!("${v:.6}")
}

/// A signed cost in USD: `+$0.000120`, `-$0.000120`.
pub fn delta_usd(v: f64) -> String {
    let v = signed(v, 6);
    if v < 0.0 {
        format!("-${:.6}", -v)
    } else {
        format!("+${v:.6}")
    }
}

/// A signed percentage: `+80.1%`.
pub fn delta_pct(v: f64) -> String {
    format!("{:+.1}%", signed(v, 1))
}

/// Seconds since the Unix epoch as a UTC date, clamped to the years 1970 to 9999 so that
/// every date has the same width in a table (a bad timestamp shows as 1970 or 9999).
fn civil(secs: f64) -> UtcDateTime {
    let secs = if secs.is_finite() {
        secs.clamp(0.0, 253_402_300_799.0) as i64
    } else {
        0
    };
    UtcDateTime::from_unix_seconds(secs)
}

/// A time for tables: `2026-05-01 10:11` (UTC).
pub fn utc_minutes(secs: f64) -> String {
    let t = civil(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// A time for JSON: `2026-05-01T10:11:12Z`.
pub fn utc_iso(secs: f64) -> String {
    let t = civil(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `text` with every control character written as an escape (`\n`, `\r`, `\t`,
/// `\u{1b}`), so that a name can neither break a line nor send the terminal an escape
/// sequence. Stores written by older versions may hold such names (workflow names were
/// not checked); every cell and every line the tool prints goes through this (in
/// [`clip`]).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A report as the executor wrote it (its lines kept as they are), with the control
/// characters of the workflow's name, and any other control character but the line
/// breaks, escaped.
pub fn printable_report(report: &str, workflow: &str) -> String {
    let shown = printable(workflow);
    let report = if shown != workflow {
        report.replace(&format!("`{workflow}`"), &format!("`{shown}`"))
    } else {
        report.to_owned()
    };
    let mut out = String::with_capacity(report.len());
    for line in report.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(line) => {
                out.push_str(&printable(line));
                out.push('\n');
            }
            None => out.push_str(&printable(line)),
        }
    }
    out
}

/// `text` cut to `width` characters, its end replaced by an ellipsis when cut; control
/// characters escaped first ([`printable`]).
pub fn clip(text: &str, width: usize) -> String {
    let text = &*printable(text);
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push(ELLIPSIS);
    out
}

/// Every line of `text` clipped to [`WIDTH`]: the last guard of the 80-column rule.
pub fn clip_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&clip(line, WIDTH));
        out.push('\n');
    }
    out
}

/// One character per value, its height in proportion to the value (from 0 to the
/// highest value: a steady series is flat, a spike stands out); `·` where a value is
/// missing.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let hi = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|v| match v {
            None => '·',
            Some(_) if hi <= 0.0 => BARS[0],
            Some(v) => {
                let level = (v / hi * 7.0).round();
                BARS[level.clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

/// How a column's cells line up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A text table that fits [`WIDTH`]: columns marked flexible (names, ids of any length)
/// give up width first, their cells cut with an ellipsis.
pub struct Table {
    headers: Vec<&'static str>,
    aligns: Vec<Align>,
    flexible: Vec<bool>,
    rows: Vec<Vec<String>>,
}

/// Spaces between columns.
const GAP: usize = 2;
/// A flexible column keeps at least this many characters.
const MIN_FLEX: usize = 8;

impl Table {
    /// A table with these columns: (header, alignment, flexible).
    pub fn new(columns: &[(&'static str, Align, bool)]) -> Self {
        Self {
            headers: columns.iter().map(|c| c.0).collect(),
            aligns: columns.iter().map(|c| c.1).collect(),
            flexible: columns.iter().map(|c| c.2).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The column widths: natural, then the widest flexible column narrowed one
    /// character at a time until the table fits (or every flexible column is at its
    /// minimum; the lines are then clipped).
    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        while total(&widths) > WIDTH {
            let widest = (0..widths.len())
                .filter(|&i| self.flexible[i] && widths[i] > MIN_FLEX)
                .max_by_key(|&i| widths[i]);
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
        widths
    }

    /// The table as text: a header line, then one line per row.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                let cell = clip(cell, widths[i]);
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.aligns[i] {
                    Align::Left => {
                        line.push_str(&cell);
                        line.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(&cell);
                    }
                }
            }
            out.push_str(&clip(line.trim_end(), WIDTH));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(ms(1234.56), "1234.6 ms");
        assert_eq!(delta_ms(12.0), "+12.0 ms");
        assert_eq!(delta_ms(-3.5), "-3.5 ms");
        assert_eq!(usd(0.00123), "$0.001230");
        assert_eq!(delta_usd(-0.00012), "-$0.000120");
        assert_eq!(delta_usd(0.0), "+$0.000000");
        assert_eq!(delta_pct(80.06), "+80.1%");
        assert_eq!(delta_pct(-0.04), "+0.0%");
        assert_eq!(delta_ms(-0.04), "+0.0 ms");
        assert_eq!(delta_usd(-0.0000004), "+$0.000000");
    }

    #[test]
    fn dates() {
        assert_eq!(utc_iso(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(utc_minutes(1_777_630_271.9), "2026-05-01 10:11");
        assert_eq!(utc_iso(f64::NAN), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso(1e300), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("abcdef", 6), "abcdef");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("äöüäöü", 3), "äö…");
        assert_eq!(clip("abc", 0), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("a\nb\u{1b}[31mc\t"), "a\\nb\\u{1b}[31mc\\t");
        assert_eq!(clip("x\u{1b}[2J", 80), "x\\u{1b}[2J");
        assert_eq!(clip_lines("w\u{7}\nok\n"), "w\\u{7}\nok\n");
        let report = "Slowest node: a (1.00ms avg)\nworkflow `evil\n\u{1b}[2J` completed\n";
        assert_eq!(
            printable_report(report, "evil\n\u{1b}[2J"),
            "Slowest node: a (1.00ms avg)\nworkflow `evil\\n\\u{1b}[2J` completed\n"
        );
    }

    #[test]
    fn sparklines() {
        assert_eq!(sparkline(&[Some(0.0), Some(8.0), None, Some(4.0)]), "▁█·▅");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)]), "██");
        assert_eq!(sparkline(&[Some(0.0), Some(f64::NAN)]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn tables_fit() {
        let mut t = Table::new(&[("node", Align::Left, true), ("time", Align::Right, false)]);
        t.row(vec!["n".repeat(100), ms(1.0)]);
        t.row(vec!["short".into(), ms(12345.0)]);
        let text = t.render();
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        assert!(text.contains('…'));
        assert!(text.lines().nth(2).unwrap().ends_with("12345.0 ms"));
    }
}
