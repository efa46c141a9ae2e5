//! Fuzzes the promotion-gate language (`src/models/promotion.rs`, compiled here on its own: it
//! depends on nothing of nightjar's): any input must parse or fail with an offset inside the
//! text, never panic; a parsed gate must print to a canonical form that parses back to the
//! same gate, and must evaluate without panicking whatever the metric values.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/models/promotion.rs"]
#[allow(dead_code)]
mod promotion;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match promotion::parse(text) {
        Err(e) => assert!(e.offset <= text.chars().count(), "offset {} past the end", e.offset),
        Ok(expr) => {
            let canonical = expr.to_string();
            let again = promotion::parse(&canonical)
                .unwrap_or_else(|e| panic!("canonical form `{canonical}` does not parse: {e}"));
            assert!(again == expr, "`{text}` → `{canonical}` changes meaning");
            let _ = expr.check_metrics(&["auc", "rmse", "r2"]);
            // Values derived from the input, including NaN, infinities and missing ones.
            let values = [Some(0.5), None, Some(f64::NAN), Some(f64::INFINITY), Some(-0.0), Some(1e300)];
            let lookup = |v: &promotion::Variable| values[(v.metric.len() + v.alias.as_ref().map_or(0, String::len)) % values.len()];
            let _ = expr.evaluate(&lookup);
        }
    }
});
