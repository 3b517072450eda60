//! `mcp_core::Changes` under pressure: a client cannot hold more listening streams than the
//! server allows, and a stream that ends leaves its place.

use mcp_core::{
    Changes,
    changes::MAX_LISTENERS,
    testing::{Era, connect_with},
};
use rmcp::{
    ErrorData, ServerHandler,
    model::{ServerCapabilities, ServerConfig, SubscriptionFilter},
    service::SubscriptionContext,
};

#[derive(Clone, Default)]
struct Announcer {
    changes: Changes,
}

impl ServerHandler for Announcer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(self.changes.accept(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.changes.listen(context).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_capped_and_an_ended_one_leaves_its_place() {
    let server = Announcer::default();
    let changes = server.changes.clone();
    let client = connect_with(server, Era::Stateless).await.unwrap();
    let filter = || SubscriptionFilter::builder().tools_list_changed().build();
    let mut open = Vec::new();
    for _ in 0..MAX_LISTENERS {
        open.push(client.listen(filter()).await.unwrap());
    }
    for _ in 0..100 {
        if changes.listeners() == MAX_LISTENERS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(changes.listeners(), MAX_LISTENERS);
    // One more is acknowledged (rmcp acks first) and then ended with an error, holding nothing.
    let mut extra = client.listen(filter()).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), extra.next())
        .await
        .expect("the extra stream ends at once");
    assert!(ended.is_err() || matches!(ended, Ok(None)), "{ended:?}");
    assert_eq!(changes.listeners(), MAX_LISTENERS);
    // A stream that ends leaves its place: another can listen.
    drop(open.pop());
    for _ in 0..200 {
        if changes.listeners() < MAX_LISTENERS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(changes.listeners(), MAX_LISTENERS - 1);
    let _again = client.listen(filter()).await.unwrap();
}
