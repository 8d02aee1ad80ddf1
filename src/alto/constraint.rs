//! Cost constraints (RFC 7285 §11.3.2.3): `"<op> <value>"` with op one of `gt lt ge le eq`,
//! ANDed; RFC 8189 §4.1.1 adds an optional `[i]` prefix naming a position in
//! `multi-cost-types`.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
}

/// One parsed constraint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constraint {
    /// The `[i]` index of an RFC 8189 predicate; `None` for a plain RFC 7285 constraint.
    pub index: Option<usize>,
    pub op: Op,
    pub value: f64,
}

impl Constraint {
    /// Parses `"le 10"` or `"[1] lt 3.5"`. The number must be a JSON-style number
    /// (no `inf`, no `NaN`, no hex).
    pub fn parse(s: &str) -> Option<Constraint> {
        let mut words = s.split_whitespace();
        let mut first = words.next()?;
        let mut index = None;
        if let Some(inner) = first.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            index = Some(inner.parse().ok()?);
            first = words.next()?;
        }
        let op = match first {
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "ge" => Op::Ge,
            "le" => Op::Le,
            "eq" => Op::Eq,
            _ => return None,
        };
        let number = words.next()?;
        if words.next().is_some() || !is_json_number(number) {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        value.is_finite().then_some(Constraint { index, op, value })
    }

    /// Whether `cost` satisfies the constraint (IEEE 754 doubles, RFC 7285 §11.3.2.4).
    pub fn holds(&self, cost: f64) -> bool {
        match self.op {
            Op::Gt => cost > self.value,
            Op::Lt => cost < self.value,
            Op::Ge => cost >= self.value,
            Op::Le => cost <= self.value,
            Op::Eq => cost == self.value,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.index {
            write!(f, "[{i}] ")?;
        }
        let op = match self.op {
            Op::Gt => "gt",
            Op::Lt => "lt",
            Op::Ge => "ge",
            Op::Le => "le",
            Op::Eq => "eq",
        };
        write!(f, "{op} {}", self.value)
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` (RFC 8259 §6).
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Whether every constraint holds for `cost`; constraints with an `[i]` index are not
/// evaluated here (multi-cost answers are computed by the origin, never locally).
pub fn all_hold(constraints: &[Constraint], cost: f64) -> bool {
    constraints.iter().filter(|c| c.index.is_none()).all(|c| c.holds(cost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_evaluate() {
        let c = Constraint::parse("le 10").unwrap();
        assert_eq!(c, Constraint { index: None, op: Op::Le, value: 10.0 });
        assert!(c.holds(10.0) && !c.holds(10.5));
        assert!(Constraint::parse("gt -1.5e2").unwrap().holds(-100.0));
        assert_eq!(Constraint::parse("[1] lt 3").unwrap().index, Some(1));
        for bad in [
            "", "le", "le x", "lt 01", "eq inf", "eq NaN", "ne 3", "le 3 4", "[x] le 3", "[] le 3",
            "le 0x10", "le .5",
        ] {
            assert!(Constraint::parse(bad).is_none(), "{bad:?} should not parse");
        }
        assert!(Constraint::parse("  ge   0  ").is_some());
    }
}
