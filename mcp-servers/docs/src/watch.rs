//! `serve --watch`: the sources followed live. File events are gathered until the sources have
//! been quiet for half a second (a save is often several events), then each collection they
//! touched is brought up to date the usual way (only changed files are read); searches go on
//! meanwhile.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::{
    collection::Source,
    server::{Shared, update},
};

/// How long the sources must be quiet before an update starts.
const QUIET: Duration = Duration::from_millis(500);

/// Starts following every collection's source (a folder, recursively; a file, through its
/// folder); they are followed for as long as the returned watcher lives. Needs a Tokio runtime.
pub fn follow(shared: Arc<Shared>) -> Result<RecommendedWatcher, notify::Error> {
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let watched: Vec<(Source, std::path::PathBuf)> = shared
        .collections
        .iter()
        .map(|c| (c.source.clone(), c.library.dir().to_owned()))
        .collect();
    let touched = watched.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reads are not changes, and neither are an index's own writes when it lives inside
        // the folder.
        if event.kind.is_access() {
            return;
        }
        for (at, (source, data_dir)) in touched.iter().enumerate() {
            let concerns = |path: &std::path::Path| match source {
                Source::Folder(folder) => path.starts_with(folder) && !path.starts_with(data_dir),
                Source::File(file) | Source::Deps(file, _) => path == file,
                // A web collection changes when it is crawled, not when a file is saved.
                Source::Web(_) | Source::Stored { .. } => false,
            };
            if event.paths.iter().any(|p| concerns(p)) {
                let _ = sender.send(at);
            }
        }
    })?;
    for (source, _) in &watched {
        match source {
            Source::Folder(folder) => watcher.watch(folder, RecursiveMode::Recursive)?,
            // A file (and a lock file) is followed through its folder.
            Source::File(file) | Source::Deps(file, _) => {
                if let Some(folder) = file.parent() {
                    watcher.watch(folder, RecursiveMode::NonRecursive)?
                }
            }
            Source::Web(_) | Source::Stored { .. } => {}
        }
    }
    tokio::spawn(async move {
        while let Some(first) = events.recv().await {
            let mut changed = BTreeSet::from([first]);
            loop {
                match tokio::time::timeout(QUIET, events.recv()).await {
                    Ok(Some(at)) => {
                        changed.insert(at);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for at in changed {
                let name = shared.collections[at].name.clone();
                match update(shared.clone(), Some(name.clone()), None, Box::new(())).await {
                    Ok(answer) => {
                        let r = &answer.total;
                        if !r.failed.is_empty() {
                            tracing::warn!("{name} changed: {}", answer.text());
                        } else if r.added + r.updated + r.removed > 0 {
                            tracing::info!("{name} changed: {}", answer.text());
                        }
                    }
                    Err(error) => {
                        tracing::warn!("updating {name} after a change failed: {}", error.message())
                    }
                }
            }
        }
    });
    Ok(watcher)
}
