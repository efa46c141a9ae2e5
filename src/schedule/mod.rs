//! Cron expressions for pipeline schedules. The scheduler itself (leases, catch-up,
//! backfills) is not built yet; today `schedule:` is parsed and checked by `validate`.

use std::str::FromStr;

/// Parses a 5-field crontab expression, the `cron` crate's 6/7-field form (with seconds),
/// or a shortcut (`@daily`, `@hourly`, `@weekly`, `@monthly`, `@yearly`).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let expr = expr.trim();
    let normalized = match expr {
        "@yearly" | "@annually" => "0 0 0 1 1 *".to_string(),
        "@monthly" => "0 0 0 1 * *".to_string(),
        "@weekly" => "0 0 0 * * Sun".to_string(),
        "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
        "@hourly" => "0 0 * * * *".to_string(),
        _ if expr.split_whitespace().count() == 5 => format!("0 {expr}"),
        _ => expr.to_string(),
    };
    cron::Schedule::from_str(&normalized).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_six_field_and_shortcuts() {
        assert!(parse_cron("30 2 * * *").is_ok());
        assert!(parse_cron("0 30 2 * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        assert!(parse_cron("61 2 * * *").is_err());
        assert!(parse_cron("every night").is_err());
    }
}
