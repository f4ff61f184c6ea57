//! Server-sent events (`text/event-stream`), read incrementally: the one line parser both
//! streaming clients share.
//!
//! Bytes are fed as the network delivers them, so a line, a `\r\n` or a UTF-8 character may
//! be split across chunks anywhere. Lines end with `\n`, `\r\n` or `\r`; `data:` lines of one
//! event are joined with `\n`; an empty line ends the event; lines starting with `:` are
//! comments (keep-alives); `id:` and `retry:` are read and ignored (a client that does not
//! reconnect has no use for them). What is buffered (the line being read and the event's
//! data) is capped, so a server that never ends a line cannot grow memory without bound.

/// One event: its type (`event:`), when named, and its data lines joined with `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, when the server named the event.
    pub(crate) event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// The buffered part of the stream outgrew the cap: the bytes it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooLarge(pub(crate) usize);

/// An incremental parser; see the module documentation.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// The current line, up to its end.
    line: Vec<u8>,
    /// The last byte fed was a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
    event: Option<String>,
    data: String,
    /// Whether a `data:` field was seen in this event (an empty `data:` still counts).
    has_data: bool,
    /// No line has ended yet: the first may start with a byte order mark, which the format
    /// says to drop (it would otherwise hide the first field's name).
    first_line: bool,
    max_buffered: usize,
}

impl SseParser {
    /// A parser that buffers at most `max_buffered` bytes (the line being read plus the
    /// event's data).
    pub(crate) fn new(max_buffered: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
            first_line: true,
            max_buffered,
        }
    }

    /// Feeds `bytes`, appending every event they complete to `out`.
    ///
    /// # Errors
    /// [`TooLarge`] when the line being read and the event's data outgrow the cap; the
    /// events completed before it are in `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TooLarge> {
        // An empty chunk (HTTP/2 can deliver one) must not forget a `\r` that ended the last.
        if bytes.is_empty() {
            return Ok(());
        }
        let mut rest = bytes;
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', tail @ ..] = rest {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            self.check()?;
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
            self.line = line;
            self.line.clear();
            let crlf = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if crlf {
                match rest {
                    [b'\n', tail @ ..] => rest = tail,
                    [] => self.after_cr = true,
                    _ => {}
                }
            }
        }
        self.line.extend_from_slice(rest);
        self.check()
    }

    fn check(&self) -> Result<(), TooLarge> {
        let buffered = self.line.len() + self.data.len();
        if buffered > self.max_buffered {
            return Err(TooLarge(buffered));
        }
        Ok(())
    }

    /// One complete line (without its end).
    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            let event = self.event.take();
            if std::mem::take(&mut self.has_data) {
                out.push(SseEvent {
                    event,
                    data: std::mem::take(&mut self.data),
                });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        // Decoded per whole line: a character split across network chunks is whole here.
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece, &mut out).unwrap();
        }
        out
    }

    fn event(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_end_at_blank_lines_whatever_the_line_ends() {
        let text = "event: ping\ndata: {}\n\ndata: a\r\n\r\ndata: b\r\rdata:c\n\n";
        assert_eq!(
            parse_in_pieces(&[text.as_bytes()]),
            [
                event(Some("ping"), "{}"),
                event(None, "a"),
                event(None, "b"),
                event(None, "c")
            ]
        );
    }

    #[test]
    fn data_lines_join_and_comments_and_other_fields_are_skipped() {
        let text = ": keep-alive\nid: 7\nretry: 100\ndata: one\ndata:two\ndata\n\n";
        assert_eq!(
            parse_in_pieces(&[text.as_bytes()]),
            [event(None, "one\ntwo\n")]
        );
        // A blank line without data dispatches nothing and forgets the event type.
        let text = "event: x\n\ndata: y\n\n";
        assert_eq!(parse_in_pieces(&[text.as_bytes()]), [event(None, "y")]);
    }

    #[test]
    fn a_stream_split_at_every_byte_parses_as_a_whole() {
        let text = "event: content_block_delta\r\ndata: {\"text\": \"héllo\"}\r\n\r\n\
                    : comment\r\ndata: [DONE]\r\n\r\n";
        let whole = parse_in_pieces(&[text.as_bytes()]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].data, "{\"text\": \"héllo\"}");
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(parse_in_pieces(&bytes), whole);
        // Cut between `\r` and `\n`, and inside the two bytes of `é`.
        for cut in 1..text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(parse_in_pieces(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert!(parse_in_pieces(&[b"data: half"]).is_empty());
        assert!(parse_in_pieces(&[b"data: half\n"]).is_empty());
    }

    #[test]
    fn a_line_or_event_larger_than_the_cap_is_refused() {
        let mut parser = SseParser::new(16);
        let mut out = Vec::new();
        assert_eq!(parser.feed(b"data: 0123456789", &mut out), Ok(()));
        assert_eq!(parser.feed(b"abc", &mut out), Err(TooLarge(19)));
        // Many short lines of one event count together.
        let mut parser = SseParser::new(16);
        let err = parser.feed(b"data: 01234567\ndata: 89abcdef\n", &mut out);
        assert!(err.is_err());
        assert!(out.is_empty());
        // Lines of events already dispatched do not.
        let mut parser = SseParser::new(16);
        let many = "data: 0123456789\n\n".repeat(100);
        assert_eq!(parser.feed(many.as_bytes(), &mut out), Ok(()));
        assert_eq!(out.len(), 100);
    }

    #[test]
    fn a_byte_order_mark_split_across_chunks_is_dropped() {
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        for chunk in [&b"\xEF"[..], b"\xBB\xBFdata: {}\n", b"\n"] {
            parser.feed(chunk, &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, "{}");
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_keeps_them_one_line_end() {
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        for chunk in [&b"data: x\r"[..], b"", b"\ndata: y\r\n\r\n"] {
            parser.feed(chunk, &mut out).unwrap();
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].data, "x\ny");
    }
}
