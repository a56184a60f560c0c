//! Search AST -> SQL. The parser in `slipway-core` already checked which keys, operators and
//! value types each entity allows; this module only decides how each comparison reads the
//! tables, so both backends share one translation.
//!
//! Metric, param and tag comparisons are `EXISTS` sub-queries on the narrow key/value tables
//! (indexed by key and value), never joins that multiply rows; `OR` is plain SQL `OR`.

use slipway_core::search::{Attribute, Comparison, DatasetField, Expr, Field, Op, OrderBy, Value};
use slipway_core::{Error, Result};

use crate::sql::Sql;

/// The table (and its alias in the search query) a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Runs,
    Experiments,
    RegisteredModels,
    ModelVersions,
    LoggedModels,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Runs => "runs",
            Target::Experiments => "experiments",
            Target::RegisteredModels => "registered models",
            Target::ModelVersions => "model versions",
            Target::LoggedModels => "logged models",
        }
    }
}

/// How a key/value side table hangs off the searched row.
struct SideTable {
    table: &'static str,
    /// The join condition with `{a}` standing for the side table's alias.
    on: &'static str,
}

fn tag_table(target: Target) -> SideTable {
    match target {
        Target::Runs => SideTable {
            table: "tags",
            on: "{a}.run_id = r.run_id",
        },
        Target::Experiments => SideTable {
            table: "experiment_tags",
            on: "{a}.experiment_id = e.experiment_id",
        },
        Target::RegisteredModels => SideTable {
            table: "registered_model_tags",
            on: "{a}.model_id = rm.id",
        },
        Target::ModelVersions => SideTable {
            table: "model_version_tags",
            on: "{a}.model_id = mv.model_id AND {a}.version = mv.version",
        },
        Target::LoggedModels => SideTable {
            table: "logged_model_tags",
            on: "{a}.model_id = lm.model_id",
        },
    }
}

fn param_table(target: Target) -> Result<SideTable> {
    match target {
        Target::Runs => Ok(SideTable {
            table: "params",
            on: "{a}.run_id = r.run_id",
        }),
        Target::LoggedModels => Ok(SideTable {
            table: "logged_model_params",
            on: "{a}.model_id = lm.model_id",
        }),
        other => Err(unsupported(other, "params")),
    }
}

fn metric_table(target: Target) -> Result<SideTable> {
    match target {
        Target::Runs => Ok(SideTable {
            table: "latest_metrics",
            on: "{a}.run_id = r.run_id",
        }),
        Target::LoggedModels => Ok(SideTable {
            table: "logged_model_metrics",
            on: "{a}.model_id = lm.model_id",
        }),
        other => Err(unsupported(other, "metrics")),
    }
}

fn unsupported(target: Target, what: &str) -> Error {
    Error::invalid(format!(
        "Searching {} by {what} is not supported",
        target.name()
    ))
}

fn attribute_column(target: Target, attribute: Attribute) -> Result<&'static str> {
    use Attribute as A;
    let column = match (target, attribute) {
        (Target::Runs, A::RunId) => "r.run_id",
        (Target::Runs, A::RunName) => "r.name",
        (Target::Runs, A::Status) => "r.status",
        (Target::Runs, A::UserId) => "r.user_id",
        (Target::Runs, A::ArtifactUri) => "r.artifact_uri",
        (Target::Runs, A::StartTime) => "r.start_time",
        (Target::Runs, A::EndTime) => "r.end_time",
        (Target::Runs, A::ExperimentId) => "r.experiment_id",
        (Target::Experiments, A::ExperimentId) => "e.experiment_id",
        (Target::Experiments, A::Name) => "e.name",
        (Target::Experiments, A::CreationTime) => "e.creation_time",
        (Target::Experiments, A::LastUpdateTime) => "e.last_update_time",
        (Target::RegisteredModels, A::Name) => "rm.name",
        (Target::RegisteredModels, A::CreationTime) => "rm.creation_time",
        (Target::RegisteredModels, A::LastUpdateTime) => "rm.last_updated_time",
        (Target::ModelVersions, A::Name) => "rm.name",
        (Target::ModelVersions, A::RunId) => "mv.run_id",
        (Target::ModelVersions, A::SourcePath) => "mv.source",
        (Target::ModelVersions, A::VersionNumber) => "mv.version",
        (Target::ModelVersions, A::CreationTime) => "mv.creation_time",
        (Target::ModelVersions, A::LastUpdateTime) => "mv.last_updated_time",
        (Target::LoggedModels, A::Name) => "lm.name",
        (Target::LoggedModels, A::ModelId) => "lm.model_id",
        (Target::LoggedModels, A::ModelType) => "lm.model_type",
        (Target::LoggedModels, A::Status) => "lm.status",
        (Target::LoggedModels, A::SourceRunId) => "lm.source_run_id",
        (Target::LoggedModels, A::CreationTime) => "lm.creation_time",
        (Target::LoggedModels, A::LastUpdateTime) => "lm.last_updated_time",
        (target, attribute) => {
            return Err(Error::invalid(format!(
                "Invalid attribute {attribute:?} for searching {}",
                target.name()
            )));
        }
    };
    Ok(column)
}

/// Integer-typed id columns compared with the strings clients send (`experiment_id IN ('1')`).
fn is_integer_id(column: &str) -> bool {
    matches!(column, "e.experiment_id" | "r.experiment_id")
}

pub(crate) fn push_expr(sql: &mut Sql, target: Target, expr: &Expr) -> Result<()> {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => {
            let joiner = if matches!(expr, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            if parts.is_empty() {
                sql.push("1 = 1");
                return Ok(());
            }
            sql.push("(");
            for (index, part) in parts.iter().enumerate() {
                if index > 0 {
                    sql.push(joiner);
                }
                push_expr(sql, target, part)?;
            }
            sql.push(")");
            Ok(())
        }
        Expr::Compare(comparison) => push_comparison(sql, target, comparison),
    }
}

fn push_comparison(sql: &mut Sql, target: Target, comparison: &Comparison) -> Result<()> {
    let Comparison { field, op, value } = comparison;
    match field {
        Field::Attribute(attribute) => {
            let column = attribute_column(target, *attribute)?;
            push_predicate(sql, column, *op, value, is_integer_id(column))
        }
        Field::Metric(key) => {
            let side = metric_table(target)?;
            push_exists(sql, &side, "m", key, |sql| {
                // NaN is stored as 0 with a flag; it never satisfies a numeric comparison.
                sql.push(" AND m.is_nan = 0 AND ");
                push_predicate(sql, "m.value", *op, value, false)
            })
        }
        Field::Param(key) => {
            let side = param_table(target)?;
            push_key_value(sql, &side, "p", key, *op, value)
        }
        Field::Tag(key) => {
            let side = tag_table(target);
            // On the registry, `tags.k != 'v'` also matches models without the tag: the MLflow
            // client hides prompts with `tags.mlflow.prompt.is_prompt != 'true'` on every
            // registry search and expects untagged models back. Runs and experiments keep
            // MLflow's "tag present with another value" meaning.
            if *op == Op::Ne && matches!(target, Target::RegisteredModels | Target::ModelVersions) {
                sql.push("NOT ");
                return push_key_value(sql, &side, "t", key, Op::Eq, value);
            }
            push_key_value(sql, &side, "t", key, *op, value)
        }
        Field::Dataset(dataset_field) => {
            if target != Target::Runs {
                return Err(unsupported(target, "datasets"));
            }
            let column = match dataset_field {
                DatasetField::Name => "d.name",
                DatasetField::Digest => "d.digest",
                DatasetField::Context => "ri.context",
            };
            sql.push(
                "EXISTS (SELECT 1 FROM run_inputs ri JOIN datasets d ON d.dataset_id = ri.dataset_id \
                 WHERE ri.run_id = r.run_id AND ",
            );
            push_predicate(sql, column, *op, value, false)?;
            sql.push(")");
            Ok(())
        }
    }
}

/// `IS NULL` means "has no such key"; any other operator requires the key with a matching value.
fn push_key_value(
    sql: &mut Sql,
    side: &SideTable,
    alias: &str,
    key: &str,
    op: Op,
    value: &Value,
) -> Result<()> {
    match op {
        Op::IsNull => {
            sql.push("NOT ");
            push_exists(sql, side, alias, key, |_| Ok(()))
        }
        Op::IsNotNull => push_exists(sql, side, alias, key, |_| Ok(())),
        _ => push_exists(sql, side, alias, key, |sql| {
            sql.push(" AND ");
            push_predicate(sql, &format!("{alias}.value"), op, value, false)
        }),
    }
}

fn push_exists(
    sql: &mut Sql,
    side: &SideTable,
    alias: &str,
    key: &str,
    rest: impl FnOnce(&mut Sql) -> Result<()>,
) -> Result<()> {
    sql.push("EXISTS (SELECT 1 FROM ")
        .push(side.table)
        .push(" ")
        .push(alias)
        .push(" WHERE ")
        .push(&side.on.replace("{a}", alias))
        .push(" AND ")
        .push(alias)
        .push(".key = ")
        .bind(key);
    rest(sql)?;
    sql.push(")");
    Ok(())
}

fn push_predicate(
    sql: &mut Sql,
    column: &str,
    op: Op,
    value: &Value,
    integer_id: bool,
) -> Result<()> {
    let symbol = match op {
        Op::Eq => "=",
        Op::Ne => "<>",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Like => {
            sql.push(column).push(" LIKE ");
            push_scalar(sql, value, integer_id)?;
            sql.push(" ESCAPE '\\'");
            return Ok(());
        }
        Op::ILike => {
            sql.push("LOWER(").push(column).push(") LIKE LOWER(");
            push_scalar(sql, value, integer_id)?;
            sql.push(") ESCAPE '\\'");
            return Ok(());
        }
        Op::In | Op::NotIn => {
            let Value::List(items) = value else {
                return Err(Error::invalid(
                    "IN and NOT IN need a parenthesised list of values",
                ));
            };
            sql.push(column)
                .push(if op == Op::In { " IN " } else { " NOT IN " });
            if integer_id {
                let ids = items
                    .iter()
                    .map(|item| parse_integer_id(item))
                    .collect::<Result<Vec<_>>>()?;
                sql.bind_list(ids);
            } else {
                sql.bind_list(items.iter().map(String::as_str));
            }
            return Ok(());
        }
        Op::IsNull => {
            sql.push(column).push(" IS NULL");
            return Ok(());
        }
        Op::IsNotNull => {
            sql.push(column).push(" IS NOT NULL");
            return Ok(());
        }
    };
    sql.push(column).push(" ").push(symbol).push(" ");
    push_scalar(sql, value, integer_id)
}

fn push_scalar(sql: &mut Sql, value: &Value, integer_id: bool) -> Result<()> {
    match value {
        Value::Number(number) => {
            sql.bind(*number);
        }
        Value::String(text) if integer_id => {
            sql.bind(parse_integer_id(text)?);
        }
        Value::String(text) => {
            sql.bind(text.as_str());
        }
        Value::List(_) | Value::Null => {
            return Err(Error::invalid("this comparison needs a single value"));
        }
    }
    Ok(())
}

fn parse_integer_id(raw: &str) -> Result<i64> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| Error::invalid(format!("'{raw}' is not a valid experiment ID")))
}

/// Metric keys the filter can only match when the run has that metric with a non-NaN value: the
/// metric comparisons among the filter's top-level `AND` terms.
pub(crate) fn required_metrics(filter: Option<&Expr>) -> Vec<String> {
    let terms: &[Expr] = match filter {
        Some(Expr::And(parts)) => parts,
        Some(expr @ Expr::Compare(_)) => std::slice::from_ref(expr),
        _ => &[],
    };
    terms
        .iter()
        .filter_map(|term| match term {
            Expr::Compare(Comparison {
                field: Field::Metric(key),
                ..
            }) => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// The leading sort metric, when the filter guarantees every matching run has a non-NaN value
/// for it. A search can then start from `latest_metrics` in value order, through the
/// `(experiment_id, key, value)` index, and stop at the page's end instead of sorting every
/// matching run.
pub(crate) fn driving_metric(filter: Option<&Expr>, order_by: &[OrderBy]) -> Option<String> {
    match order_by.first() {
        Some(OrderBy {
            field: Field::Metric(key),
            ..
        }) if required_metrics(filter).contains(key) => Some(key.clone()),
        _ => None,
    }
}

/// A metric range the filter requires (a top-level `AND` term such as `metrics.auc > 0.9`),
/// for a search that no sort metric drives: the search can then start from that metric's
/// `(experiment_id, key, value)` index range instead of every run of the experiments, and
/// check the rest of the filter on the runs the range holds.
pub(crate) fn filtering_metric(filter: Option<&Expr>) -> Option<Comparison> {
    let terms: &[Expr] = match filter {
        Some(Expr::And(parts)) => parts,
        Some(expr @ Expr::Compare(_)) => std::slice::from_ref(expr),
        _ => &[],
    };
    terms.iter().find_map(|term| match term {
        Expr::Compare(
            comparison @ Comparison {
                field: Field::Metric(_),
                op: Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Eq,
                value: Value::Number(_),
            },
        ) => Some(comparison.clone()),
        _ => None,
    })
}

/// The driving table's own condition for [`filtering_metric`]: the same comparison the
/// filter's `EXISTS` makes, on the alias `f0`.
pub(crate) fn push_driving_filter(sql: &mut Sql, comparison: &Comparison) -> Result<()> {
    let Field::Metric(key) = &comparison.field else {
        return Err(Error::internal_msg(
            "a driving filter must compare a metric",
        ));
    };
    sql.push("f0.key = ").bind(key.as_str());
    sql.push(" AND f0.is_nan = 0 AND ");
    push_predicate(sql, "f0.value", comparison.op, &comparison.value, false)
}

/// Adds the joins that ordering by metrics, params or tags needs and returns the `ORDER BY`
/// items (without the entity's default tie-breakers). As in MLflow, rows lacking the sort key
/// come last in both directions, and NaN metrics just before them.
///
/// With `lead_drives`, the caller has already made the leading sort metric's table the driving
/// table `ob0` (see [`driving_metric`]); its ordering is then the bare value.
pub(crate) fn order_joins(
    sql: &mut Sql,
    target: Target,
    order_by: &[OrderBy],
    lead_drives: bool,
) -> Result<String> {
    let mut items = Vec::new();
    for (index, order) in order_by.iter().enumerate() {
        let direction = if order.ascending { "ASC" } else { "DESC" };
        let alias = format!("ob{index}");
        let side = match &order.field {
            Field::Attribute(attribute) => {
                let column = attribute_column(target, *attribute)?;
                items.push(format!("CASE WHEN {column} IS NULL THEN 1 ELSE 0 END"));
                items.push(format!("{column} {direction}"));
                continue;
            }
            Field::Metric(_) => metric_table(target)?,
            Field::Param(_) => param_table(target)?,
            Field::Tag(_) => tag_table(target),
            Field::Dataset(_) => return Err(Error::invalid("Cannot order by a dataset field")),
        };
        let (Field::Metric(key) | Field::Param(key) | Field::Tag(key)) = &order.field else {
            continue;
        };
        let is_metric = matches!(order.field, Field::Metric(_));
        if index == 0 && lead_drives {
            // The caller made `ob0` the driving table (see `driving_metric`).
            items.push(format!("{alias}.value {direction}"));
            continue;
        }
        sql.push(" LEFT JOIN ")
            .push(side.table)
            .push(" ")
            .push(&alias)
            .push(" ON ")
            .push(&side.on.replace("{a}", &alias))
            .push(" AND ")
            .push(&alias)
            .push(".key = ")
            .bind(key.as_str());
        if is_metric {
            items.push(format!(
                "CASE WHEN {alias}.key IS NULL THEN 2 WHEN {alias}.is_nan = 1 THEN 1 ELSE 0 END"
            ));
        } else {
            items.push(format!("CASE WHEN {alias}.key IS NULL THEN 1 ELSE 0 END"));
        }
        items.push(format!("{alias}.value {direction}"));
    }
    Ok(items.join(", "))
}
