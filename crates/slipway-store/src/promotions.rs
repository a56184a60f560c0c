//! Promotion policies, requests and decisions, alias history and rollback. A decision that
//! completes a request moves the alias (or stage) in the same transaction, so an approved
//! request and the registry never disagree.

use slipway_core::promotion::{
    AliasChange, Decision, NewPromotionRequest, PromotionPolicy, PromotionRequest, PromotionTarget,
    RequestState,
};
use slipway_core::registry::Stage;
use slipway_core::{Error, Result};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::registry::{model_id, set_alias_in, transition_in};
use crate::sql::{db_err, get_i64, get_opt_i64, get_opt_str, get_str};

fn request_not_found(id: i64) -> Error {
    Error::not_found(format!("promotion request {id} does not exist"))
}

fn policy_from_row(row: &AnyRow) -> Result<PromotionPolicy> {
    let aliases: Vec<String> = serde_json::from_str(&get_str(row, "protected_aliases")?)
        .map_err(|e| Error::internal("decoding protected aliases", e))?;
    let stages: Vec<String> = serde_json::from_str(&get_str(row, "protected_stages")?)
        .map_err(|e| Error::internal("decoding protected stages", e))?;
    Ok(PromotionPolicy {
        model_name: get_str(row, "model_name")?,
        protected_aliases: aliases,
        protected_stages: stages
            .iter()
            .map(|stage| Stage::parse(stage))
            .collect::<Result<_>>()?,
        required_approvals: u32::try_from(get_i64(row, "required_approvals")?).unwrap_or(u32::MAX),
        checks: get_opt_str(row, "checks")?,
        max_unapproved_weight: u8::try_from(get_i64(row, "max_unapproved_weight")?.clamp(0, 100))
            .unwrap_or(0),
        require_gate: get_i64(row, "require_gate")? != 0,
        gate_rules: get_opt_str(row, "gate_rules")?
            .map(|rules| {
                serde_json::from_str(&rules).map_err(|e| Error::internal("decoding gate rules", e))
            })
            .transpose()?,
        gate_data: get_opt_str(row, "gate_data")?,
        gate_data_sha256: get_opt_str(row, "gate_data_sha256")?,
        updated_at: get_i64(row, "updated_at")?,
        updated_by: get_str(row, "updated_by")?,
    })
}

pub(crate) async fn set_policy(store: &SqlStore, policy: PromotionPolicy) -> Result<()> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                model_id(&mut *tx, &policy.model_name).await?;
                let aliases = serde_json::to_string(&policy.protected_aliases)
                    .map_err(|e| Error::internal("encoding protected aliases", e))?;
                let stages: Vec<&str> = policy.protected_stages.iter().map(|s| s.as_str()).collect();
                let stages = serde_json::to_string(&stages)
                    .map_err(|e| Error::internal("encoding protected stages", e))?;
                let gate_rules = policy
                    .gate_rules
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| Error::internal("encoding gate rules", e))?;
                sqlx::query(
                    "INSERT INTO promotion_policies (model_name, protected_aliases, protected_stages, \
                     required_approvals, checks, max_unapproved_weight, updated_at, updated_by, \
                     require_gate, gate_rules, gate_data, gate_data_sha256) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (model_name) DO UPDATE SET protected_aliases = excluded.protected_aliases, \
                     protected_stages = excluded.protected_stages, required_approvals = excluded.required_approvals, \
                     checks = excluded.checks, max_unapproved_weight = excluded.max_unapproved_weight, updated_at = excluded.updated_at, updated_by = excluded.updated_by, \
                     require_gate = excluded.require_gate, gate_rules = excluded.gate_rules, \
                     gate_data = excluded.gate_data, gate_data_sha256 = excluded.gate_data_sha256",
                )
                .bind(policy.model_name.clone())
                .bind(aliases)
                .bind(stages)
                .bind(i64::from(policy.required_approvals))
                .bind(policy.checks.clone())
                .bind(i64::from(policy.max_unapproved_weight))
                .bind(policy.updated_at)
                .bind(policy.updated_by.clone())
                .bind(i64::from(policy.require_gate))
                .bind(gate_rules)
                .bind(policy.gate_data.clone())
                .bind(policy.gate_data_sha256.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err("setting a promotion policy"))?;
                Ok(())
            })
        })
        .await
}

pub(crate) async fn get_policy(store: &SqlStore, name: &str) -> Result<Option<PromotionPolicy>> {
    let row = sqlx::query("SELECT * FROM promotion_policies WHERE model_name = $1")
        .bind(name.to_owned())
        .fetch_optional(&store.read)
        .await
        .map_err(db_err("reading a promotion policy"))?;
    row.as_ref().map(policy_from_row).transpose()
}

pub(crate) async fn delete_policy(store: &SqlStore, name: &str) -> Result<()> {
    let name = name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                crate::sql::delete_existing(
                    tx,
                    sqlx::query("DELETE FROM promotion_policies WHERE model_name = $1")
                        .bind(name.clone()),
                    "deleting a promotion policy",
                    || {
                        Error::not_found(format!(
                            "registered model '{name}' has no promotion policy"
                        ))
                    },
                )
                .await
            })
        })
        .await
}

async fn load_request(conn: &mut AnyConnection, id: i64) -> Result<PromotionRequest> {
    let row = sqlx::query("SELECT * FROM promotion_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err("reading a promotion request"))?
        .ok_or_else(|| request_not_found(id))?;
    let mut request = request_from_row(&row)?;
    request.decisions = load_decisions(conn, id).await?;
    Ok(request)
}

fn request_from_row(row: &AnyRow) -> Result<PromotionRequest> {
    Ok(PromotionRequest {
        id: get_i64(row, "id")?,
        model_name: get_str(row, "model_name")?,
        version: get_i64(row, "version")?,
        target: PromotionTarget::from_parts(
            &get_str(row, "target_kind")?,
            &get_str(row, "target")?,
        )?,
        requester: get_str(row, "requester")?,
        reason: get_str(row, "reason")?,
        state: RequestState::parse(&get_str(row, "state")?)?,
        created_at: get_i64(row, "created_at")?,
        decided_at: get_opt_i64(row, "decided_at")?,
        decisions: Vec::new(),
    })
}

async fn load_decisions(conn: &mut AnyConnection, id: i64) -> Result<Vec<Decision>> {
    let rows = sqlx::query(
        "SELECT approver, decision, reason, decided_at FROM promotion_decisions \
         WHERE request_id = $1 ORDER BY decided_at, approver",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("reading promotion decisions"))?;
    rows.iter().map(decision_from_row).collect()
}

fn decision_from_row(row: &AnyRow) -> Result<Decision> {
    Ok(Decision {
        approver: get_str(row, "approver")?,
        approve: get_str(row, "decision")? == "approve",
        reason: get_str(row, "reason")?,
        decided_at: get_i64(row, "decided_at")?,
    })
}

pub(crate) async fn create_request(
    store: &SqlStore,
    new: NewPromotionRequest,
) -> Result<PromotionRequest> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                crate::registry::require_version(&mut *tx, &new.model_name, new.version).await?;
                let row = sqlx::query(
                    "INSERT INTO promotion_requests (model_name, version, target_kind, target, requester, \
                     reason, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id",
                )
                .bind(new.model_name.clone())
                .bind(new.version)
                .bind(new.target.kind())
                .bind(new.target.value().to_owned())
                .bind(new.requester.clone())
                .bind(new.reason.clone())
                .bind(new.created_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("creating a promotion request"))?;
                let id = get_i64(&row, "id")?;
                load_request(tx, id).await
            })
        })
        .await
}

pub(crate) async fn get_request(store: &SqlStore, id: i64) -> Result<PromotionRequest> {
    let mut conn = store
        .read
        .acquire()
        .await
        .map_err(db_err("reading a promotion request"))?;
    load_request(&mut conn, id).await
}

pub(crate) async fn list_requests(
    store: &SqlStore,
    model_name: Option<&str>,
    state: Option<RequestState>,
) -> Result<Vec<PromotionRequest>> {
    let mut sql = store.sql("SELECT * FROM promotion_requests WHERE 1 = 1");
    if let Some(name) = model_name {
        sql.push(" AND model_name = ").bind(name);
    }
    if let Some(state) = state {
        sql.push(" AND state = ").bind(state.as_str());
    }
    sql.push(" ORDER BY id DESC LIMIT 1000");
    let mut conn = store
        .read
        .acquire()
        .await
        .map_err(db_err("listing promotion requests"))?;
    let rows = sql
        .query()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("listing promotion requests"))?;
    let mut requests = rows
        .iter()
        .map(request_from_row)
        .collect::<Result<Vec<_>>>()?;
    if requests.is_empty() {
        return Ok(requests);
    }
    // All their decisions in one query, not one per request.
    let mut sql = store.sql(
        "SELECT request_id, approver, decision, reason, decided_at FROM promotion_decisions \
         WHERE request_id IN ",
    );
    sql.bind_list(requests.iter().map(|request| request.id))
        .push(" ORDER BY decided_at, approver");
    let rows = sql
        .query()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("reading promotion decisions"))?;
    for row in &rows {
        let request_id = get_i64(row, "request_id")?;
        if let Some(request) = requests.iter_mut().find(|r| r.id == request_id) {
            request.decisions.push(decision_from_row(row)?);
        }
    }
    Ok(requests)
}

/// Records a decision; an approval that reaches `required_approvals` applies the promotion.
pub(crate) async fn decide(
    store: &SqlStore,
    id: i64,
    decision: Decision,
    required_approvals: u32,
) -> Result<PromotionRequest> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                // Two approvers at once on PostgreSQL: the second waits here for the first to
                // commit, then counts its approval and sees the state it left.
                if tx.backend_name() != "SQLite" {
                    sqlx::query("SELECT id FROM promotion_requests WHERE id = $1 FOR UPDATE")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("locking a promotion request"))?;
                }
                let request = load_request(&mut *tx, id).await?;
                if request.state != RequestState::Pending {
                    return Err(Error::invalid(format!(
                        "promotion request {id} is already {}",
                        request.state.as_str()
                    )));
                }
                if request.decisions.iter().any(|d| d.approver == decision.approver) {
                    return Err(Error::already_exists(format!(
                        "user '{}' already decided promotion request {id}",
                        decision.approver
                    )));
                }
                sqlx::query(
                    "INSERT INTO promotion_decisions (request_id, approver, decision, reason, decided_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(decision.approver.clone())
                .bind(if decision.approve { "approve" } else { "reject" })
                .bind(decision.reason.clone())
                .bind(decision.decided_at)
                .execute(&mut *tx)
                .await
                .map_err(db_err("recording a promotion decision"))?;
                let approvals = request.approvals() + usize::from(decision.approve);
                let new_state = if !decision.approve {
                    Some(RequestState::Rejected)
                } else if approvals >= required_approvals as usize {
                    match &request.target {
                        PromotionTarget::Alias(alias) => {
                            set_alias_in(
                                tx,
                                &request.model_name,
                                alias,
                                request.version,
                                &format!("promotion:{id}"),
                            )
                            .await?;
                        }
                        PromotionTarget::Stage(stage) => {
                            transition_in(
                                tx,
                                &request.model_name,
                                request.version,
                                *stage,
                                true,
                                decision.decided_at,
                            )
                            .await?;
                        }
                    }
                    Some(RequestState::Approved)
                } else {
                    None
                };
                if let Some(state) = new_state {
                    sqlx::query(
                        "UPDATE promotion_requests SET state = $1, decided_at = $2 WHERE id = $3",
                    )
                    .bind(state.as_str())
                    .bind(decision.decided_at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("closing a promotion request"))?;
                }
                load_request(tx, id).await
            })
        })
        .await
}

fn change_from_row(row: &AnyRow) -> Result<AliasChange> {
    Ok(AliasChange {
        model_name: get_str(row, "model_name")?,
        alias: get_str(row, "alias")?,
        version: get_opt_i64(row, "version")?,
        previous_version: get_opt_i64(row, "previous_version")?,
        changed_at: get_i64(row, "changed_at")?,
        via: get_str(row, "via")?,
    })
}

pub(crate) async fn alias_history(
    store: &SqlStore,
    name: &str,
    alias: Option<&str>,
) -> Result<Vec<AliasChange>> {
    let mut sql = store.sql("SELECT * FROM alias_history WHERE model_name = ");
    sql.bind(name);
    if let Some(alias) = alias {
        sql.push(" AND alias = ").bind(alias);
    }
    sql.push(" ORDER BY id");
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading alias history"))?;
    rows.iter().map(change_from_row).collect()
}

/// Moves the alias back to where its latest change took it from.
pub(crate) async fn rollback_alias(
    store: &SqlStore,
    name: &str,
    alias: &str,
) -> Result<AliasChange> {
    let name = name.to_owned();
    let alias = alias.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT * FROM alias_history WHERE model_name = $1 AND alias = $2 \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(name.clone())
                .bind(alias.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("reading alias history"))?;
                let last = match row {
                    Some(row) => change_from_row(&row)?,
                    None => {
                        return Err(Error::invalid(format!(
                            "alias '{alias}' of registered model '{name}' has no history to roll back"
                        )));
                    }
                };
                let Some(target) = last.previous_version else {
                    return Err(Error::invalid(format!(
                        "alias '{alias}' of registered model '{name}' pointed at no version before its last change; there is nothing to roll back to"
                    )));
                };
                let previous = set_alias_in(tx, &name, &alias, target, "rollback").await?;
                Ok(AliasChange {
                    model_name: name,
                    alias,
                    version: Some(target),
                    previous_version: previous,
                    changed_at: crate::now_ms(),
                    via: "rollback".to_owned(),
                })
            })
        })
        .await
}
