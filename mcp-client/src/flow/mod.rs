//! Workflows: declared multi-step pipelines over the servers' tools, prompts and resources and
//! the configured model (`mcp flow`).
//!
//! - [`file`]: the YAML file, read with every node's line.
//! - [`expr`]: the `${{ … }}` expressions in its texts (minijinja's expression language).
//! - [`check`]: the checks before a run, with and without the servers.
//! - [`store`]: runs and their steps, durably, in SQLite.
//! - [`run`]: running and resuming.
//! - [`trace`]: a run's trace as a self-contained HTML page.
//! - [`serve`]: the workflows of a directory as an MCP server's tools.

pub mod check;
pub mod expr;
pub mod file;
pub mod run;
pub mod serve;
pub mod store;
pub mod trace;

use std::path::Path;

use file::{Problem, Workflow};

/// The most bytes a workflow file may have.
const MAX_FILE: u64 = 1 << 20;

/// Reads and parses a workflow file, and runs the checks that need no server: the workflow and
/// the file's text.
pub fn load(path: &Path) -> Result<(Workflow, String), Vec<Problem>> {
    let whole = |message: String| vec![Problem { line: 0, message }];
    let size = std::fs::metadata(path)
        .map_err(|e| whole(format!("{}: {e}", path.display())))?
        .len();
    if size > MAX_FILE {
        return Err(whole(format!(
            "{}: {size} bytes; a workflow file has at most {MAX_FILE}",
            path.display()
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| whole(format!("{}: {e}", path.display())))?;
    let workflow = file::parse(&text)?;
    let problems = check::static_problems(&workflow, &expr::Engine::new());
    if problems.is_empty() {
        Ok((workflow, text))
    } else {
        Err(problems)
    }
}
