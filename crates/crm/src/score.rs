//! Scores with Pacemaker's ±INFINITY arithmetic.

use std::fmt;

/// A placement or ordering score. `INFINITY` is 1,000,000; sums saturate at ±INFINITY and
/// -INFINITY wins over +INFINITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Score(i64);

/// The value of INFINITY.
pub const INFINITY: i64 = 1_000_000;

impl Score {
    /// Zero.
    pub const ZERO: Score = Score(0);
    /// +INFINITY.
    pub const INF: Score = Score(INFINITY);
    /// -INFINITY.
    pub const NEG_INF: Score = Score(-INFINITY);

    /// A score from a number, clamped to ±INFINITY.
    pub fn new(value: i64) -> Score {
        Score(value.clamp(-INFINITY, INFINITY))
    }

    /// The numeric value (±1,000,000 for ±INFINITY).
    pub fn value(self) -> i64 {
        self.0
    }

    /// Whether this is +INFINITY.
    pub fn is_inf(self) -> bool {
        self.0 >= INFINITY
    }

    /// Whether this is -INFINITY.
    pub fn is_neg_inf(self) -> bool {
        self.0 <= -INFINITY
    }

    /// Pacemaker's addition: -INFINITY dominates, then +INFINITY, else a clamped sum.
    #[must_use]
    pub fn plus(self, other: Score) -> Score {
        if self.is_neg_inf() || other.is_neg_inf() {
            Score::NEG_INF
        } else if self.is_inf() || other.is_inf() {
            Score::INF
        } else {
            Score::new(self.0 + other.0)
        }
    }

    /// Parses `INFINITY`, `+INFINITY`, `-INFINITY`, `inf` spellings or an integer.
    pub fn parse(text: &str) -> Option<Score> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "infinity" | "+infinity" | "inf" | "+inf" => return Some(Score::INF),
            "-infinity" | "-inf" => return Some(Score::NEG_INF),
            // Node-health colours map to fixed scores by default.
            "red" => return Some(Score::NEG_INF),
            "yellow" | "green" => return Some(Score::ZERO),
            _ => {}
        }
        let t = t.strip_prefix('+').unwrap_or(t);
        if let Ok(v) = t.parse::<i64>() {
            return Some(Score::new(v));
        }
        // Pacemaker accepts a leading integer and ignores a fractional part.
        if let Ok(v) = t.parse::<f64>()
            && v.is_finite()
        {
            return Some(Score::new(v as i64));
        }
        None
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_inf() {
            f.write_str("INFINITY")
        } else if self.is_neg_inf() {
            f.write_str("-INFINITY")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_infinity_wins_over_positive() {
        assert_eq!(Score::INF.plus(Score::NEG_INF), Score::NEG_INF);
        assert_eq!(Score::new(5).plus(Score::INF), Score::INF);
        assert_eq!(Score::new(999_999).plus(Score::new(5)), Score::INF);
        assert_eq!(Score::parse("-INFINITY"), Some(Score::NEG_INF));
        assert_eq!(Score::parse("+100"), Some(Score::new(100)));
        assert_eq!(Score::parse("abc"), None);
    }
}
