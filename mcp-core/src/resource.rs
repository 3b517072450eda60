//! Resources by URI template: a server declares each kind of resource once (its template, name,
//! description and MIME type, and the function that reads it), and the router answers
//! `resources/templates/list`, the fixed part of `resources/list`, and `resources/read`.
//!
//! Templates are RFC 6570's simplest form: literal text and `{name}` variables. A variable
//! matches up to the next literal text of the template; one at the very end takes the rest of
//! the URI, slashes included (`docs://{path}` reads `docs://guide/intro.md`). A variable never
//! matches nothing. Values are handed over as they appear in the URI (no percent-decoding: the
//! reader knows how it encoded them). A template without variables is a fixed resource and is
//! listed by [`ResourceRouter::fixed`]; the others by [`ResourceRouter::templates`]. Routes are
//! tried in the order they were added.
//!
//! ```
//! use mcp_core::resource::{Read, ResourceError, ResourceRouter};
//! use mcp_core::rmcp::model::{ResourceContents, ResourceTemplate};
//!
//! async fn job_log(jobs: Vec<String>, read: Read) -> Result<ResourceContents, ResourceError> {
//!     let id = read.var("job");
//!     if !jobs.iter().any(|j| j == id) {
//!         return Err(ResourceError::not_found(format!("no job {id}")));
//!     }
//!     Ok(ResourceContents::text(format!("log of {id}"), read.uri()))
//! }
//!
//! let router = ResourceRouter::new().route(
//!     ResourceTemplate::new("jobs://{job}/log", "job log").with_mime_type("text/plain"),
//!     job_log,
//! );
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let read = router.read(vec!["j1".to_owned()], "jobs://j1/log").await.unwrap();
//! assert!(format!("{read:?}").contains("log of j1"));
//! assert!(router.read(vec![], "jobs://j2/log").await.is_err());
//! # });
//! ```

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use rmcp::{
    ErrorData,
    model::{
        CacheScope, ListResourceTemplatesResult, ReadResourceResponse, ReadResourceResult,
        Resource, ResourceContents, ResourceTemplate,
    },
};

/// A `resources/read` that matched a route: its URI and the template's variables.
#[derive(Debug, Clone)]
pub struct Read {
    uri: String,
    vars: Vec<(String, String)>,
}

impl Read {
    /// The URI as the client sent it.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// A variable's value as it appears in the URI; `""` for a name the template does not have.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Why a resource could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// Nothing at that URI (the JSON-RPC error resource-not-found).
    #[error("{0}")]
    NotFound(String),
    /// It exists but reading it failed (an internal error).
    #[error("{0}")]
    Failed(String),
}

impl ResourceError {
    /// Nothing at that URI, with why.
    pub fn not_found(message: impl std::fmt::Display) -> Self {
        Self::NotFound(message.to_string())
    }

    /// Reading failed, with why.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }
}

impl From<ResourceError> for ErrorData {
    fn from(error: ResourceError) -> Self {
        match error {
            ResourceError::NotFound(message) => ErrorData::resource_not_found(message, None),
            ResourceError::Failed(message) => ErrorData::internal_error(message, None),
        }
    }
}

type Reader<S> = Arc<
    dyn Fn(S, Read) -> Pin<Box<dyn Future<Output = Result<ResourceContents, ResourceError>> + Send>>
        + Send
        + Sync,
>;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Var(String),
}

fn parse(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        parts.push(Part::Var(rest[open + 1..open + close].to_owned()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    parts
}

/// The variables of `uri` under `parts`, if it matches.
fn matches(parts: &[Part], uri: &str) -> Option<Vec<(String, String)>> {
    let mut vars = Vec::new();
    let mut rest = uri;
    let mut parts = parts.iter().peekable();
    while let Some(part) = parts.next() {
        match part {
            Part::Literal(text) => rest = rest.strip_prefix(text.as_str())?,
            Part::Var(name) => {
                let end = match parts.peek() {
                    Some(Part::Literal(next)) => rest.find(next.as_str())?,
                    // Two variables side by side cannot be told apart: the first takes nothing
                    // and the match fails below.
                    Some(Part::Var(_)) => 0,
                    None => rest.len(),
                };
                if end == 0 {
                    return None;
                }
                vars.push((name.clone(), rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(vars)
}

struct Route<S> {
    template: ResourceTemplate,
    parts: Vec<Part>,
    read: Reader<S>,
    cache: Option<(u64, CacheScope)>,
}

/// A server's resources by URI template; `S` is what each reader is given (a cheap clone of the
/// server's state).
pub struct ResourceRouter<S> {
    routes: Vec<Route<S>>,
}

impl<S> Clone for ResourceRouter<S> {
    fn clone(&self) -> Self {
        Self {
            routes: self
                .routes
                .iter()
                .map(|r| Route {
                    template: r.template.clone(),
                    parts: r.parts.clone(),
                    read: r.read.clone(),
                    cache: r.cache,
                })
                .collect(),
        }
    }
}

impl<S> Default for ResourceRouter<S> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<S: Send + 'static> ResourceRouter<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route: URIs matching `template.uri_template` are read by `read`.
    pub fn route<F, Fut>(mut self, template: ResourceTemplate, read: F) -> Self
    where
        F: Fn(S, Read) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ResourceContents, ResourceError>> + Send + 'static,
    {
        let parts = parse(&template.uri_template);
        self.routes.push(Route {
            template,
            parts,
            read: Arc::new(move |state, request| Box::pin(read(state, request))),
            cache: None,
        });
        self
    }

    /// How long a client (`CacheScope::Private`) or anyone on the way (`Public`) may keep what
    /// the route added last reads, told with every read in the 2026-07-28 revision (`ttlMs`,
    /// `cacheScope`). Without it a read says "do not keep" (0 ms, private).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mcp_core::resource::ResourceRouter;
    /// use mcp_core::rmcp::model::{CacheScope, ResourceContents, ResourceTemplate};
    ///
    /// let router = ResourceRouter::new()
    ///     .route(ResourceTemplate::new("docs://readme", "readme"), |(), read| async move {
    ///         Ok(ResourceContents::text("Read me.", read.uri()))
    ///     })
    ///     .cache(Duration::from_secs(60), CacheScope::Public);
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let read = router.read((), "docs://readme").await.unwrap();
    /// assert!(format!("{read:?}").contains("ttl_ms: Some(60000)"));
    /// # });
    /// ```
    pub fn cache(mut self, ttl: Duration, scope: CacheScope) -> Self {
        if let Some(route) = self.routes.last_mut() {
            route.cache = Some((ttl.as_millis().try_into().unwrap_or(u64::MAX), scope));
        }
        self
    }

    /// The routes with variables, for `resources/templates/list`.
    pub fn templates(&self) -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(
            self.routes
                .iter()
                .filter(|r| r.parts.iter().any(|p| matches!(p, Part::Var(_))))
                .map(|r| r.template.clone())
                .collect(),
        )
    }

    /// The routes without variables, as resources, for the head of `resources/list`.
    pub fn fixed(&self) -> Vec<Resource> {
        self.routes
            .iter()
            .filter(|r| r.parts.iter().all(|p| matches!(p, Part::Literal(_))))
            .map(|r| {
                let t = &r.template;
                let mut resource = Resource::new(t.uri_template.clone(), t.name.clone());
                resource.title = t.title.clone();
                resource.description = t.description.clone();
                resource.mime_type = t.mime_type.clone();
                resource
            })
            .collect()
    }

    /// Reads `uri` with the first route it matches; an unknown URI is resource-not-found, with
    /// the templates the server has.
    pub async fn read(&self, state: S, uri: &str) -> Result<ReadResourceResponse, ErrorData> {
        for route in &self.routes {
            if let Some(vars) = matches(&route.parts, uri) {
                let request = Read {
                    uri: uri.to_owned(),
                    vars,
                };
                let contents = (route.read)(state, request).await?;
                let mut result = ReadResourceResult::new(vec![contents]);
                if let Some((ttl_ms, scope)) = route.cache {
                    result = result.with_ttl_ms(ttl_ms).with_cache_scope(scope);
                }
                return Ok(result.into());
            }
        }
        let known: Vec<&str> = self
            .routes
            .iter()
            .map(|r| r.template.uri_template.as_str())
            .collect();
        Err(ErrorData::resource_not_found(
            format!("no resource {uri}; this server has {}", known.join(", ")),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(template: &str, uri: &str) -> Option<Vec<(String, String)>> {
        matches(&parse(template), uri)
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn variables_match_up_to_the_next_literal_and_the_last_takes_the_rest() {
        assert_eq!(
            vars("docs://{path}", "docs://guide/intro.md"),
            pairs(&[("path", "guide/intro.md")])
        );
        assert_eq!(
            vars("jobs://{job}/metrics.csv", "jobs://j-1/metrics.csv"),
            pairs(&[("job", "j-1")])
        );
        assert_eq!(
            vars("sql://table/{schema}/{name}", "sql://table/main/my%2Ftable"),
            pairs(&[("schema", "main"), ("name", "my%2Ftable")])
        );
        assert_eq!(vars("sql://tables", "sql://tables"), pairs(&[]));
    }

    #[test]
    fn what_does_not_fit_does_not_match() {
        assert_eq!(vars("jobs://{job}/log", "jobs://j1/metrics.csv"), None);
        assert_eq!(
            vars("jobs://{job}/log", "jobs:///log"),
            None,
            "empty variable"
        );
        assert_eq!(vars("docs://{path}", "docs://"), None);
        assert_eq!(vars("sql://tables", "sql://tables/x"), None);
        assert_eq!(vars("sql://tables", "sql://table"), None);
        assert_eq!(vars("a://{x}{y}", "a://xy"), None, "adjacent variables");
        assert_eq!(
            vars("sql://table/{schema}/{name}", "sql://table/main"),
            None
        );
    }

    #[tokio::test]
    async fn reads_go_to_the_first_matching_route_and_unknown_uris_are_not_found() {
        let router = ResourceRouter::new()
            .route(
                ResourceTemplate::new("t://all", "all").with_mime_type("application/json"),
                |prefix: String, read: Read| async move {
                    Ok(ResourceContents::text(format!("{prefix}all"), read.uri()))
                },
            )
            .route(
                ResourceTemplate::new("t://{item}", "item"),
                |prefix: String, read: Read| async move {
                    match read.var("item") {
                        "gone" => Err(ResourceError::not_found("no item gone")),
                        "broken" => Err(ResourceError::failed("disk on fire")),
                        item => Ok(ResourceContents::text(
                            format!("{prefix}{item}"),
                            read.uri(),
                        )),
                    }
                },
            );
        let text = |response: ReadResourceResponse| match response {
            ReadResourceResponse::Complete(result) => match &result.contents[..] {
                [ResourceContents::TextResourceContents { text, uri, .. }] => {
                    format!("{uri} {text}")
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let read = |uri: &'static str| router.read("p:".to_owned(), uri);
        assert_eq!(text(read("t://all").await.unwrap()), "t://all p:all");
        assert_eq!(text(read("t://x").await.unwrap()), "t://x p:x");
        let gone = read("t://gone").await.unwrap_err();
        assert_eq!(gone.code, ErrorData::resource_not_found("", None).code);
        let broken = read("t://broken").await.unwrap_err();
        assert_eq!(broken.code, ErrorData::internal_error("", None).code);
        let unknown = read("u://x").await.unwrap_err();
        assert_eq!(unknown.code, ErrorData::resource_not_found("", None).code);
        assert!(
            unknown.message.contains("t://all, t://{item}"),
            "{}",
            unknown.message
        );

        assert_eq!(router.fixed().len(), 1);
        assert_eq!(router.fixed()[0].uri, "t://all");
        assert_eq!(
            router.fixed()[0].mime_type.as_deref(),
            Some("application/json")
        );
        let templates = router.templates().resource_templates;
        assert_eq!(templates.len(), 1);
        assert_eq!(templates[0].uri_template, "t://{item}");
    }
}
