//! Units on the command line, as the contract spells them: byte counts (`16384`, `16KiB`,
//! `1m`). Durations and CPU lists live with `load`, their only user.

/// Parses `16384`, `16k`, `16KiB`, `1m`, `1MiB` (binary multiples).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count (e.g. 16384 or 16KiB)"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use k or m)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("16384"), Ok(16384));
        assert_eq!(parse_bytes("16KiB"), Ok(16384));
        assert_eq!(parse_bytes("16k"), Ok(16384));
        assert_eq!(parse_bytes("1m"), Ok(1 << 20));
        assert!(parse_bytes("x").is_err());
        assert!(parse_bytes("12q").is_err());
    }
}
