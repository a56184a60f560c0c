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
        let resolved = crate::keys::read_reference(url, "webhook URL")?;
        let url = reqwest::Url::parse(resolved.as_deref().unwrap_or(url)).map_err(|e| {
            // A URL read from a reference is not echoed: it may hold a token.
            let shown = if resolved.is_some() { url } else { "as given" };
            anyhow::anyhow!("--webhook-url ({shown}) is not a URL: {e}")
        })?;
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
                    // Without the URL: it may hold the receiver's token.
                    Err(error) => tracing::warn!(
                        %kind, attempt, error = %error.without_url(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_holding_a_token_comes_by_reference_and_is_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "https://hooks.example.com/T0KEN-123\n").unwrap();
        let hook = Webhook::new(&format!("file:{}", file.display())).unwrap();
        assert_eq!(hook.url.as_str(), "https://hooks.example.com/T0KEN-123");
        std::fs::write(&file, "not a url T0KEN-123").unwrap();
        let error = Webhook::new(&format!("file:{}", file.display()))
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains("T0KEN"), "{error}");
        assert!(error.contains("file:"), "{error}");
        let missing = Webhook::new("file:/nonexistent/hook").err().unwrap();
        assert!(format!("{missing:#}").contains("/nonexistent/hook"));
    }
}
