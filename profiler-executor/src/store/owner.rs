//! Who writes a run: the process (pid, host, start time) that owns each running run, so
//! that a run whose process died is told from one still running.

use std::sync::OnceLock;

/// The process that writes a run: its pid, its host, and its start time (clock ticks after
/// boot, from `/proc/{pid}/stat`), which tells a reused pid from the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    pub host: String,
    pub start: Option<i64>,
}

impl Owner {
    /// This process.
    pub fn current() -> &'static Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                host: host_name(),
                start: process_start(pid),
            }
        })
    }

    /// Whether this owner is known to have ended: it ran on this host and its pid is gone
    /// or now names another process (another start time). `false` when it cannot be told
    /// (another host, or no `/proc`).
    pub fn is_dead(&self) -> bool {
        let me = Owner::current();
        if self.host != me.host {
            return false;
        }
        if self.pid == me.pid {
            return self.start != me.start;
        }
        if !std::path::Path::new("/proc/self/stat").exists() {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.start.is_some_and(|s| s != start),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Field 22 of `/proc/{pid}/stat` (the process's start time), `None` when there is no
/// such process (or no `/proc`). A zombie counts as ended.
fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (the state); field 22 is fields[19].
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::Owner;

    #[test]
    fn this_process_is_alive_and_a_gone_pid_is_dead() {
        let me = Owner::current().clone();
        assert!(me.start.is_some());
        assert!(!me.is_dead());
        let reused = Owner {
            start: me.start.map(|s| s + 1),
            ..me.clone()
        };
        assert!(reused.is_dead());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Owner {
            pid,
            host: me.host.clone(),
            start: Some(1),
        };
        assert!(gone.is_dead());
        let elsewhere = Owner {
            host: format!("{}-elsewhere", me.host),
            ..gone
        };
        assert!(!elsewhere.is_dead());
    }
}
