//! The tasks `mcp` started, so that `mcp tasks list` can show them: the Tasks extension has no
//! way to list a server's tasks, and the ids are long. One JSON line per task in
//! `$XDG_STATE_HOME/mcp-toolkit/tasks.jsonl` (owner-only), appended as each is created; the
//! file keeps the last [`KEPT`] of them.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// How many records the file keeps (it is cut back to these when it holds twice as many).
pub const KEPT: usize = 1000;

/// A task `mcp` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedTask {
    /// The server's name in the config.
    pub server: String,
    /// The task's id on that server.
    pub task: String,
    /// The tool whose call became the task.
    pub tool: String,
    /// When, in seconds since the epoch.
    pub started: u64,
}

/// `$XDG_STATE_HOME/mcp-toolkit/tasks.jsonl` (or `~/.local/state/…`).
pub fn default_path() -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::State).join("tasks.jsonl")
}

/// Records a task at the default path; a failure is logged, never fatal (the task runs on).
pub fn record(server: &str, task: &str, tool: &str) {
    let path = default_path();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let entry = StartedTask {
        server: server.to_owned(),
        task: task.to_owned(),
        tool: tool.to_owned(),
        started,
    };
    if let Err(error) = append(&path, &entry) {
        tracing::warn!(path = %path.display(), %error, "the task could not be recorded for `mcp tasks list`");
    }
}

/// Appends `entry` (one write of one line, so concurrent `mcp` processes do not interleave),
/// and cuts the file back to the last [`KEPT`] records when it holds twice as many.
pub fn append(path: &Path, entry: &StartedTask) -> std::io::Result<()> {
    append_keeping(path, entry, KEPT)
}

fn append_keeping(path: &Path, entry: &StartedTask, kept: usize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(&line)?;
    // Counting lines is enough to know; the records are read only to cut the file back.
    let lines = std::fs::read(path)?
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count();
    if lines > 2 * kept {
        let all = read(path)?;
        let mut text = Vec::new();
        for entry in &all[all.len() - kept..] {
            text.extend(serde_json::to_vec(entry).map_err(std::io::Error::other)?);
            text.push(b'\n');
        }
        crate::write_whole(path, &text, crate::Readers::Owner)?;
    }
    Ok(())
}

/// The records, oldest first; a line that does not read (a torn write) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<StartedTask>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_owner_only_torn_lines_skipped_and_the_file_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/tasks.jsonl");
        let entry = |n: usize| StartedTask {
            server: "s".into(),
            task: format!("t{n}"),
            tool: "slow".into(),
            started: n as u64,
        };
        append(&path, &entry(0)).unwrap();
        // A torn line (a process killed mid-write) does not hide the others.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"server\": \"s\", \"ta")
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        append(&path, &entry(1)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![entry(0), entry(1)]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Kept: 5 (KEPT in use). With record 9 the file holds eleven lines (the torn one among
        // them), more than twice five: it is cut back to records 5..=9, and 10 follows.
        for n in 2..=10 {
            append_keeping(&path, &entry(n), 5).unwrap();
        }
        let kept = read(&path).unwrap();
        assert_eq!(kept, (5..=10).map(entry).collect::<Vec<_>>());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 6);
    }
}
