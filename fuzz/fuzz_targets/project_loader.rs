//! Fuzzes the project and pipeline loader (`spec::load_project`, then `plan::compile` for every
//! pipeline that loads): the input becomes a pipeline file beside a valid nightjar.yaml, or
//! nightjar.yaml beside a valid pipeline (chosen by the first byte). Whatever the bytes, loading
//! must return a project or diagnostics, never panic, and every diagnostic must point at a line
//! of the file it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::spec::{LoadOptions, load_project};

mod common;

const CONFIG: &[u8] = b"version: 1\nname: fuzz\nstorage:\n  root: file://./warehouse\n";
const PIPELINE: &[u8] = b"version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n  - id: b\n    kind: sql\n    output: s.b\n    sql: SELECT x FROM s.a\n";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let (config, pipeline) = if selector % 2 == 0 {
        (CONFIG, input)
    } else {
        (input, PIPELINE)
    };
    let dir = common::scratch_project();
    common::write(&dir, "nightjar.yaml", config);
    common::write(&dir, "pipelines/fuzz.yaml", pipeline);
    let ds = chrono::NaiveDate::from_ymd_opt(2025, 5, 1).expect("date");
    let files: [(&str, &[u8]); 2] = [("nightjar.yaml", config), ("pipelines/fuzz.yaml", pipeline)];
    match load_project(&dir, &LoadOptions::for_day(ds)) {
        Err(diags) => {
            assert!(
                !diags.is_empty(),
                "a failed load reports at least one problem"
            );
            common::assert_positions_inside(&diags, &files);
        }
        Ok(project) => {
            for p in &project.pipelines {
                if let Err(diags) = nightjar::plan::compile(&project, &p.name) {
                    common::assert_positions_inside(&diags, &files);
                }
            }
        }
    }
});
