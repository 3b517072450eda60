//! `serve --watch`: the folder followed live. File events are gathered until the folder has been
//! quiet for half a second (a save is often several events), then the index is brought up to
//! date the usual way (only changed files are read); searches go on meanwhile.

use std::{sync::Arc, time::Duration};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::server::{Shared, report_text, update};

/// How long the folder must be quiet before an update starts.
const QUIET: Duration = Duration::from_millis(500);

/// Starts following the folder; it is followed for as long as the returned watcher lives.
/// Needs a Tokio runtime.
pub fn follow(shared: Arc<Shared>) -> Result<RecommendedWatcher, notify::Error> {
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
    let data_dir = shared.library.dir().to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reads are not changes, and neither are the index's own writes when it lives inside
        // the folder.
        if event.kind.is_access() || event.paths.iter().all(|p| p.starts_with(&data_dir)) {
            return;
        }
        let _ = sender.send(());
    })?;
    watcher.watch(shared.library.root(), RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while events.recv().await.is_some() {
            loop {
                match tokio::time::timeout(QUIET, events.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match update(shared.clone(), None, Box::new(())).await {
                Ok(report) if report.added + report.updated + report.removed > 0 => {
                    tracing::info!("folder changed: {}", report_text(&report));
                }
                Ok(report) if !report.failed.is_empty() => {
                    tracing::warn!("folder changed: {}", report_text(&report));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("updating after a change failed: {}", error.message()),
            }
        }
    });
    Ok(watcher)
}
