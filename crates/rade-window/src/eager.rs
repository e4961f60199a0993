//! Eager rules: a condition that, once it holds of the readings a window has so far, holds
//! whatever else the window receives, so its alert can be raised at the reading that made it
//! true instead of when the window closes (a flood gauge's `height_max >= 250`: a maximum only
//! grows).
//!
//! Only such conditions may be eager, and rade checks it when the rules load: comparisons of
//! a statistic that only grows (`records`, `<x>_count`, `<x>_max`) with `>` or `>=`, or of one
//! that only shrinks (`<x>_min`) with `<` or `<=`, against a number, joined by AND and OR.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use arrow::datatypes::DataType;

/// A statistic of an open window that only moves one way as readings arrive; the index is
/// the measurement's position in the kind's layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Quantity {
    Records,
    Count(usize),
    Max(usize),
    Min(usize),
}

/// A condition that stays true once true, over the statistics of one open window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Monotone {
    /// `quantity > bound` (or `>=`) for the growing ones, `quantity < bound` (or `<=`) for `Min`.
    Cmp {
        quantity: Quantity,
        bound: f64,
        strict: bool,
    },
    And(Box<Monotone>, Box<Monotone>),
    Or(Box<Monotone>, Box<Monotone>),
}

impl Monotone {
    /// Reads `expr` (a rule's condition, as parsed) over a kind whose measurements are
    /// `measures`; the error says which part is not monotone.
    pub(crate) fn parse(expr: &Expr, measures: &[&str]) -> Result<Monotone, String> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
            return Err(not_monotone(expr));
        };
        match op {
            Operator::And | Operator::Or => {
                let (l, r) = (Self::parse(left, measures)?, Self::parse(right, measures)?);
                Ok(if *op == Operator::And {
                    Monotone::And(Box::new(l), Box::new(r))
                } else {
                    Monotone::Or(Box::new(l), Box::new(r))
                })
            }
            Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq => {
                // Column on the left: `250 <= height_max` reads as `height_max >= 250`.
                let (column, op, bound) = match (column(left), number(right), column(right), number(left)) {
                    (Some(c), Some(n), _, _) => (c, *op, n),
                    (_, _, Some(c), Some(n)) => (c, op.swap().unwrap_or(*op), n),
                    _ => return Err(not_monotone(expr)),
                };
                let quantity = quantity(column, measures).ok_or_else(|| not_monotone(expr))?;
                let grows = !matches!(quantity, Quantity::Min(_));
                let fits = match op {
                    Operator::Gt | Operator::GtEq => grows,
                    _ => !grows,
                };
                if !fits {
                    return Err(not_monotone(expr));
                }
                Ok(Monotone::Cmp {
                    quantity,
                    bound,
                    strict: matches!(op, Operator::Gt | Operator::Lt),
                })
            }
            _ => Err(not_monotone(expr)),
        }
    }

    /// Whether the condition holds, `value` giving each statistic of the window so far (an
    /// empty maximum is -inf, an empty minimum +inf).
    pub(crate) fn holds(&self, value: &impl Fn(Quantity) -> f64) -> bool {
        match self {
            Monotone::Cmp {
                quantity,
                bound,
                strict,
            } => {
                let v = value(*quantity);
                match (quantity, strict) {
                    (Quantity::Min(_), true) => v < *bound,
                    (Quantity::Min(_), false) => v <= *bound,
                    (_, true) => v > *bound,
                    (_, false) => v >= *bound,
                }
            }
            Monotone::And(l, r) => l.holds(value) && r.holds(value),
            Monotone::Or(l, r) => l.holds(value) || r.holds(value),
        }
    }
}

fn not_monotone(expr: &Expr) -> String {
    format!(
        "eager: `{expr}` can turn false as more readings arrive; an eager condition compares \
         records, <x>_count or <x>_max with > or >=, or <x>_min with < or <=, to a number, \
         joined by AND and OR"
    )
}

fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Float64).ok()? {
            ScalarValue::Float64(Some(x)) if x.is_finite() => Some(x),
            _ => None,
        },
        Expr::Negative(inner) => number(inner).map(|x| -x),
        _ => None,
    }
}

fn quantity(column: &str, measures: &[&str]) -> Option<Quantity> {
    if column == "records" {
        return Some(Quantity::Records);
    }
    let (name, stat) = column.rsplit_once('_')?;
    let i = measures.iter().position(|m| *m == name)?;
    match stat {
        "count" => Some(Quantity::Count(i)),
        "max" => Some(Quantity::Max(i)),
        "min" => Some(Quantity::Min(i)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::DFSchema;
    use datafusion::prelude::SessionContext;

    fn parse(sql: &str) -> Result<Monotone, String> {
        let fields = ["records", "height_max", "height_min", "height_mean", "height_count"];
        let schema = arrow::datatypes::Schema::new(
            fields
                .iter()
                .map(|f| arrow::datatypes::Field::new(*f, DataType::Float64, true))
                .collect::<Vec<_>>(),
        );
        let df = DFSchema::try_from(schema).expect("schema");
        let expr = SessionContext::new().parse_sql_expr(sql, &df).expect("sql");
        Monotone::parse(&expr, &["height"])
    }

    #[test]
    fn conditions_that_only_grow_true_are_eager_and_others_are_refused() {
        let at = |max: f64, min: f64, records: f64| {
            move |q: Quantity| match q {
                Quantity::Max(_) => max,
                Quantity::Min(_) => min,
                Quantity::Records | Quantity::Count(_) => records,
            }
        };
        let flood = parse("height_max >= 250").expect("eager");
        assert!(!flood.holds(&at(249.9, 0.0, 3.0)));
        assert!(flood.holds(&at(250.0, 0.0, 3.0)));
        assert!(
            !flood.holds(&at(f64::NEG_INFINITY, f64::INFINITY, 0.0)),
            "an empty window"
        );
        let swapped = parse("250 < height_max").expect("eager");
        assert!(!swapped.holds(&at(250.0, 0.0, 1.0)) && swapped.holds(&at(250.5, 0.0, 1.0)));
        let both = parse("(height_max >= 250 AND records >= 3) OR height_min <= -1").expect("eager");
        assert!(!both.holds(&at(300.0, 0.0, 2.0)));
        assert!(both.holds(&at(300.0, 0.0, 3.0)));
        assert!(both.holds(&at(0.0, -2.0, 1.0)));
        for sql in [
            "height_mean >= 250",
            "height_max < 250",
            "height_min >= 0",
            "NOT height_max < 250",
            "height_max >= height_min",
            "height_max >= 250 AND height_mean > 1",
        ] {
            let err = parse(sql).expect_err(sql);
            assert!(err.starts_with("eager: `"), "{sql}: {err}");
        }
    }
}
