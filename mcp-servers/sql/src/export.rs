//! `export_query`: a result of any size, streamed into a file inside the export directory.
//!
//! The path goes through mcp-core's sandbox: resolved beneath the export directory by whole
//! components, then opened through the directory's handle, where the kernel refuses a `..` or
//! symbolic link that leads out. Rows are written to a hidden temporary file beside the target
//! and moved into place only when the statement finished: a failed or cancelled export leaves
//! nothing behind, and never a half-written file under the name asked for. A file may grow to
//! the configured bound and no further.

use std::{
    io::{self, Write},
    path::Path,
};

use mcp_core::sandbox::{Sandbox, SandboxError};
use rmcp::schemars;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Column, Database, DbError, RowWriter};

/// Largest export file unless the config says otherwise.
pub const DEFAULT_MAX_EXPORT_BYTES: u64 = 1 << 30;
/// Rows the summary shows.
const PREVIEW_ROWS: usize = 5;

/// The two formats an export is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A header line, then a line per row; RFC 4180 quoting; NULL as an empty field.
    Csv,
    /// A JSON object per line, keyed by column name.
    Jsonl,
}

/// Where exports go, and how large one may grow.
pub struct Export {
    sandbox: Sandbox,
    max_bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ExportSummary {
    /// The file written, as an absolute path.
    pub path: String,
    /// csv or jsonl.
    pub format: ExportFormat,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The result's columns.
    pub columns: Vec<Column>,
    /// The first rows, for a look.
    pub first_rows: Vec<Vec<Value>>,
}

impl ExportSummary {
    /// The summary as a line or two of text.
    pub fn text(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        format!(
            "wrote {} row{} ({} bytes, {:?}) to {}\ncolumns: {}",
            self.rows,
            if self.rows == 1 { "" } else { "s" },
            self.bytes,
            self.format,
            self.path,
            names.join(", ")
        )
    }
}

impl Export {
    /// Exports into `dir` (which must exist), each file at most `max_bytes`.
    pub fn new(dir: &Path, max_bytes: Option<u64>) -> Result<Self, DbError> {
        let sandbox = Sandbox::new(&[dir]).map_err(|e| {
            DbError::new(format!("export_dir: {e}"))
                .with_hint("create the directory, or fix export_dir in the config")
        })?;
        Ok(Self {
            sandbox,
            max_bytes: max_bytes.unwrap_or(DEFAULT_MAX_EXPORT_BYTES),
        })
    }

    /// Runs `sql` on `db` and writes every row to `path`.
    pub async fn run(
        &self,
        db: &Database,
        sql: String,
        params: Vec<Value>,
        format: ExportFormat,
        path: &str,
        overwrite: bool,
    ) -> Result<ExportSummary, DbError> {
        let resolved = self.sandbox.resolve(path).map_err(sandbox_error)?;
        // Named as an escape when it is one (the opens below refuse it either way).
        self.sandbox
            .check_beneath(&resolved)
            .map_err(sandbox_error)?;
        let Some((parent, name)) = resolved.split() else {
            return Err(DbError::new(
                "export to a file, not to the export directory itself",
            ));
        };
        let dir = resolved.dir();
        if parent != Path::new(".") {
            dir.create_dir_all(&parent)
                .map_err(|e| sandbox_error(resolved.error(e)))?;
        }
        let parent_dir = dir
            .open_dir(&parent)
            .map_err(|e| sandbox_error(resolved.error(e)))?;
        if !overwrite && parent_dir.symlink_metadata(&name).is_ok() {
            return Err(
                DbError::new(format!("{} exists", resolved.display().display()))
                    .with_hint("pass overwrite: true to replace it, or choose another path"),
            );
        }
        let temp_name = format!(
            ".{}.{}.partial",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        );
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        let file = parent_dir
            .open_with(&temp_name, &options)
            .map_err(|e| sandbox_error(resolved.error(e)))?
            .into_std();

        // The temporary file goes, whatever happens: once moved into place there is nothing
        // left under its name.
        let _cleanup = RemoveOnDrop {
            dir: &parent_dir,
            name: temp_name.clone(),
        };
        let out = Counting {
            file: io::BufWriter::with_capacity(256 * 1024, file),
            written: 0,
            limit: self.max_bytes,
        };
        let writer = ExportWriter {
            out: match format {
                ExportFormat::Csv => {
                    Output::Csv(Box::new(csv::WriterBuilder::new().from_writer(out)))
                }
                ExportFormat::Jsonl => Output::Jsonl {
                    out,
                    keys: Vec::new(),
                },
            },
            preview: Preview::default(),
        };
        let mut writer = db.stream(sql, params, writer).await?;
        writer.end()?;
        let placed = if overwrite {
            parent_dir.rename(&temp_name, &parent_dir, &name)
        } else {
            // A hard link fails if the name was taken meanwhile: nothing is replaced.
            parent_dir.hard_link(&temp_name, &parent_dir, &name)
        };
        placed.map_err(|e| {
            let error = sandbox_error(resolved.error(e));
            if !overwrite {
                error.with_hint("pass overwrite: true to replace it, or choose another path")
            } else {
                error
            }
        })?;
        let bytes = writer.out.counting().written;
        let preview = writer.preview;
        Ok(ExportSummary {
            path: self
                .sandbox
                .real_path(&resolved)
                .unwrap_or_else(|_| resolved.display())
                .display()
                .to_string(),
            format,
            rows: preview.rows,
            bytes,
            columns: preview.columns,
            first_rows: preview.first,
        })
    }
}

fn sandbox_error(error: SandboxError) -> DbError {
    let escape = matches!(
        error,
        SandboxError::Outside { .. } | SandboxError::Escape { .. }
    );
    let refused = DbError::new(error.to_string());
    if escape {
        refused.with_hint("the path is relative to the export directory and may not leave it")
    } else {
        refused
    }
}

struct RemoveOnDrop<'a> {
    dir: &'a cap_std::fs::Dir,
    name: String,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove_file(&self.name);
    }
}

/// What the summary shows, filled as rows pass.
#[derive(Default)]
struct Preview {
    columns: Vec<Column>,
    first: Vec<Vec<Value>>,
    rows: u64,
}

/// A file that counts what it takes and refuses to grow past its limit.
struct Counting {
    file: io::BufWriter<std::fs::File>,
    written: u64,
    limit: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::other(LimitReached(self.limit)));
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the export passed the {0}-byte limit")]
struct LimitReached(u64);

fn write_error(error: io::Error) -> DbError {
    if let Some(limit) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitReached>())
    {
        return DbError::new(format!(
            "the export stopped at the {} byte limit; nothing was written",
            limit.0
        ))
        .with_hint("narrow the query, or raise max_export_bytes in the config");
    }
    DbError::new(format!("cannot write the export: {error}"))
}

fn csv_error(error: csv::Error) -> DbError {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => write_error(error),
        other => DbError::new(format!("cannot write CSV: {other:?}")),
    }
}

/// The rows of an export, in its format, and what its summary shows.
struct ExportWriter {
    out: Output,
    preview: Preview,
}

enum Output {
    // Boxed: the CSV writer carries its own state, much larger than the JSONL variant.
    Csv(Box<csv::Writer<Counting>>),
    Jsonl {
        out: Counting,
        /// Column names as object keys, each JSON-quoted once, made unique (`id`, `id_2`).
        keys: Vec<String>,
    },
}

impl Output {
    fn counting(&self) -> &Counting {
        match self {
            Self::Csv(out) => out.get_ref(),
            Self::Jsonl { out, .. } => out,
        }
    }
}

impl RowWriter for ExportWriter {
    fn columns(&mut self, columns: &[Column]) -> Result<(), DbError> {
        self.preview.columns = columns.to_vec();
        match &mut self.out {
            Output::Csv(out) => out
                .write_record(columns.iter().map(|c| c.name.as_bytes()))
                .map_err(csv_error),
            Output::Jsonl { keys, .. } => {
                let mut seen = std::collections::HashSet::new();
                *keys = columns
                    .iter()
                    .map(|c| {
                        let mut key = c.name.clone();
                        let mut n = 1;
                        while !seen.insert(key.clone()) {
                            n += 1;
                            key = format!("{}_{n}", c.name);
                        }
                        Value::from(key).to_string()
                    })
                    .collect();
                Ok(())
            }
        }
    }

    fn row(&mut self, row: Vec<Value>) -> Result<(), DbError> {
        match &mut self.out {
            Output::Csv(out) => {
                let mut field = String::new();
                for value in &row {
                    field.clear();
                    match value {
                        Value::Null => {}
                        Value::String(s) => field.push_str(s),
                        other => field.push_str(&other.to_string()),
                    }
                    out.write_field(&field).map_err(csv_error)?;
                }
                out.write_record(None::<&[u8]>).map_err(csv_error)?;
            }
            Output::Jsonl { out, keys } => {
                let mut line = Vec::with_capacity(128);
                line.push(b'{');
                for (i, (key, value)) in keys.iter().zip(&row).enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(key.as_bytes());
                    line.push(b':');
                    serde_json::to_writer(&mut line, value)
                        .map_err(|e| DbError::new(format!("cannot write JSON: {e}")))?;
                }
                line.extend_from_slice(b"}\n");
                out.write_all(&line).map_err(write_error)?;
            }
        }
        self.preview.rows += 1;
        if self.preview.first.len() < PREVIEW_ROWS {
            self.preview.first.push(row);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), DbError> {
        match &mut self.out {
            // Through to the file: csv's buffer, then ours.
            Output::Csv(out) => out.flush(),
            Output::Jsonl { out, .. } => out.flush(),
        }
        .map_err(write_error)?;
        self.out
            .counting()
            .file
            .get_ref()
            .sync_all()
            .map_err(write_error)
    }
}
