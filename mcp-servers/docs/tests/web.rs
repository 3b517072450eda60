//! Web sources through the `mcp-docs` binary (BM25 only: no model needed), against a site served
//! here on 127.0.0.1 that has everything a crawl meets: robots.txt with a disallowed folder, a
//! sitemap naming a page no link reaches, redirects within the prefix and off the origin, a 404,
//! a 500, an endless page, a page slower than the timeout, a page that asks not to be indexed,
//! a chain of links deeper than the cap, files that are not documents, and a second site on
//! another port that nothing may touch.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::support::{call, ok, serve};
use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

const MCP_DOCS: &str = env!("CARGO_BIN_EXE_mcp-docs");

/// The site: what it was asked (path, If-None-Match), and which round of the test it is in.
#[derive(Default)]
struct Site {
    origin: Mutex<String>,
    elsewhere: Mutex<String>,
    asked: Mutex<Vec<(String, Option<String>)>>,
    round: AtomicUsize,
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<html><head><title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    )
}

fn html(text: String) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(text))
        .unwrap()
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap()
}

async fn serve_site(State(site): State<Arc<Site>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers: &HeaderMap = request.headers();
    let etag = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    site.asked
        .lock()
        .unwrap()
        .push((path.clone(), etag.clone()));
    let round = site.round.load(Ordering::SeqCst);
    let origin = site.origin.lock().unwrap().clone();
    let elsewhere = site.elsewhere.lock().unwrap().clone();
    match path.as_str() {
        "/robots.txt" if round == 3 => status(StatusCode::SERVICE_UNAVAILABLE),
        "/robots.txt" => Response::new(Body::from(format!(
            "User-agent: *\nDisallow: /docs/private/\n\nSitemap: {origin}/sitemap.xml\n"
        ))),
        "/sitemap.xml" => {
            let orphan = if round == 1 {
                format!("<url><loc>{origin}/docs/orphan.html</loc></url>")
            } else {
                String::new()
            };
            Response::new(Body::from(format!(
                "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                 {orphan}<url><loc>{origin}/outside/listed.html</loc></url></urlset>"
            )))
        }
        "/docs" => redirect("/docs/"),
        "/docs/" => html(page(
            "Kettle manual",
            &format!(
                "<p>Start here.</p><ul>\
                 <li><a href=\"guide.html\">Guide</a></li>\
                 <li><a href=\"private/secret.html\">Secret</a></li>\
                 <li><a href=\"../outside/page.html\">Outside</a></li>\
                 <li><a href=\"{elsewhere}/docs/evil.html\">Elsewhere</a></li>\
                 <li><a href=\"old.html#top\">Old</a></li>\
                 <li><a href=\"away.html\">Away</a></li>\
                 <li><a href=\"missing.html\">Missing</a></li>\
                 <li><a href=\"broken.html\">Broken</a></li>\
                 <li><a href=\"huge.html\">Huge</a></li>\
                 <li><a href=\"slow.html\">Slow</a></li>\
                 <li><a href=\"hidden.html\">Hidden</a></li>\
                 <li><a href=\"notes.md\">Notes</a></li>\
                 <li><a href=\"data.json\">Data</a></li>\
                 <li><a href=\"diagram.png\">Diagram</a></li>\
                 <li><a href=\"search?q=kettle\">Search</a></li>\
                 <li><a href=\"deep/one.html\">Deeper</a></li></ul>"
            ),
        )),
        "/docs/guide.html" => {
            if etag.as_deref() == Some("\"v1\"") {
                return status(StatusCode::NOT_MODIFIED);
            }
            // It asks that its links not be followed: not now, and not from its kept copy
            // when it answers 304.
            let mut response = html(
                "<html><head><title>Guide</title><meta name=\"robots\" content=\"nofollow\">\
                 </head><body><main><h1>Guide</h1><h2>Descaling</h2>\
                 <p>Descale the kettle every month with citric acid.</p>\
                 <a href=\"unfollowed.html\">more</a></main></body></html>"
                    .into(),
            );
            response
                .headers_mut()
                .insert(header::ETAG, "\"v1\"".parse().unwrap());
            response
        }
        "/docs/old.html" => redirect(&format!("{origin}/docs/new.html")),
        "/docs/new.html" => html(page("New", "<p>The whistle moved to the new lid.</p>")),
        "/docs/away.html" => redirect(&format!("{elsewhere}/docs/away.html")),
        "/docs/missing.html" => status(StatusCode::NOT_FOUND),
        "/docs/broken.html" if round == 1 => status(StatusCode::INTERNAL_SERVER_ERROR),
        "/docs/broken.html" => html(page("Broken", "<p>Repaired with a zebra sticker.</p>")),
        "/docs/huge.html" => {
            // Endless: no length, chunks for ever.
            let chunks = tokio_stream::iter(std::iter::repeat_with(|| {
                Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'a'; 64 * 1024]))
            }));
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html")
                .body(Body::from_stream(chunks))
                .unwrap()
        }
        "/docs/slow.html" => {
            if round == 1 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            html(page("Slow", "<p>Patience is a tortoise.</p>"))
        }
        "/docs/hidden.html" => html(
            "<html><head><title>Hidden</title><meta name=\"robots\" content=\"noindex\"></head>\
             <body><p>hushed words</p><a href=\"behind.html\">behind</a></body></html>"
                .into(),
        ),
        "/docs/behind.html" => html(page("Behind", "<p>Found behind the hidden page.</p>")),
        "/docs/notes.md" if round == 1 => Response::builder()
            .header(header::CONTENT_TYPE, "text/markdown")
            .body(Body::from("# Notes\n\nThe spout is lined with ceramic.\n"))
            .unwrap(),
        "/docs/notes.md" => status(StatusCode::NOT_FOUND),
        "/docs/data.json" => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap(),
        "/docs/orphan.html" => html(page("Orphan", "<p>Only the sitemap knows the marmot.</p>")),
        "/docs/deep/one.html" => html(page("One", "<a href=\"two.html\">two</a>")),
        "/docs/deep/two.html" => html(page("Two", "<a href=\"three.html\">three</a>")),
        "/docs/deep/three.html" => html(page("Three", "<p>too deep</p>")),
        _ => status(StatusCode::NOT_FOUND),
    }
}

/// Serves `site` on 127.0.0.1; answers its origin.
async fn start(site: Arc<Site>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(serve_site).with_state(site);
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

async fn index(prefix: &str, data: &std::path::Path) -> (Option<i32>, Value) {
    index_with(prefix, data, &[]).await
}

async fn index_with(prefix: &str, data: &std::path::Path, more: &[&str]) -> (Option<i32>, Value) {
    let output = tokio::process::Command::new(MCP_DOCS)
        .args(["index", &format!("site={prefix}"), "--bm25-only", "--json"])
        .args(more)
        .args(["--crawl-delay", "0", "--page-timeout", "1"])
        .args(["--max-page-bytes", "200000", "--max-depth", "2"])
        .arg("--data-dir")
        .arg(data)
        .envs(crate::support::store_env())
        .output()
        .await
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

async fn search(prefix: &str, data: &std::path::Path, query: &str) -> Vec<Value> {
    let output = tokio::process::Command::new(MCP_DOCS)
        .args([
            "search",
            query,
            &format!("site={prefix}"),
            "--bm25-only",
            "--json",
        ])
        .arg("--data-dir")
        .arg(data)
        .envs(crate::support::store_env())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

/// The reason a report gives for `url`.
fn failure<'a>(report: &'a Value, url: &str) -> Option<&'a str> {
    report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[0] == url)
        .and_then(|f| f[1].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_crawled_politely_refreshed_by_validators_and_served_with_urls() {
    let site = Arc::new(Site::default());
    let elsewhere = Arc::new(Site::default());
    let origin = start(site.clone()).await;
    let other = start(elsewhere.clone()).await;
    *site.origin.lock().unwrap() = origin.clone();
    *site.elsewhere.lock().unwrap() = other.clone();
    site.round.store(1, Ordering::SeqCst);
    let prefix = format!("{origin}/docs");
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let url = |path: &str| format!("{origin}/docs/{path}");

    // Round 1: everything a crawl meets.
    let (code, report) = index(&prefix, &data).await;
    // Indexed, with failures: scripts notice.
    assert_eq!(code, Some(1), "{report:#}");
    let crawl = &report["collections"][0]["crawl"];
    for (page, reason) in [
        ("away.html", "redirects off the prefix"),
        ("missing.html", "404"),
        ("broken.html", "500"),
        ("huge.html", "larger than 200000 bytes"),
        ("slow.html", "timed out"),
    ] {
        let given = failure(&report, &url(page)).unwrap_or_else(|| panic!("{page}: {report:#}"));
        assert!(given.contains(reason), "{page}: {given}");
    }
    assert_eq!(
        crawl["robots_excluded"],
        json!([url("private/secret.html")])
    );
    let redirects = crawl["redirects"].as_array().unwrap();
    assert!(
        redirects.contains(&json!([url("old.html"), url("new.html")])),
        "{crawl:#}"
    );
    assert!(redirects.contains(&json!([prefix, url("")])), "{crawl:#}");
    assert_eq!(crawl["too_deep"], 1, "{crawl:#}");
    assert_eq!(crawl["other_types"], 1, "{crawl:#}");
    // Start page, guide, new, notes, orphan (sitemap), behind (past a noindex page), one, two.
    assert_eq!(crawl["pages"], 8, "{crawl:#}");
    assert_eq!(report["added"], 8, "{report:#}");

    let asked: Vec<String> = site
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.0.clone())
        .collect();
    for never in [
        "/docs/private/secret.html",
        "/outside/page.html",
        "/outside/listed.html",
        "/docs/diagram.png",
        "/docs/search",
        "/docs/deep/three.html",
        "/docs/unfollowed.html",
    ] {
        assert!(!asked.iter().any(|p| p == never), "{never} was requested");
    }
    assert_eq!(asked.first().map(String::as_str), Some("/robots.txt"));
    assert!(
        elsewhere.asked.lock().unwrap().is_empty(),
        "the other origin was contacted"
    );
    // Pages are kept whole or not at all: no trace of the endless one.
    let mirror = data.join("site").join("web");
    assert!(!mirror.join("huge.html").exists());
    assert!(!mirror.join("hidden.html").exists());
    assert!(
        std::fs::read_dir(&mirror)
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".part") })
    );

    let hits = search(&prefix, &data, "descale kettle citric").await;
    assert_eq!(hits[0]["path"], "guide.html");
    assert_eq!(hits[0]["url"], url("guide.html"));
    assert_eq!(
        search(&prefix, &data, "marmot").await[0]["url"],
        url("orphan.html")
    );
    assert!(search(&prefix, &data, "hushed").await.is_empty());

    // Round 2: the guide is unchanged (asked with its ETag: a 304), the notes are gone, the
    // orphan left the sitemap, the broken and slow pages work now.
    site.asked.lock().unwrap().clear();
    site.round.store(2, Ordering::SeqCst);
    let (code, report) = index(&prefix, &data).await;
    assert_eq!(code, Some(1), "{report:#}");
    let crawl = &report["collections"][0]["crawl"];
    assert_eq!(crawl["not_modified"], 1, "{crawl:#}");
    let asked = site.asked.lock().unwrap().clone();
    assert!(asked.contains(&("/docs/guide.html".into(), Some("\"v1\"".into()))));
    assert!(!asked.iter().any(|(p, _)| p == "/docs/unfollowed.html"));
    let gone = failure(&report, &url("notes.md")).unwrap();
    assert!(gone.contains("404") && gone.contains("dropped"), "{gone}");
    assert!(
        failure(&report, &url("broken.html")).is_none(),
        "{report:#}"
    );
    assert_eq!(crawl["removed"], 1, "{crawl:#}");
    assert_eq!(crawl["pages"], 8, "{crawl:#}");
    assert_eq!(report["removed"], 2, "{report:#}");
    assert_eq!(report["added"], 2, "{report:#}");
    assert!(search(&prefix, &data, "marmot").await.is_empty());
    assert!(search(&prefix, &data, "ceramic spout").await.is_empty());
    assert_eq!(
        search(&prefix, &data, "zebra").await[0]["url"],
        url("broken.html")
    );

    // Round 3: robots.txt fails (503): nothing is crawled, nothing is lost.
    site.asked.lock().unwrap().clear();
    site.round.store(3, Ordering::SeqCst);
    let (code, report) = index(&prefix, &data).await;
    assert_eq!(code, Some(1));
    let reason = failure(&report, &format!("{origin}/robots.txt")).unwrap();
    assert!(
        reason.contains("503") && reason.contains("last copy stays"),
        "{reason}"
    );
    assert_eq!(report["removed"], 0, "{report:#}");
    assert_eq!(report["unchanged"], 8, "{report:#}");
    assert_eq!(
        *site.asked.lock().unwrap(),
        [("/robots.txt".to_owned(), None)]
    );

    // Out of time before the first page (--max-crawl-time 0): nothing is lost either.
    site.round.store(2, Ordering::SeqCst);
    let (code, report) = index_with(&prefix, &data, &["--max-crawl-time", "0"]).await;
    assert_eq!(code, Some(1));
    let reason = failure(&report, &prefix).unwrap();
    assert!(reason.contains("--max-crawl-time"), "{reason}");
    assert_eq!(report["removed"], 0, "{report:#}");
    assert_eq!(report["collections"][0]["crawl"]["pages"], 8, "{report:#}");

    // Served: hits and documents carry their URL.
    let client = serve([
        format!("site={prefix}"),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .await;
    let found = ok(&call(&client, "search", json!({"query": "whistle lid"})).await);
    assert_eq!(found["hits"][0]["url"], url("new.html"));
    let text = call(&client, "search", json!({"query": "whistle lid"})).await;
    assert!(
        text.content[0]
            .as_text()
            .unwrap()
            .text
            .contains(&url("new.html"))
    );
    let document = ok(&call(&client, "get_document", json!({"path": "guide.html"})).await);
    assert_eq!(document["url"], url("guide.html"));
    let sources = ok(&call(&client, "list_sources", json!({})).await);
    assert_eq!(sources["collections"][0]["kind"], "web");
    assert_eq!(sources["collections"][0]["source"], prefix);
    let path = call(
        &client,
        "reindex",
        json!({"collection": "site", "path": "guide.html"}),
    )
    .await;
    assert_eq!(path.is_error, Some(true));
    // A reindex through the server crawls again (on the server's runtime, from its blocking
    // pool): the site is back, and the guide is still unchanged.
    site.round.store(2, Ordering::SeqCst);
    let again = ok(&call(&client, "reindex", json!({})).await);
    assert_eq!(
        again["collections"][0]["crawl"]["not_modified"], 1,
        "{again:#}"
    );
    assert_eq!(again["unchanged"], 8, "{again:#}");
    client.cancel().await.unwrap();
}
