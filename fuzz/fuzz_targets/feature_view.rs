//! Fuzzes feature-view loading (`features::load_views`: metadata YAML, the SQL beside it, the
//! definition version): the input is split at its first NUL byte into `features/fuzz.yaml` and
//! `features/fuzz.sql` (no NUL: YAML only, beside a valid query). Loading must never panic, and
//! every problem must point at a line of the file it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

const SQL: &[u8] = b"SELECT customer_id, CAST('{{ as_of }}' AS TIMESTAMP) AS feature_ts, 1 AS f\nFROM raw.customers\n";

fuzz_target!(|data: &[u8]| {
    let (yaml, sql) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, SQL),
    };
    let dir = common::scratch_project();
    common::write(&dir, "features/fuzz.yaml", yaml);
    common::write(&dir, "features/fuzz.sql", sql);
    let mut diags = Vec::new();
    let views = nightjar::features::load_views(&dir, &mut diags);
    common::assert_positions_inside(
        &diags,
        &[("features/fuzz.yaml", yaml), ("features/fuzz.sql", sql)],
    );
    if diags.is_empty() {
        assert_eq!(views.len(), 1, "a view without problems is loaded");
    }
});
