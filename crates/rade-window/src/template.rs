use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimestampMillisecondType};

/// A message template: text with `{column}` placeholders, checked when the rules load.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Name(String),
}

impl Template {
    /// Parses `text`; every placeholder must satisfy `known`. `{{` and `}}` are literal braces.
    pub(crate) fn parse(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    if !known(&name) {
                        return Err(format!("unknown placeholder `{{{name}}}`"));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Name(name));
                }
                '}' => return Err("a lone `}` (write `}}` for a brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template { parts })
    }

    /// Fills the template; `lookup` gives the text of a placeholder.
    pub(crate) fn render(&self, lookup: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Name(n) => out.push_str(&lookup(n)),
            }
        }
        out
    }
}

/// The text of one cell for a message: numbers with at most two decimals, times in RFC 3339.
pub(crate) fn cell(batch: &RecordBatch, column: &str, row: usize) -> String {
    let Some(a) = batch.column_by_name(column) else {
        return String::new();
    };
    if a.is_null(row) {
        return "n/a".into();
    }
    match a.data_type() {
        DataType::Float64 => number(a.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Utf8 => a.as_string::<i32>().value(row).to_owned(),
        DataType::Timestamp(_, _) => rfc3339(a.as_primitive::<TimestampMillisecondType>().value(row)),
        _ => arrow::util::display::array_value_to_string(a, row).unwrap_or_default(),
    }
}

pub(crate) fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_checked_and_filled() {
        let t = Template::parse("{sensor_id} at {height_max} cm {{ok}}", &|n| n != "nope").expect("valid");
        assert_eq!(
            t.render(&|n| if n == "sensor_id" { "g1".into() } else { "250".into() }),
            "g1 at 250 cm {ok}"
        );
        assert!(Template::parse("{nope}", &|n| n != "nope").is_err());
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(250.0), "250");
        assert_eq!(number(0.123), "0.12");
    }
}
