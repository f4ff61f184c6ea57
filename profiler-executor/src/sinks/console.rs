//! The console sink: the run's report, printed when the run ends.

use super::{RunSink, Warnings};
use crate::console::Console;
use crate::workflow::WorkflowRun;

/// Prints the run's report ([`WorkflowRun::report`], with each node's time split when its
/// LLM calls were timed) after a blank line.
pub(crate) struct ConsoleSink {
    console: Console,
}

impl ConsoleSink {
    pub fn new(console: Console) -> Self {
        Self { console }
    }
}

impl RunSink for ConsoleSink {
    fn run_finished(&self, run: &mut WorkflowRun, _warnings: &Warnings) {
        self.console.write(&format!("\n{}", run.report));
    }
}
