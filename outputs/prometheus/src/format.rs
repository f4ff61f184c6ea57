//! The two text formats a scrape can ask for, and which one an `Accept` header asks for.

/// A text format of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`), what Prometheus asks for
    /// first.
    OpenMetrics,
    /// Prometheus' classic text format 0.0.4 (`text/plain`), for older scrapers and for
    /// people with `curl`.
    Text,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it is acceptable (a `q`
    /// above 0) and weighted at least as high as plain text, else the classic text format
    /// (also with no header at all).
    ///
    /// ```
    /// use agent_profiler_prometheus::Format;
    ///
    /// // What Prometheus 2.x sends.
    /// let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
    ///                   version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
    /// assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
    /// assert_eq!(Format::from_accept(None), Format::Text);
    /// assert_eq!(
    ///     Format::from_accept(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
    ///     Format::Text
    /// );
    /// ```
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}
