//! `mcp-finetune`: the fine-tuning launcher as an MCP server, plus the trainer it launches and a
//! dataset check for the command line.
use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use mcp_core::Sandbox;
use mcp_server_finetune::{
    backend::{
        Backend,
        local::Local,
        ray::Ray,
        slurm::{Slurm, SlurmOptions},
    },
    job::Method,
    manager::{Manager, Options},
    server::{FinetuneServer, open_tasks},
    train::{self, StopFlag, TrainConfig},
};

/// Validate datasets, launch fine-tuning jobs (LoRA or full SFT, DPO, distillation, GGUF
/// quantization), and follow their events, metrics and checkpoints, as an MCP server.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct DataArgs {
    /// Where jobs, their files and the job store live [default: $XDG_DATA_HOME/mcp-toolkit/finetune].
    #[arg(long, value_name = "DIR", env = "MCP_FINETUNE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// The Slurm backend (listed when `sinfo` answers; SLURM_CONF picks the cluster).
#[derive(clap::Args)]
struct SlurmArgs {
    /// sbatch --partition.
    #[arg(long, value_name = "NAME")]
    slurm_partition: Option<String>,
    /// sbatch --account.
    #[arg(long, value_name = "NAME")]
    slurm_account: Option<String>,
    /// sbatch --time (e.g. 2:00:00).
    #[arg(long, value_name = "TIME")]
    slurm_time: Option<String>,
    /// sbatch --cpus-per-task.
    #[arg(long, value_name = "N")]
    slurm_cpus: Option<usize>,
    /// sbatch --mem (e.g. 16G).
    #[arg(long, value_name = "SIZE")]
    slurm_mem: Option<String>,
    /// Jobs handed to Slurm at once (Slurm queues them itself).
    #[arg(long, value_name = "N", default_value_t = 16)]
    slurm_max_jobs: usize,
}

/// The Ray backend (listed as available when the dashboard answers). The job directories must
/// be on a filesystem the Ray nodes share with this server.
#[derive(clap::Args)]
struct RayArgs {
    /// The Ray dashboard's address, where its Jobs API answers.
    #[arg(
        long,
        value_name = "URL",
        env = "MCP_FINETUNE_RAY_ADDRESS",
        default_value = "http://127.0.0.1:8265"
    )]
    ray_address: String,
    /// Jobs handed to Ray at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    ray_max_jobs: usize,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Serve the tools to an MCP host (stdio by default; --transport http or sse).
    Serve {
        #[command(flatten)]
        data: DataArgs,

        /// Jobs the local backend runs at once; the rest wait in the queue.
        #[arg(long, value_name = "N", default_value_t = 1)]
        max_concurrent: usize,

        /// Compute threads per trainer [default: all cores]. Tiny models run faster on one.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,

        /// Most memory a local job may take, in GB [default: the machine's]: create_job times
        /// two steps on a job's longest examples first and refuses one that takes more.
        #[arg(long, value_name = "GB", value_parser = positive_gb)]
        max_job_memory_gb: Option<f64>,

        /// A directory datasets and models may be read from (repeatable). Paths a client names
        /// outside these, or leading out through a link, are refused; with none, every dataset
        /// and model is refused.
        #[arg(long = "allow-dir", value_name = "DIR")]
        allow_dirs: Vec<PathBuf>,

        #[command(flatten)]
        slurm: SlurmArgs,

        #[command(flatten)]
        ray: RayArgs,

        #[command(flatten)]
        serve: mcp_core::ServeArgs,
    },
    /// Check a JSONL dataset (what the validate_dataset tool reports); exit 1 if it has errors.
    Validate {
        /// The JSONL file.
        file: PathBuf,
        /// sft, dpo, distill or grpo.
        #[arg(long, default_value = "sft", value_parser = parse_method)]
        method: Method,
        /// The base model (directory or .gguf) whose tokenizer counts the tokens exactly.
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
        /// Examples longer than this many tokens are counted as cut.
        #[arg(long, default_value_t = 2048)]
        max_seq_len: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the built-in trainer on a job's config (what the backends launch); reports JSON lines
    /// on stdout; stops at a checkpoint on SIGTERM or a STOP file in the job directory.
    Train {
        /// The job's config.json.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only time two steps on the longest examples and measure the memory they take (what
        /// create_job shows before queueing); writes nothing.
        #[arg(long)]
        preflight: bool,
    },
    /// Write a tiny random llama model (and tokenizer) to DIR: trains in seconds, for trying a
    /// backend or the tools.
    CreateTinyModel {
        dir: PathBuf,
        /// Its architecture.
        #[arg(long, value_enum, default_value = "llama")]
        arch: train::model::Arch,
    },
}

fn positive_gb(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(gb) if gb > 0.0 && gb.is_finite() => Ok(gb),
        _ => Err(format!(
            "{text:?}: expected a number of GB above 0, such as 16 or 0.5"
        )),
    }
}

fn parse_method(text: &str) -> Result<Method, String> {
    Method::parse(text)
        .ok_or_else(|| format!("{text:?}: expected sft, dpo, distill, grpo or quantize"))
}

fn default_data_dir() -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Data).join("finetune")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            data,
            max_concurrent,
            threads,
            max_job_memory_gb,
            allow_dirs,
            slurm,
            ray,
            serve,
        } => {
            let data_dir = data.data_dir.unwrap_or_else(default_data_dir);
            let allowed = Sandbox::new(&allow_dirs)?;
            if allowed.is_empty() {
                tracing::warn!(
                    "no --allow-dir given: every dataset and model a client names will be refused"
                );
            }
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let slurm = Slurm::detect(SlurmOptions {
                    partition: slurm.slurm_partition,
                    account: slurm.slurm_account,
                    time: slurm.slurm_time,
                    cpus_per_task: slurm.slurm_cpus.or(threads),
                    mem: slurm.slurm_mem,
                    capacity: slurm.slurm_max_jobs,
                })
                .await;
                let ray = Ray::detect(&ray.ray_address, ray.ray_max_jobs).await;
                let backends: Vec<Arc<dyn Backend>> = vec![
                    Arc::new(Local::new(max_concurrent)),
                    Arc::new(slurm),
                    Arc::new(ray),
                ];
                let manager = Manager::open(Options {
                    data_dir: data_dir.clone(),
                    trainer_program: std::env::current_exe()?,
                    threads,
                    backends,
                    allowed,
                    max_job_memory: max_job_memory_gb.map(|gb| (gb * 1e9) as u64),
                })?;
                tracing::info!(data_dir = %data_dir.display(), "job store opened");
                let tasks = open_tasks(&manager, &data_dir)?;
                tokio::spawn(manager.clone().run());
                mcp_core::serve(FinetuneServer::new(manager, tasks), serve).await?;
                anyhow::Ok(())
            })?;
            // A check still reading on the blocking pool stops at its next line once its
            // caller is gone; the process does not wait for it to get there.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            file,
            method,
            model,
            max_seq_len,
            json,
        } => {
            let counter = match &model {
                Some(model) => mcp_server_finetune::manager::token_counter(model)?,
                None => mcp_server_finetune::dataset::TokenCounter::Estimate,
            };
            let report =
                mcp_server_finetune::dataset::validate(&file, method, &counter, max_seq_len)
                    .map_err(anyhow::Error::msg)?;
            let text = if json {
                serde_json::to_string_pretty(&report)?
            } else {
                report.render()
            };
            #[allow(clippy::print_stdout)]
            {
                println!("{text}");
            }
            Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Train { config, preflight } => {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            let config: TrainConfig = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            let stop = StopFlag::new();
            stop.on_signals()?;
            let mut sink = train::Stdout;
            let result = if preflight {
                train::preflight(&config, &mut sink)
            } else {
                train::run(&config, &stop, &mut sink).map(|_| ())
            };
            match result {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(error) => {
                    use train::Sink;
                    sink.report(&train::Report::Message {
                        level: mcp_server_finetune::store::Level::Error,
                        message: error.to_string(),
                    });
                    Err(error.into())
                }
            }
        }
        Command::CreateTinyModel { dir, arch } => {
            train::model::create_tiny_arch(&dir, arch).map_err(anyhow::Error::msg)?;
            eprintln!("wrote a tiny {arch:?} model to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match &cli.command {
        Command::Serve { serve, .. } => serve.log_level,
        _ => None,
    };
    mcp_core::main("mcp-finetune", level, || run(cli))
}
