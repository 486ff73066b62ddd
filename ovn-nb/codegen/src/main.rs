//! `ovn-nb-codegen [--check]`: writes (or, with `--check`, verifies) the generated modules of
//! `ovn-nb` from `schemas/`. Run from anywhere in the workspace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn workspace_root() -> PathBuf {
    // ovn-nb/codegen → the workspace root two levels up.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = workspace_root();
    let mut stale = false;
    for t in ovn_nb_codegen::TARGETS {
        let schema = match std::fs::read_to_string(root.join(t.schema)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ovn-nb-codegen: cannot read {}: {e}", t.schema);
                return ExitCode::FAILURE;
            }
        };
        let code = match ovn_nb_codegen::generate(&schema, t.schema) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ovn-nb-codegen: {}: {e}", t.schema);
                return ExitCode::FAILURE;
            }
        };
        let out = root.join(t.output);
        let current = std::fs::read_to_string(&out).unwrap_or_default();
        if current == code {
            continue;
        }
        if check {
            eprintln!("ovn-nb-codegen: {} is stale", t.output);
            stale = true;
        } else if let Err(e) = std::fs::write(&out, code) {
            eprintln!("ovn-nb-codegen: cannot write {}: {e}", t.output);
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", t.output);
        }
    }
    if stale {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
