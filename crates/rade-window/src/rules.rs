use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use rade_schema::Catalog;
use serde::{Deserialize, Serialize};

use crate::eager::Monotone;
use crate::layout::KindLayout;
use crate::spec::WindowSpec;
use crate::template::Template;
use crate::{Error, Result};

/// Severity of an alert, lowest first (the `Severity` enum of `schemas/alert.avsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Alarm,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Alarm => "alarm",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
    #[serde(default)]
    derived: Vec<DerivedDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Kinds the rule watches; empty for every kind (only for `no_signal` rules).
    #[serde(default)]
    kinds: Vec<String>,
    window: Option<String>,
    severity: Severity,
    condition: Option<String>,
    clear: Option<String>,
    value: Option<String>,
    /// Raise as soon as a reading makes the condition hold of its window so far (the condition
    /// must stay true once true: see `eager.rs`), not when the window closes.
    #[serde(default)]
    eager: bool,
    #[serde(default, with = "humantime_serde")]
    no_signal: Option<Duration>,
    /// Raise after this many heartbeats of the kind's schedule (`catalog.toml`) without a record.
    missed_heartbeats: Option<u32>,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DerivedDef {
    kind: String,
    name: String,
    sql: String,
    #[serde(default)]
    #[allow(dead_code)]
    unit: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

/// A column computed by DataFusion from the aggregate columns of a closed window.
struct Derived {
    name: String,
    expr: Arc<dyn PhysicalExpr>,
}

/// A rule over the closed windows of one kind and window shape.
pub struct WindowRule {
    pub name: String,
    pub severity: Severity,
    pub spec: usize,
    /// The condition as written, copied into every alert.
    pub condition_sql: String,
    condition: Arc<dyn PhysicalExpr>,
    /// `None`: the alert resolves as soon as the condition no longer holds.
    clear: Option<Arc<dyn PhysicalExpr>>,
    value: Option<Arc<dyn PhysicalExpr>>,
    pub(crate) message: Template,
    /// For an eager rule, its condition over the statistics of an open window.
    pub(crate) eager: Option<Monotone>,
}

/// A rule that raises when a sensor has sent nothing for `after`.
pub struct SilenceRule {
    pub name: String,
    pub severity: Severity,
    pub after_ms: i64,
    pub condition_sql: String,
    pub(crate) message: Template,
}

/// One rule's verdicts over a batch of closed windows.
pub(crate) struct Verdicts {
    pub condition: BooleanArray,
    pub clear: Option<BooleanArray>,
    pub value: Option<Float64Array>,
}

/// The derived columns and rules of one sensor kind, compiled against its aggregate schema.
pub struct KindRules {
    pub layout: Arc<KindLayout>,
    derived: Vec<Derived>,
    /// Aggregate columns, then derived columns: the schema of `aggregates/` files of the kind.
    pub schema: SchemaRef,
    pub window_rules: Vec<WindowRule>,
    pub silence_rules: Vec<SilenceRule>,
    /// Positions in `window_rules` of the eager rules.
    pub(crate) eager: Vec<usize>,
    /// The configured windows the kind keeps (bit `s` for `specs[s]`): those its schedule in
    /// the catalog names, or all of them.
    pub(crate) kept: u32,
}

impl KindRules {
    /// Whether the kind keeps the window shape `specs[spec]`.
    #[inline]
    pub fn keeps(&self, spec: usize) -> bool {
        self.kept & (1 << spec) != 0
    }
}

impl KindRules {
    /// Adds the derived columns (before the lineage columns) to a batch of closed windows. A
    /// derived value that cannot be computed for a batch is null, with a warning: the windows
    /// themselves are never dropped.
    pub fn finish(&self, batch: RecordBatch) -> RecordBatch {
        if self.derived.is_empty() {
            return batch;
        }
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        let lineage = columns.split_off(columns.len() - 2);
        for d in &self.derived {
            // Each derived column may use the ones before it.
            let partial_schema = Arc::new(Schema::new(self.schema.fields()[..columns.len()].to_vec()));
            let column = RecordBatch::try_new(partial_schema, columns.clone())
                .map_err(|e| Error::Eval {
                    what: d.name.clone(),
                    message: e.to_string(),
                })
                .and_then(|b| eval(&d.expr, &b, &d.name))
                .and_then(|a| {
                    arrow::compute::cast(&a, &DataType::Float64).map_err(|e| Error::Eval {
                        what: d.name.clone(),
                        message: e.to_string(),
                    })
                });
            columns.push(column.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "derived column not computed for these windows");
                arrow::array::new_null_array(&DataType::Float64, rows)
            }));
        }
        columns.extend(lineage);
        RecordBatch::try_new(self.schema.clone(), columns).expect("columns follow the kind's aggregate schema")
    }
}

impl WindowRule {
    /// Whether the rule raises at the reading that makes its condition hold, before its
    /// window closes (`eager = true`).
    pub fn is_eager(&self) -> bool {
        self.eager.is_some()
    }

    pub(crate) fn evaluate(&self, batch: &RecordBatch) -> Result<Verdicts> {
        let boolean = |expr: &Arc<dyn PhysicalExpr>| -> Result<BooleanArray> {
            Ok(eval(expr, batch, &self.name)?.as_boolean().clone())
        };
        Ok(Verdicts {
            condition: boolean(&self.condition)?,
            clear: self.clear.as_ref().map(boolean).transpose()?,
            value: self
                .value
                .as_ref()
                .map(|v| -> Result<Float64Array> {
                    let a = eval(v, batch, &self.name)?;
                    let a = arrow::compute::cast(&a, &DataType::Float64).map_err(|e| Error::Eval {
                        what: self.name.clone(),
                        message: e.to_string(),
                    })?;
                    Ok(a.as_primitive().clone())
                })
                .transpose()?,
        })
    }
}

fn eval(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch, what: &str) -> Result<ArrayRef> {
    expr.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| Error::Eval {
            what: what.into(),
            message: e.to_string(),
        })
}

/// Every rule and derived column of `rules/`, compiled by DataFusion against the aggregate
/// schema of the kinds they name.
pub struct RuleSet {
    kinds: HashMap<String, Arc<KindRules>>,
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("files", &self.files)
            .field("rules", &self.rule_names())
            .finish()
    }
}

fn session() -> SessionContext {
    SessionContext::new_with_config(
        SessionConfig::new().set_bool("datafusion.sql_parser.enable_ident_normalization", false),
    )
}

/// A rule's SQL expression as DataFusion parses it against `schema`.
fn parse(ctx: &SessionContext, schema: &Schema, sql: &str) -> std::result::Result<(DFSchema, Expr), String> {
    let df_schema = DFSchema::try_from(schema.clone()).map_err(|e| e.to_string())?;
    let expr = ctx
        .parse_sql_expr(sql, &df_schema)
        .map_err(|e| first_line(&e.to_string()))?;
    Ok((df_schema, expr))
}

fn compile(
    ctx: &SessionContext,
    schema: &Schema,
    sql: &str,
    want: Want,
) -> std::result::Result<Arc<dyn PhysicalExpr>, String> {
    let (df_schema, expr) = parse(ctx, schema, sql)?;
    // Simplification rewrites functions such as arrow_cast into plain casts.
    let simplify = SimplifyContext::builder()
        .with_schema(Arc::new(df_schema.clone()))
        .with_config_options(Arc::new(ctx.state().config_options().as_ref().clone()))
        .build();
    let expr = ExprSimplifier::new(simplify)
        .simplify(expr)
        .map_err(|e| first_line(&e.to_string()))?;
    let physical = ctx
        .create_physical_expr(expr, &df_schema)
        .map_err(|e| first_line(&e.to_string()))?;
    let ty = physical.data_type(schema).map_err(|e| e.to_string())?;
    let ok = match want {
        Want::Boolean => ty == DataType::Boolean,
        Want::Number => ty.is_numeric(),
    };
    if !ok {
        return Err(format!(
            "`{sql}` is of type {ty}, expected {}",
            match want {
                Want::Boolean => "a boolean condition",
                Want::Number => "a number",
            }
        ));
    }
    Ok(physical)
}

/// The configured windows `kind` keeps: the shapes its schedule's `windows` names (a named
/// shape that is not configured is not kept), or every one.
fn kept_windows(kind: &str, catalog: &Catalog, specs: &[WindowSpec]) -> Result<u32> {
    let all = (0..specs.len()).fold(0u32, |m, s| m | (1 << s));
    let Some(labels) = catalog.schedule(kind).and_then(|s| s.windows.as_ref()) else {
        return Ok(all);
    };
    let mut kept = 0u32;
    for label in labels {
        let shape = WindowSpec::parse(label).map_err(|e| Error::Window {
            label: label.clone(),
            message: format!(
                "in the `windows` of [schedule.{kind}] in the catalog: {}",
                match e {
                    Error::Window { message, .. } => message,
                    other => other.to_string(),
                }
            ),
        })?;
        for (s, spec) in specs.iter().enumerate() {
            if (spec.size_ms, spec.slide_ms) == (shape.size_ms, shape.slide_ms) {
                kept |= 1 << s;
            }
        }
    }
    if kept == 0 && !labels.is_empty() {
        tracing::warn!(
            kind,
            named = %labels.join(", "),
            configured = %specs.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", "),
            "the kind keeps none of the configured windows"
        );
    }
    Ok(kept)
}

/// The eager form of a condition: it must only grow true as a window's readings arrive.
fn eager_condition(
    ctx: &SessionContext,
    schema: &Schema,
    layout: &KindLayout,
    sql: &str,
) -> std::result::Result<Monotone, String> {
    let (_, expr) = parse(ctx, schema, sql)?;
    let measures: Vec<&str> = layout
        .measures
        .iter()
        .map(|&i| layout.kind.fields[i].name.as_str())
        .collect();
    Monotone::parse(&expr, &measures)
}

#[derive(Clone, Copy)]
enum Want {
    Boolean,
    Number,
}

/// The shipped `rules/` folder, compiled in by the build script: (file name, text).
const EMBEDDED_RULES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// How the embedded rule files are named in messages.
pub const EMBEDDED_RULES_DIR: &str = "(built-in) rules";

fn parse_rule_file(path: &Path, text: &str) -> Result<RuleFile> {
    toml::from_str(text).map_err(|e| Error::RuleFile {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_owned()
}

impl RuleSet {
    /// No rules, no derived columns: windows are aggregated and written, nothing alerts.
    pub fn empty(catalog: &Catalog, specs: &[WindowSpec]) -> Result<Self> {
        Self::build(catalog, specs, Vec::new())
    }

    /// The shipped `rules/`, compiled into the binary (the folder's `*.toml`, sorted by name).
    pub fn embedded(catalog: &Catalog, specs: &[WindowSpec]) -> Result<Self> {
        let mut files = Vec::new();
        for (name, text) in EMBEDDED_RULES {
            let path = Path::new(EMBEDDED_RULES_DIR).join(name);
            files.push((path.clone(), parse_rule_file(&path, text)?));
        }
        Self::build(catalog, specs, files)
    }

    /// Loads every `*.toml` of `dir` (sorted by name). Errors name the file and the rule.
    pub fn load(dir: &Path, catalog: &Catalog, specs: &[WindowSpec]) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let file = parse_rule_file(&path, &text)?;
            files.push((path, file));
        }
        Self::build(catalog, specs, files)
    }

    fn build(catalog: &Catalog, specs: &[WindowSpec], files: Vec<(PathBuf, RuleFile)>) -> Result<Self> {
        let ctx = session();
        let mut kinds: BTreeMap<String, KindRules> = BTreeMap::new();
        for k in catalog.kinds() {
            let layout = Arc::new(KindLayout::new(k.clone())?);
            let kept = kept_windows(&k.kind, catalog, specs)?;
            kinds.insert(
                k.kind.clone(),
                KindRules {
                    kept,
                    schema: layout.schema.clone(),
                    layout,
                    derived: Vec::new(),
                    window_rules: Vec::new(),
                    silence_rules: Vec::new(),
                    eager: Vec::new(),
                },
            );
        }
        // Derived columns first: any rule of any file may use them.
        for (path, file) in &files {
            for d in &file.derived {
                let err = |message: String| Error::Derived {
                    path: path.clone(),
                    kind: d.kind.clone(),
                    column: d.name.clone(),
                    message,
                };
                let rules = kinds
                    .get_mut(&d.kind)
                    .ok_or_else(|| err(format!("unknown kind; known kinds: {}", catalog_kinds(catalog))))?;
                if rules.schema.field_with_name(&d.name).is_ok() {
                    return Err(err("a column of that name already exists".into()));
                }
                // Derived columns see the statistics and the derived columns before them.
                let mut fields: Vec<Field> = rules.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                let lineage = fields.split_off(fields.len() - 2);
                let visible = Schema::new(fields.clone());
                let expr = compile(&ctx, &visible, &d.sql, Want::Number).map_err(err)?;
                fields.push(Field::new(&d.name, DataType::Float64, true));
                fields.extend(lineage);
                rules.schema = Arc::new(Schema::new(fields));
                rules.derived.push(Derived {
                    name: d.name.clone(),
                    expr,
                });
            }
        }
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut names = Vec::new();
        for (path, file) in &files {
            for def in &file.rule {
                let err = |message: String| Error::Rule {
                    path: path.clone(),
                    rule: def.name.clone(),
                    message,
                };
                if def.name.is_empty()
                    || !def
                        .name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(err("a rule name is made of a-z, 0-9 and _".into()));
                }
                if let Some(other) = seen.insert(def.name.clone(), path.clone()) {
                    return Err(err(format!("the name is already used in {}", other.display())));
                }
                names.push(def.name.clone());
                let silence = def.no_signal.is_some() || def.missed_heartbeats.is_some();
                let targets: Vec<String> = if def.kinds.is_empty() {
                    if !silence {
                        return Err(err(
                            "`kinds` is required (it may be omitted only by no_signal rules)".into()
                        ));
                    }
                    kinds.keys().cloned().collect()
                } else {
                    def.kinds.clone()
                };
                for kind in &targets {
                    let rules = kinds.get_mut(kind).ok_or_else(|| {
                        err(format!(
                            "unknown kind `{kind}`; known kinds: {}",
                            catalog_kinds(catalog)
                        ))
                    })?;
                    if silence {
                        // Counted in the kind's heartbeat when it declares a schedule; a kind
                        // without one falls back on `no_signal`, or is not watched by the rule.
                        let after = match (def.missed_heartbeats, catalog.schedule(kind), def.no_signal) {
                            (Some(0), _, _) => return Err(err("missed_heartbeats must be at least 1".into())),
                            (Some(n), Some(schedule), _) => schedule.heartbeat() * n,
                            (_, _, Some(after)) => after,
                            (Some(_), None, None) if def.kinds.is_empty() => continue,
                            (Some(_), None, None) => {
                                return Err(err(format!(
                                    "kind `{kind}` declares no schedule in the catalog to count heartbeats in; add `no_signal` for it"
                                )));
                            }
                            (None, _, None) => unreachable!("a silence rule has no_signal or missed_heartbeats"),
                        };
                        if def.condition.is_some()
                            || def.window.is_some()
                            || def.clear.is_some()
                            || def.value.is_some()
                            || def.eager
                        {
                            return Err(err(
                                "a no_signal rule has no window, condition, clear, value or eager: it raises when a sensor sends nothing for that long".into(),
                            ));
                        }
                        let after_ms = after.as_millis() as i64;
                        if after_ms < 1000 {
                            return Err(err("no_signal must be at least 1s".into()));
                        }
                        let message = Template::parse(&def.message, &|n| {
                            matches!(n, "sensor_id" | "kind" | "last_seen" | "silence")
                        })
                        .map_err(|m| {
                            err(format!(
                                "message: {m} (a no_signal message may use sensor_id, kind, last_seen, silence)"
                            ))
                        })?;
                        rules.silence_rules.push(SilenceRule {
                            name: def.name.clone(),
                            severity: def.severity,
                            after_ms,
                            condition_sql: format!("no record for {}", humantime::format_duration(after)),
                            message,
                        });
                        continue;
                    }
                    let window = def
                        .window
                        .as_deref()
                        .ok_or_else(|| err("`window` is required".into()))?;
                    let spec = specs.iter().position(|s| s.label == window).ok_or_else(|| {
                        err(format!(
                            "unknown window `{window}`; configured windows: {}",
                            specs.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    if !rules.keeps(spec) {
                        return Err(err(format!(
                            "kind `{kind}` keeps no `{window}` window (the `windows` of [schedule.{kind}] in the catalog)"
                        )));
                    }
                    let condition_sql = def
                        .condition
                        .clone()
                        .ok_or_else(|| err("`condition` is required".into()))?;
                    let schema = rules.schema.clone();
                    let at = |what: &str, m: String| err(format!("{what} (kind {kind}): {m}"));
                    let condition =
                        compile(&ctx, &schema, &condition_sql, Want::Boolean).map_err(|m| at("condition", m))?;
                    let optional = |sql: &Option<String>, want: Want, what: &str| {
                        sql.as_deref()
                            .map(|sql| compile(&ctx, &schema, sql, want))
                            .transpose()
                            .map_err(|m| at(what, m))
                    };
                    let clear = optional(&def.clear, Want::Boolean, "clear")?;
                    let value = optional(&def.value, Want::Number, "value")?;
                    let message = Template::parse(&def.message, &|n| {
                        n == "kind" || n == "value" || schema.field_with_name(n).is_ok()
                    })
                    .map_err(|m| at("message", m))?;
                    let eager = def
                        .eager
                        .then(|| eager_condition(&ctx, &schema, &rules.layout, &condition_sql))
                        .transpose()
                        .map_err(|m| at("condition", m))?;
                    if eager.is_some() {
                        rules.eager.push(rules.window_rules.len());
                    }
                    rules.window_rules.push(WindowRule {
                        name: def.name.clone(),
                        severity: def.severity,
                        spec,
                        condition_sql,
                        condition,
                        clear,
                        value,
                        message,
                        eager,
                    });
                }
                let _ = &def.description;
            }
        }
        Ok(RuleSet {
            kinds: kinds.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            files: files.into_iter().map(|(p, _)| p).collect(),
        })
    }

    /// The compiled rules of a kind; every kind of the catalog has an entry.
    pub fn kind(&self, kind: &str) -> Option<&Arc<KindRules>> {
        self.kinds.get(kind)
    }

    /// Every rule name, sorted.
    pub fn rule_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .kinds
            .values()
            .flat_map(|k| {
                k.window_rules
                    .iter()
                    .map(|r| r.name.clone())
                    .chain(k.silence_rules.iter().map(|r| r.name.clone()))
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The rule files read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

fn catalog_kinds(catalog: &Catalog) -> String {
    catalog
        .kinds()
        .iter()
        .map(|k| k.kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::PartitionWindows;
    use crate::spec::WindowConfig;

    #[test]
    fn sensor_silent_counts_missed_heartbeats_of_each_kind() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let catalog = Catalog::load(&root.join("schemas")).expect("shipped schemas");
        let specs = WindowConfig::default().specs().expect("specs");
        let rules = RuleSet::load(&root.join("rules"), &catalog, &specs).expect("shipped rules");
        let silent_after = |kind: &str| {
            let k = rules.kind(kind).expect("kind");
            let r = k
                .silence_rules
                .iter()
                .find(|r| r.name == "sensor_silent")
                .expect("sensor_silent");
            Duration::from_millis(r.after_ms as u64)
        };
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(silent_after("water_level"), minutes(15));
        assert_eq!(silent_after("parking_bay"), minutes(180));
        assert_eq!(silent_after("waste_bin"), minutes(18 * 60));
        for k in catalog.kinds() {
            let heartbeat = catalog
                .schedule(&k.kind)
                .expect("every shipped kind has a schedule")
                .heartbeat();
            assert_eq!(silent_after(&k.kind), heartbeat * 3, "{}", k.kind);
        }
    }

    #[test]
    fn the_embedded_rules_are_the_shipped_ones() {
        let catalog = Catalog::embedded().expect("the embedded schemas load");
        let specs = WindowConfig::default().specs().expect("default windows");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
        let shipped = RuleSet::load(&dir, &catalog, &specs).expect("the shipped rules load");
        let embedded = RuleSet::embedded(&catalog, &specs).expect("the embedded rules load");
        assert_eq!(embedded.rule_names(), shipped.rule_names());
        let names = |r: &RuleSet| {
            r.files()
                .iter()
                .map(|f| f.file_name().map(|n| n.to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&embedded), names(&shipped));
        assert!(embedded.files().iter().all(|f| f.starts_with(EMBEDDED_RULES_DIR)));
    }

    /// The shipped schemas in a folder of their own, with `edit` applied to catalog.toml.
    fn schemas_with(edit: impl Fn(String) -> String) -> (tempfile::TempDir, Catalog) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let dir = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(&shipped).expect("schemas") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let text = if path.ends_with("catalog.toml") {
                edit(text)
            } else {
                text
            };
            std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("write");
        }
        let catalog = Catalog::load(dir.path()).expect("catalog");
        (dir, catalog)
    }

    #[test]
    fn each_kind_keeps_the_windows_its_schedule_names() {
        let catalog = Catalog::embedded().expect("the embedded schemas load");
        let specs = WindowConfig::default().specs().expect("default windows");
        let rules = RuleSet::embedded(&catalog, &specs).expect("the embedded rules load");
        let kept = |kind: &str| -> Vec<&str> {
            let k = rules.kind(kind).expect("kind");
            specs
                .iter()
                .enumerate()
                .filter(|(s, _)| k.keeps(*s))
                .map(|(_, spec)| spec.label.as_str())
                .collect()
        };
        assert_eq!(kept("water_level"), ["1m", "15m", "1h", "1h_every_15m"], "no list: all");
        assert_eq!(kept("parking_bay"), ["1h"]);
        assert_eq!(kept("air_quality"), ["1h", "1h_every_15m"]);
        assert!(kept("waste_bin").is_empty());
        // A shape named but not configured is not kept; the others still are.
        let hourly = WindowConfig {
            windows: vec!["60m".into(), "5m".into()],
            ..WindowConfig::default()
        }
        .specs()
        .expect("specs");
        let (_dir, catalog) = schemas_with(|t| t.replace("windows = [\"15m\", \"1h\"]", "windows = [\"1h\", \"2h\"]"));
        let rules = RuleSet::empty(&catalog, &hourly).expect("rules");
        let noise = rules.kind("noise").expect("noise");
        assert!(
            noise.keeps(0) && !noise.keeps(1),
            "60m is the shape of 1h; 5m is not listed"
        );
        // A parking bay reading opens its hour only.
        let mut windows = PartitionWindows::new(
            "t".into(),
            0,
            "parking_bay",
            specs.clone().into(),
            &RuleSet::empty(&catalog, &specs).expect("rules"),
            0,
        )
        .expect("windows");
        let kind = catalog.kind("parking_bay").expect("kind").clone();
        let decoder = rade_schema::Decoder::new(Arc::new(catalog.clone()), kind, rade_schema::DecodeLimits::default());
        let json =
            r#"{"sensor_id":"pb-1","observed_at":1779998400000,"latitude":43.1,"longitude":5.9,"status":"occupied"}"#;
        windows.observe(
            &decoder.decode(Some(json.as_bytes()), 1_779_998_400_000).expect("valid"),
            0,
        );
        assert_eq!(windows.open_windows(), 1);
    }

    #[test]
    fn a_rule_on_a_window_its_kind_does_not_keep_and_a_bad_window_label_stop_loading() {
        let specs = WindowConfig::default().specs().expect("default windows");
        let (_dir, catalog) = schemas_with(|t| t);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("bays.toml"),
            "[[rule]]\nname = \"bay_churn\"\nkinds = [\"parking_bay\"]\nwindow = \"1m\"\nseverity = \"info\"\n\
             condition = \"records > 10\"\nmessage = \"m\"\n",
        )
        .expect("write");
        let err = RuleSet::load(dir.path(), &catalog, &specs)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("bays.toml")
                && err.contains("rule `bay_churn`")
                && err.contains("kind `parking_bay` keeps no `1m` window"),
            "{err}"
        );
        let (_dir, catalog) = schemas_with(|t| t.replace("windows = [\"1h\"]", "windows = [\"1hour\", \"fortnight\"]"));
        let err = RuleSet::empty(&catalog, &specs).expect_err("refused").to_string();
        assert!(err.contains("[schedule.") && err.contains("`fortnight`"), "{err}");
    }
}
