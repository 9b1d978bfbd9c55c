//! Units on the command line, as the contract spells them: byte counts (`16384`, `16KiB`,
//! `1m`), durations (`10s`, `500ms`, `2m`, shared by `load` and `run`) and CPU lists (`0,2-3`,
//! shared by `load --cpus`, `serve --cpus` and `run`). It only parses: whether a CPU exists is
//! for the code that pins, whether a duration is long enough for the command that uses it.

/// Parses `10s`, `500ms`, `2m` (humantime).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms, 2m)"))
}

/// Parses `16384`, `16k`, `16KiB`, `1m`, `1MiB`, `1g`, `1GiB` (binary multiples).
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
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use k, m or g)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// A parsed `--cpus` list. A newtype because clap reads a bare `Vec` as "many values".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// `0,2-3` → [0, 2, 3].
pub fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|e| format!("CPU {v:?}: {e}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (p(a)?, p(b)?);
                if a > b {
                    return Err(format!("CPU range {part} is backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(p(part)?),
        }
    }
    if out.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(CpuList(out))
}

#[cfg(test)]
mod tests {
    use super::{CpuList, parse_bytes, parse_cpus};

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("16384"), Ok(16384));
        assert_eq!(parse_bytes("16KiB"), Ok(16384));
        assert_eq!(parse_bytes("16k"), Ok(16384));
        assert_eq!(parse_bytes("1m"), Ok(1 << 20));
        assert!(parse_bytes("x").is_err());
        assert!(parse_bytes("12q").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0,2-3").unwrap(), CpuList(vec![0, 2, 3]));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }
}
