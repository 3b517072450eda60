//! Every chunk in memory: its file and its vector, for filters and exact search.

use std::{collections::HashMap, sync::Arc};

use super::{DocsError, Local};

/// Every chunk in memory: its file (for filters, without touching the document store) and its
/// unit vector, contiguous, for exact search.
#[derive(Default)]
pub(super) struct Catalog {
    /// Every chunk's id, ascending, and the index of its file in `files`.
    pub(super) ids: Vec<u64>,
    pub(super) file_of: Vec<u32>,
    /// Path and kind.
    pub(super) files: Vec<(String, String)>,
    /// The chunks that have a vector: their positions in `ids`, and the vectors.
    pub(super) with_vector: Vec<u32>,
    pub(super) data: Vec<f32>,
    pub(super) dim: usize,
}

impl Catalog {
    /// The file of chunk `id`.
    pub(super) fn file(&self, id: u64) -> Option<usize> {
        let at = self.ids.binary_search(&id).ok()?;
        Some(self.file_of[at] as usize)
    }

    /// The `n` nearest chunks to `query` (cosine), best first, among those whose file `keep`
    /// allows.
    pub(super) fn nearest(
        &self,
        query: &[f32],
        n: usize,
        mut keep: impl FnMut(usize) -> bool,
    ) -> Vec<(u64, f32)> {
        if self.dim == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let mut scored: Vec<(u64, f32)> = self
            .data
            .chunks_exact(self.dim)
            .zip(&self.with_vector)
            .filter(|(_, at)| keep(self.file_of[**at as usize] as usize))
            .map(|(v, at)| (self.ids[*at as usize], dot(v, query)))
            .collect();
        let n = n.min(scored.len());
        if n == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(n);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }
}

/// `a · b`, summed in eight lanes so the compiler can use vector instructions (a single running
/// sum is a chain of dependent additions it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

impl Local {
    pub(super) fn load_catalog(&self) -> Result<(), DocsError> {
        let mut catalog = Catalog::default();
        {
            let db = self.db();
            let mut statement = db.prepare(
                "SELECT c.id, c.path, f.kind, c.vector FROM chunks c JOIN files f ON f.path = c.path
                 ORDER BY c.id",
            )?;
            let mut rows = statement.query([])?;
            let mut interned: HashMap<String, u32> = HashMap::new();
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let path: String = row.get(1)?;
                let file = match interned.get(&path) {
                    Some(file) => *file,
                    None => {
                        let file = catalog.files.len() as u32;
                        catalog.files.push((path.clone(), row.get(2)?));
                        interned.insert(path, file);
                        file
                    }
                };
                let at = catalog.ids.len() as u32;
                catalog.ids.push(id as u64);
                catalog.file_of.push(file);
                let vector: Option<Vec<u8>> = row.get(3)?;
                if let Some(bytes) = vector {
                    let vector = from_bytes(&bytes);
                    if catalog.dim == 0 {
                        catalog.dim = vector.len();
                    }
                    if vector.len() == catalog.dim {
                        catalog.with_vector.push(at);
                        catalog.data.extend_from_slice(&vector);
                    }
                }
            }
        }
        *self
            .catalog
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(catalog);
        Ok(())
    }
}
