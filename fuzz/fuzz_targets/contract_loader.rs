//! Fuzzes the ODCS contract loader (`contracts::parse_contract`): any text parses into a
//! contract or fails with diagnostics at lines of the file, never a panic; the row-level rules
//! of a contract that parses compile to SQL that DataFusion's parser accepts (whatever the
//! column names and values: quoting must hold).
#![no_main]

use std::path::Path;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)] // scratch_project and write are for the targets that write project files
mod common;

const FILE: &str = "contracts/fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match nightjar::contracts::parse_contract(Path::new(FILE), text) {
        Err(diags) => {
            assert!(
                !diags.is_empty(),
                "a failed parse reports at least one problem"
            );
            common::assert_positions_inside(&diags, &[(FILE, data)]);
        }
        Ok(contract) => {
            for object in &contract.objects {
                let Some(predicate) = nightjar::contracts::row_failure_predicate(object) else {
                    continue;
                };
                let parsed = Parser::new(&GenericDialect {})
                    .try_with_sql(&predicate)
                    .and_then(|mut p| p.parse_expr());
                if let Err(e) = parsed {
                    panic!(
                        "object `{}`: compiled predicate does not parse: {e}\n{predicate}",
                        object.name
                    );
                }
            }
        }
    }
});
