//! The Perfetto sink: the run's trace as a Chrome Trace Event file.

use std::path::PathBuf;

use super::{RunSink, Warnings};
use crate::workflow::WorkflowRun;

/// Writes `{dir}/{run id}.perfetto.json` for each run with a trace (the directory created
/// when missing), and sets [`WorkflowRun::perfetto_file`].
pub(crate) struct PerfettoSink {
    dir: PathBuf,
}

impl PerfettoSink {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl RunSink for PerfettoSink {
    fn run_finished(&self, run: &mut WorkflowRun, warnings: &Warnings) {
        let Some(trace) = &run.trace else {
            return;
        };
        let record = &run.record;
        let path = self.dir.join(format!("{}.perfetto.json", record.id));
        let title = format!("{} (run {})", record.workflow_name, record.id);
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            agent_profiler_report::perfetto::write_chrome_trace(trace, &title, &path)
        });
        match written {
            Ok(()) => run.perfetto_file = Some(path),
            Err(e) => warnings.warn(format!("Perfetto file {} not written: {e}", path.display())),
        }
    }
}
