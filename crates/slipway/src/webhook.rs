//! Deployment events to a webhook: each event is POSTed as JSON, retried a few times with
//! backoff, on its own task, so a slow or absent receiver never holds up a rollback.

use std::time::Duration;

use async_trait::async_trait;
use slipway_core::ports::Notifier;

const ATTEMPTS: u32 = 4;

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl Webhook {
    pub fn new(url: &str) -> anyhow::Result<Webhook> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("--webhook-url '{url}' is not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhook { client, url })
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn notify(&self, event: serde_json::Value) {
        let client = self.client.clone();
        let url = self.url.clone();
        tokio::spawn(async move {
            let kind = event["event"].as_str().unwrap_or("event").to_owned();
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                match client.post(url.clone()).json(&event).send().await {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => tracing::warn!(
                        %kind, attempt, status = response.status().as_u16(),
                        "webhook receiver refused a deployment event"
                    ),
                    Err(error) => tracing::warn!(
                        %kind, attempt, error = %error,
                        "could not deliver a deployment event to the webhook"
                    ),
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
            tracing::error!(%kind, "gave up delivering a deployment event to the webhook");
        });
    }
}
