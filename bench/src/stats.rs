//! Percentiles.

use serde_json::{Value, json};

/// p50, p99 and max of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Summary {
    /// Nearest-rank percentiles (with fewer than 100 values, p99 is the maximum).
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Summary {
            n: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }

    /// `p50 / p99 / max` in ms, for a table cell.
    pub(crate) fn cell(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        format!("{} / {} / {}", ms(self.p50), ms(self.p99), ms(self.max))
    }

    pub(crate) fn json(&self) -> Value {
        json!({ "n": self.n, "p50_ms": self.p50, "p99_ms": self.p99, "max_ms": self.max })
    }
}

/// A duration in ms with a precision that suits its size.
pub(crate) fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// `a / b`, or NaN when `b` is 0.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=100).map(f64::from));
        assert_eq!((s.n, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
        let s = Summary::of([3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p99, s.max), (2.0, 3.0, 3.0));
        assert_eq!(Summary::of([]).n, 0);
    }
}
