//! Alerting: the applied configuration (one row), alerts that fired, and silences.

use std::collections::BTreeMap;

use slipway_core::alerting::{
    Alert, AlertConfig, AlertState, Matcher, NewSilence, Silence, StoredAlertConfig,
};
use slipway_core::ports::AlertFilter;
use slipway_core::{Error, Result};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::sql::{Sql, db_err, get_i64, get_opt_i64, get_str};

/// Resolved alerts kept: older ones are deleted as new ones resolve.
pub(crate) const RESOLVED_KEPT: i64 = 10_000;

fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal(what, e))
}

fn encode(value: &impl serde::Serialize, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(what, e))
}

pub(crate) async fn get_config(store: &SqlStore) -> Result<Option<StoredAlertConfig>> {
    crate::documents::get::<AlertConfig>(
        store,
        "alert_config",
        "reading the alerting configuration",
    )
    .await
}

/// Replaces the configuration when the stored revision is still `expected` (0: none stored).
pub(crate) async fn put_config(
    store: &SqlStore,
    config: AlertConfig,
    expected: i64,
    by: String,
    now_ms: i64,
) -> Result<StoredAlertConfig> {
    crate::documents::put(
        store,
        "alert_config",
        "alerting configuration",
        config,
        expected,
        by,
        now_ms,
    )
    .await
}

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// Inserts a newly fired alert (id 0, returns its id) or updates a stored one.
pub(crate) async fn save_alert(store: &SqlStore, alert: Alert) -> Result<i64> {
    let labels = encode(&alert.labels, "encoding an alert's labels")?;
    let annotations = encode(&alert.annotations, "encoding an alert's annotations")?;
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                if alert.id != 0 {
                    let done = sqlx::query(
                        "UPDATE alerts SET state = $1, annotations = $2, value = $3, \
                         resolved_ms = $4, updated_ms = $5 WHERE id = $6",
                    )
                    .bind(alert.state.as_str())
                    .bind(annotations)
                    .bind(finite(alert.value))
                    .bind(alert.resolved_ms)
                    .bind(alert.updated_ms)
                    .bind(alert.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("updating an alert"))?;
                    if done.rows_affected() == 0 {
                        return Err(Error::NotFound(format!(
                            "alert {} does not exist",
                            alert.id
                        )));
                    }
                    if alert.state == AlertState::Resolved {
                        sqlx::query(
                            "DELETE FROM alerts WHERE state = 'resolved' AND id < \
                             (SELECT id FROM alerts WHERE state = 'resolved' \
                             ORDER BY id DESC LIMIT 1 OFFSET $1)",
                        )
                        .bind(RESOLVED_KEPT - 1)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("pruning resolved alerts"))?;
                    }
                    return Ok(alert.id);
                }
                let row = sqlx::query(
                    "INSERT INTO alerts (fingerprint, alertname, deployment, state, labels, \
                     annotations, value, active_since_ms, fired_ms, resolved_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(alert.fingerprint.clone())
                .bind(alert.name().to_owned())
                .bind(alert.deployment().to_owned())
                .bind(alert.state.as_str())
                .bind(labels)
                .bind(annotations)
                .bind(finite(alert.value))
                .bind(alert.active_since_ms)
                .bind(alert.fired_ms)
                .bind(alert.resolved_ms)
                .bind(alert.updated_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("storing an alert"))?;
                get_i64(&row, "id")
            })
        })
        .await
}

fn opt_f64(row: &AnyRow, column: &str) -> Result<Option<f64>> {
    match row.try_get::<Option<f64>, _>(column) {
        Ok(value) => Ok(value),
        Err(error) => row
            .try_get::<Option<i64>, _>(column)
            .map(|v| v.map(|v| v as f64))
            .map_err(|_| Error::internal(format!("decoding column {column}"), error)),
    }
}

fn alert_from_row(row: &AnyRow) -> Result<Alert> {
    let labels: BTreeMap<String, String> =
        decode(&get_str(row, "labels")?, "decoding an alert's labels")?;
    Ok(Alert {
        id: get_i64(row, "id")?,
        fingerprint: get_str(row, "fingerprint")?,
        labels,
        annotations: decode(
            &get_str(row, "annotations")?,
            "decoding an alert's annotations",
        )?,
        state: AlertState::parse(&get_str(row, "state")?)?,
        value: opt_f64(row, "value")?,
        active_since_ms: get_i64(row, "active_since_ms")?,
        fired_ms: get_opt_i64(row, "fired_ms")?,
        resolved_ms: get_opt_i64(row, "resolved_ms")?,
        updated_ms: get_i64(row, "updated_ms")?,
    })
}

/// Stored alerts, newest first.
pub(crate) async fn list_alerts(
    store: &SqlStore,
    filter: &AlertFilter,
    limit: usize,
) -> Result<Vec<Alert>> {
    let mut sql = Sql::new(store.backend, "SELECT * FROM alerts WHERE id < ");
    sql.bind(filter.before_id.unwrap_or(i64::MAX));
    if let Some(state) = filter.state {
        sql.push(" AND state = ").bind(state.as_str());
    }
    if let Some(deployment) = &filter.deployment {
        sql.push(" AND deployment = ").bind(deployment.clone());
    }
    if let Some(fingerprint) = &filter.fingerprint {
        sql.push(" AND fingerprint = ").bind(fingerprint.clone());
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading alerts"))?;
    rows.iter().map(alert_from_row).collect()
}

pub(crate) async fn create_silence(
    store: &SqlStore,
    silence: NewSilence,
    by: String,
    now_ms: i64,
) -> Result<Silence> {
    let matchers = encode(&silence.matchers, "encoding a silence's matchers")?;
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO alert_silences (matchers, starts_ms, ends_ms, created_by, \
                     created_ms, comment) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(matchers)
                .bind(silence.starts_ms)
                .bind(silence.ends_ms)
                .bind(by.clone())
                .bind(now_ms)
                .bind(silence.comment.clone())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("storing a silence"))?;
                Ok(Silence {
                    id: get_i64(&row, "id")?,
                    matchers: silence.matchers,
                    starts_ms: silence.starts_ms,
                    ends_ms: silence.ends_ms,
                    created_by: by,
                    created_ms: now_ms,
                    comment: silence.comment,
                })
            })
        })
        .await
}

fn silence_from_row(row: &AnyRow) -> Result<Silence> {
    let matchers: Vec<Matcher> =
        decode(&get_str(row, "matchers")?, "decoding a silence's matchers")?;
    Ok(Silence {
        id: get_i64(row, "id")?,
        matchers,
        starts_ms: get_i64(row, "starts_ms")?,
        ends_ms: get_i64(row, "ends_ms")?,
        created_by: get_str(row, "created_by")?,
        created_ms: get_i64(row, "created_ms")?,
        comment: get_str(row, "comment")?,
    })
}

/// Silences that end after `after_ms`, newest first (at most `limit`).
pub(crate) async fn list_silences(
    store: &SqlStore,
    after_ms: i64,
    limit: usize,
) -> Result<Vec<Silence>> {
    let rows =
        sqlx::query("SELECT * FROM alert_silences WHERE ends_ms > $1 ORDER BY id DESC LIMIT $2")
            .bind(after_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&store.read)
            .await
            .map_err(db_err("reading silences"))?;
    rows.iter().map(silence_from_row).collect()
}

/// Ends a silence now (kept, with its end moved). Not found when it does not exist.
pub(crate) async fn expire_silence(store: &SqlStore, id: i64, now_ms: i64) -> Result<Silence> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query("SELECT * FROM alert_silences WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("reading a silence"))?
                    .ok_or_else(|| Error::NotFound(format!("silence {id} does not exist")))?;
                let mut silence = silence_from_row(&row)?;
                if silence.ends_ms > now_ms {
                    silence.ends_ms = now_ms.max(silence.starts_ms);
                    sqlx::query("UPDATE alert_silences SET ends_ms = $1 WHERE id = $2")
                        .bind(silence.ends_ms)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("expiring a silence"))?;
                }
                Ok(silence)
            })
        })
        .await
}
