//! A tiny writer for SVG and HTML text: every piece of text and every attribute value goes
//! through [`esc`], numbers are written with a fixed precision, and labels are fitted to a
//! width with an estimate of the font's advance widths (never narrower than the real ones,
//! so a fitted label does not run into its neighbour).

use std::fmt::Write as _;

/// The colour of secondary text: axis labels, notes.
pub(crate) const MUTED_TEXT: &str = "#52606d";
/// Colour of labels and values.
pub(crate) const TEXT: &str = "#1f2933";

/// The font every chart uses; the width estimate below is for the widest of them (DejaVu
/// Sans, the usual fallback on Linux).
pub(crate) const FONT_FAMILY: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, 'DejaVu Sans', sans-serif";

/// `text` escaped for XML and HTML text and double- or single-quoted attribute values.
/// Characters XML does not allow (control characters other than tab and line breaks,
/// unpaired surrogates cannot occur in a `str`) become U+FFFD, so the SVG always parses.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// A coordinate or length: two decimals at most, no trailing zeros, never `NaN` or `-0`.
pub(crate) fn num(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_owned();
    }
    let mut s = format!("{:.2}", value);
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    if s == "-0" { "0".to_owned() } else { s }
}

/// Estimated advance width of `c` in em (DejaVu Sans, rounded up).
fn char_em(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 0.32,
        ' ' | 'f' | 't' | 'r' | 'I' | '(' | ')' | '[' | ']' | '/' | '-' => 0.42,
        'm' | 'w' => 0.98,
        'M' | 'W' | '%' | '@' => 1.02,
        'A'..='Z' => 0.8,
        'a'..='z' | '0'..='9' | '_' | '$' | '#' | '?' | '*' | '+' | '=' | '<' | '>' | '~' => 0.66,
        '&' => 0.8,
        '…' | '·' => 0.8,
        c if c.is_ascii() => 0.66,
        // CJK, emoji and the like: a full em.
        _ => 1.0,
    }
}

/// Estimated width of `text` in px at `font_px` (an upper bound for the fonts of
/// [`FONT_FAMILY`]).
pub(crate) fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().map(char_em).sum::<f64>() * font_px
}

/// `text` if it fits in `max_px` at `font_px`; else its longest prefix that fits with `…`
/// after it (just `…`, or nothing, when even that does not fit). The second value says
/// whether it was cut.
pub(crate) fn fit(text: &str, max_px: f64, font_px: f64) -> (String, bool) {
    if text_width(text, font_px) <= max_px {
        return (text.to_owned(), false);
    }
    let budget = max_px - char_em('…') * font_px;
    let mut used = 0.0;
    let mut out = String::new();
    for c in text.chars() {
        used += char_em(c) * font_px;
        if used > budget {
            break;
        }
        out.push(c);
    }
    if budget >= 0.0 {
        out.push('…');
    }
    (out, true)
}

/// `n` with thousands separators: `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in ms with its unit and a precision that suits its size: `0.042 ms`,
/// `3.25 ms`, `48.1 ms`, `1,040 ms`.
pub(crate) fn ms(value: f64) -> String {
    let v = if value.is_finite() {
        value.max(0.0)
    } else {
        0.0
    };
    if v == 0.0 {
        "0 ms".to_owned()
    } else if v < 1.0 {
        format!("{v:.3} ms")
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{} ms", group(v.round() as u64))
    }
}

/// A percentage with one decimal and its unit: `63.4%`.
pub(crate) fn pct(value: f64) -> String {
    let v = if value.is_finite() { value } else { 0.0 };
    format!("{v:.1}%")
}

/// A threshold or tick percentage: `50%`, `12.5%`.
pub(crate) fn pct_short(value: f64) -> String {
    let v = if value.is_finite() { value } else { 0.0 };
    if (v - v.round()).abs() < 1e-9 {
        format!("{}%", v.round() as i64)
    } else {
        format!("{}%", num(v))
    }
}

/// A USD amount with enough digits to tell small LLM costs apart: `$0`, `$0.000042`,
/// `$0.0123`, `$1.23`.
pub(crate) fn usd(value: f64) -> String {
    let v = if value.is_finite() {
        value.max(0.0)
    } else {
        0.0
    };
    if v == 0.0 {
        "$0".to_owned()
    } else if v < 0.001 {
        format!("${v:.6}")
    } else if v < 1.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// A count with its noun: `1 call`, `1,234 calls`.
pub(crate) fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", group(n))
    }
}

/// A token count with its unit: `1 token`, `1,234 tokens`.
pub(crate) fn tokens(n: u64) -> String {
    counted(n, "token")
}

/// "Nice" axis ticks from 0 up to `max` (inclusive when it falls on a tick): steps of 1, 2
/// or 5 times a power of ten, about `target` of them. `max <= 0` gives just `[0]`.
pub(crate) fn ticks(max: f64, target: usize) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0];
    }
    let rough = max / target.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let intervals = |step: f64| max / step;
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .min_by(|a, b| {
            let da = (intervals(*a) - target as f64).abs();
            let db = (intervals(*b) - target as f64).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(power);
    let count = (max / step + 1e-9).floor() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// An SVG document under construction. Elements are appended as text; every method
/// escapes what it is given.
pub(crate) struct Svg {
    out: String,
}

impl Svg {
    /// An `<svg>` of `width` × `height` px (and the same viewBox), with an accessible name.
    pub(crate) fn new(width: f64, height: f64, class: &str, label: &str) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="{}" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{}" font-family="{}" font-size="12">"#,
            esc(class),
            num(width),
            num(height),
            num(width),
            num(height),
            esc(label),
            esc(FONT_FAMILY),
        );
        let _ = write!(out, "<title>{}</title>", esc(label));
        Svg { out }
    }

    /// A horizontal axis under a chart: a baseline from `x0` to `x1` at `bottom` and, for
    /// each `(x, label)` tick, a tick mark and its label. A label that would come closer
    /// than `gap` px to the previous one is left out, so labels never overlap; a label is
    /// kept inside `canvas_width`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn x_axis(
        &mut self,
        x0: f64,
        x1: f64,
        bottom: f64,
        ticks: impl IntoIterator<Item = (f64, String)>,
        font: f64,
        gap: f64,
        canvas_width: f64,
    ) {
        self.line(
            "axis",
            x0,
            bottom + 2.0,
            x1,
            bottom + 2.0,
            r##" stroke="#9aa5b1" stroke-width="1""##,
        );
        let mut last_right = f64::NEG_INFINITY;
        for (x, label) in ticks {
            let w = text_width(&label, font);
            let x_text = x.min(canvas_width - w / 2.0 - 2.0);
            if x_text - w / 2.0 < last_right + gap {
                continue;
            }
            last_right = x_text + w / 2.0;
            self.line(
                "tick",
                x,
                bottom + 2.0,
                x,
                bottom + 6.0,
                r##" stroke="#9aa5b1""##,
            );
            self.text(
                "tick-label",
                x_text,
                bottom + 18.0,
                "middle",
                &format!(r#" fill="{MUTED_TEXT}" font-size="{font}""#),
                &label,
                None,
            );
        }
    }

    /// A chart of `width` px that only says why there is nothing to draw.
    pub(crate) fn empty(width: f64, class: &str, label: &str, message: &str) -> String {
        let mut svg = Svg::new(width, 44.0, class, label);
        svg.text(
            "empty",
            width / 2.0,
            27.0,
            "middle",
            &format!(r#" fill="{MUTED_TEXT}" font-size="13""#),
            message,
            None,
        );
        svg.finish()
    }

    /// A note under a chart (what was left out, what is missing), from `x` at `y`.
    pub(crate) fn note(&mut self, x: f64, y: f64, font: f64, text: &str) {
        self.text(
            "note",
            x,
            y,
            "start",
            &format!(r#" fill="{MUTED_TEXT}" font-size="{font}" font-style="italic""#),
            text,
            None,
        );
    }

    /// A rectangle; `extra` is raw attribute text (already escaped), `title` a tooltip.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rect(
        &mut self,
        class: &str,
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: &str,
        extra: &str,
        title: Option<&str>,
    ) {
        let _ = write!(
            self.out,
            r#"<rect class="{}" x="{}" y="{}" width="{}" height="{}" fill="{}"{}"#,
            esc(class),
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0)),
            esc(fill),
            extra,
        );
        match title {
            Some(t) => {
                let _ = write!(self.out, "><title>{}</title></rect>", esc(t));
            }
            None => self.out.push_str("/>"),
        }
    }

    /// A line; `extra` is raw attribute text (already escaped).
    pub(crate) fn line(&mut self, class: &str, x1: f64, y1: f64, x2: f64, y2: f64, extra: &str) {
        let _ = write!(
            self.out,
            r#"<line class="{}" x1="{}" y1="{}" x2="{}" y2="{}"{}/>"#,
            esc(class),
            num(x1),
            num(y1),
            num(x2),
            num(y2),
            extra,
        );
    }

    /// A text at (`x`, `y`) (baseline); `anchor` is `start`, `middle` or `end`; `extra` is
    /// raw attribute text; `title` a tooltip (the full text when the shown one is cut).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn text(
        &mut self,
        class: &str,
        x: f64,
        y: f64,
        anchor: &str,
        extra: &str,
        text: &str,
        title: Option<&str>,
    ) {
        let _ = write!(
            self.out,
            r#"<text class="{}" x="{}" y="{}" text-anchor="{}"{}>"#,
            esc(class),
            num(x),
            num(y),
            esc(anchor),
            extra,
        );
        if let Some(t) = title {
            let _ = write!(self.out, "<title>{}</title>", esc(t));
        }
        let _ = write!(self.out, "{}</text>", esc(text));
    }

    /// The finished document.
    pub(crate) fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            esc("<script>a&b\"c'</script>\u{1}"),
            "&lt;script&gt;a&amp;b&quot;c&#39;&lt;/script&gt;\u{fffd}"
        );
    }

    #[test]
    fn numbers_are_short_and_finite() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
        assert_eq!(ms(1040.13), "1,040 ms");
        assert_eq!(ms(0.0), "0 ms");
        assert_eq!(ms(3.254), "3.25 ms");
        assert_eq!(pct_short(50.0), "50%");
        assert_eq!(pct_short(12.5), "12.5%");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(tokens(1), "1 token");
    }

    #[test]
    fn fitted_labels_stay_within_their_width() {
        let (short, cut) = fit("plan", 100.0, 12.0);
        assert_eq!((short.as_str(), cut), ("plan", false));
        let (long, cut) = fit(&"x".repeat(200), 100.0, 12.0);
        assert!(cut && long.ends_with('…'));
        assert!(text_width(&long, 12.0) <= 100.0);
        assert_eq!(fit("abc", 1.0, 12.0).0, "");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(100.0, 4), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.0, 4), vec![0.0]);
        assert_eq!(ticks(7.0, 4), vec![0.0, 2.0, 4.0, 6.0]);
    }
}
