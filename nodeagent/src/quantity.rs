//! Kubernetes resource quantities (`128Mi`, `500m`, `1.5`, `2G`, `1e3`).
//!
//! A quantity is a decimal number with an optional suffix: binary (`Ki`,
//! `Mi`, `Gi`, `Ti`, `Pi`, `Ei`), decimal (`m`, `k`, `M`, `G`, `T`, `P`,
//! `E`) or an exponent (`e3`). Memory is read as bytes, CPU as millicores;
//! see "Resource units in Kubernetes" in the Kubernetes docs.

/// A quantity that does not parse; holds its text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// The quantity's value times `scale`, rounded up (as Kubernetes rounds).
fn value(q: &str, scale: f64) -> Result<u64, QuantityError> {
    let bad = || QuantityError(q.to_string());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| bad())?;
            10f64.powi(exp)
        }
        _ => return Err(bad()),
    };
    let v = n * mult * scale;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v.ceil() as u64)
}

/// A memory or storage quantity in bytes.
pub fn bytes(q: &str) -> Result<u64, QuantityError> {
    value(q, 1.0)
}

/// A CPU quantity in thousandths of a core.
pub fn millicores(q: &str) -> Result<u64, QuantityError> {
    value(q, 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_forms() {
        assert_eq!(bytes("128Mi"), Ok(128 << 20));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("1e3"), Ok(1000));
        assert_eq!(bytes("100"), Ok(100));
        assert_eq!(millicores("500m"), Ok(500));
        assert_eq!(millicores("1.5"), Ok(1500));
        assert_eq!(millicores("2"), Ok(2000));
        assert!(bytes("12Q").is_err());
        assert!(bytes("").is_err());
        assert!(bytes("-1").is_err());
    }
}
