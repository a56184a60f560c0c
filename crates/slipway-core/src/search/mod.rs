//! Search filters and orderings: MLflow's filter grammar, plus `OR` and parentheses.
//!
//! The parser ([`parse_filter`], [`parse_order_by`]) turns the text a client sends into this
//! AST, checking per entity which keys exist and which operators and value types they allow,
//! so that a store only has to translate a well-typed tree into its query language.
//!
//! Grammar (case-insensitive keywords):
//! ```text
//! filter     := or_expr?
//! or_expr    := and_expr ("OR" and_expr)*            -- slipway extension (mlflow/mlflow#6075)
//! and_expr   := primary ("AND" primary)*
//! primary    := "(" or_expr ")" | comparison          -- parentheses: slipway extension
//! comparison := identifier op value
//!             | identifier "IS" ["NOT"] "NULL"
//!             | identifier ["NOT"] "IN" "(" string ("," string)* ")"
//! identifier := [entity "."] key                      -- entity/key may be `backticked` or "double quoted"
//! ```

mod parser;

pub use parser::{
    MAX_COMPARISONS, MAX_EXPERIMENT_IDS, MAX_FILTER_BYTES, MAX_LIST_VALUES, MAX_ORDER_BY_KEYS,
    parse_filter, parse_order_by,
};

/// Which kind of object a filter applies to; decides the valid keys and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchEntity {
    Runs,
    Experiments,
    RegisteredModels,
    ModelVersions,
    LoggedModels,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(Comparison),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: Field,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// The latest value of a metric (runs, logged models).
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(Attribute),
    /// Runs only: a dataset the run used as input.
    Dataset(DatasetField),
}

/// Attributes, canonicalised: every alias the grammar accepts (`created`, `` `Run name` ``,
/// `creation_timestamp`...) resolves to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Runs: `run_id`; model versions: `run_id`; logged models: `source_run_id` is separate.
    RunId,
    /// Runs: `run_name` / `` `Run name` ``.
    RunName,
    /// Runs: `status` (string); logged models: `status` (string).
    Status,
    /// Runs: `user_id`.
    UserId,
    /// Runs: `artifact_uri`.
    ArtifactUri,
    /// Runs: `start_time` / `created` (numeric).
    StartTime,
    /// Runs: `end_time` (numeric).
    EndTime,
    /// Experiments: `experiment_id`.
    ExperimentId,
    /// Experiments, registered models, model versions, logged models: `name`.
    Name,
    /// Experiments: `creation_time`; registered models and model versions: `creation_timestamp`
    /// (and `timestamp` for registered models' order_by); logged models: `creation_time` /
    /// `creation_timestamp` (numeric).
    CreationTime,
    /// Experiments: `last_update_time`; registry: `last_updated_timestamp`; logged models:
    /// `last_updated_time` / `last_updated_timestamp` (numeric).
    LastUpdateTime,
    /// Model versions: `version_number` (numeric).
    VersionNumber,
    /// Model versions: `source_path`.
    SourcePath,
    /// Logged models: `model_id`.
    ModelId,
    /// Logged models: `model_type`.
    ModelType,
    /// Logged models: `source_run_id`.
    SourceRunId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetField {
    Name,
    Digest,
    /// The `mlflow.data.context` input tag (`training`, `eval`...).
    Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Case-sensitive, `%` and `_` wildcards.
    Like,
    /// Case-insensitive LIKE.
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    String(String),
    /// The parenthesised list of `IN` / `NOT IN`.
    List(Vec<String>),
    /// The (absent) right-hand side of `IS NULL` / `IS NOT NULL`.
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub field: Field,
    pub ascending: bool,
}
