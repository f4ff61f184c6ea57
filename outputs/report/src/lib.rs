//! agent-profiler's pictures: pure functions of an analyzer's [`Summary`] and a trace-mode
//! [`Trace`], with no network and no threads.
//!
//! - [`html`]: one self-contained HTML page per run (inline SVG charts of time and cost shares,
//!   a timeline of every call, a table of every node);
//! - [`perfetto`]: a trace as Chrome Trace Event JSON, for Perfetto and `chrome://tracing`;
//! - [`layout`]: the lanes both draw calls on (nested calls on their caller's lane, calls that
//!   overlap a sibling on lanes of their own);
//! - [`date`]: calendar dates of Unix times (UTC), as the report and the command-line tool
//!   print them.
//!
//! [`Summary`]: agent_profiler_runtime::Summary
//! [`Trace`]: agent_profiler_runtime::Trace
#![warn(missing_docs)]

pub mod date;
pub mod html;
pub mod layout;
pub mod perfetto;
