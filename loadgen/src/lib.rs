//! `loadgen`: a Lambda-aware load generator and the function simulator it is tested against.
//!
//! The binary is a thin wrapper around [`run()`], so integration tests run the real entry point in
//! process. The load generator is built in layers, each usable and testable alone, and each
//! importing only the layers below it (checked by a test in this file):
//!
//! 1. [`cli`]: the flags; [`command`](mod@command): what `loadgen run` and `loadgen merge` do with
//!    them (the only code that sees the command line).
//! 2. [`scenario`]: the scenario file format and command-line overrides, as plain serde structs.
//! 3. [`plan`]: a scenario validated and resolved: target, load profile, payloads, thresholds.
//! 4. [`run`](mod@run): the engine; it takes a [`plan::Plan`] and emits intervals to sinks.
//! 5. [`report`]: the sinks (`.hlog`, progress, abort on fail) and the report outputs;
//!    [`merge`](mod@merge) reads `.hlog` files back into the same measurements.
//! 6. [`model`]: the value types they share (outcomes, profiles, samples, measurements), and
//!    [`cost`]: Lambda prices and what a run's `REPORT` lines cost at them.
//!
//! Beside them: [`metrics`] (Prometheus), [`simulate`] (the function simulator), [`store`]
//! (where outputs go: a local directory or S3) and `sqs` (the SQS calls of asynchronous
//! invocations' destination records).

pub mod cli;
pub mod command;
pub mod cost;
mod error;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod report;
pub mod run;
pub mod scenario;
pub mod simulate;
mod sqs;
pub mod store;
mod timer;

use std::process::ExitCode;

pub use cli::Cli;
pub use error::Error;

/// Runs the subcommand `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Simulate(args) => simulate::run(args).await,
        cli::Command::Run(args) => command::run(*args).await,
        cli::Command::Merge(args) => command::merge(args).await,
        cli::Command::Sweep(args) => command::sweep(*args).await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The load generator's layers, lowest first, with the source paths of each (relative to
    /// `src/`). A file may import its own layer and the layers listed before it, and nothing
    /// else of the load generator.
    const LAYERS: [(&str, &[&str]); 6] = [
        (
            "model",
            &[
                "model.rs",
                "cost.rs",
                "run/outcome.rs",
                "run/schedule.rs",
                "run/stats.rs",
                "run/mix.rs",
            ],
        ),
        ("scenario", &["scenario/"]),
        ("plan", &["plan/"]),
        ("run", &["run/", "metrics/"]),
        ("report", &["report/", "merge.rs"]),
        ("command", &["command.rs", "cli.rs"]),
    ];

    /// The layer a `crate::…` path belongs to, or `None` for modules outside the layering
    /// (`Error`, `simulate`).
    fn layer_of_module(module: &str) -> Option<usize> {
        let layer = match module {
            "model" | "cost" => "model",
            "scenario" => "scenario",
            "plan" => "plan",
            "run" | "metrics" => "run",
            "report" | "merge" => "report",
            "command" | "cli" => "command",
            _ => return None,
        };
        LAYERS.iter().position(|(name, _)| *name == layer)
    }

    fn layer_of_file(file: &str) -> Option<usize> {
        // The most specific path wins (`run/stats.rs` is the model, `run/engine.rs` the engine).
        LAYERS
            .iter()
            .enumerate()
            .flat_map(|(i, (_, paths))| paths.iter().map(move |p| (i, *p)))
            .filter(|(_, p)| file == *p || (p.ends_with('/') && file.starts_with(p)))
            .max_by_key(|(_, p)| p.len())
            .map(|(i, _)| i)
    }

    fn files(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    /// Every `crate::MODULE` a file's code names (test modules included: they may build values
    /// of the layers below, but not reach up either).
    fn imports(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                let after = &rest[at + "crate::".len()..];
                let word = |text: &str| {
                    let end = text
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(text.len());
                    text[..end].to_owned()
                };
                let module = word(after);
                let rest_of_path = &after[module.len()..];
                // The model's files live under run/: `crate::run::stats` is the model.
                let inner = rest_of_path.strip_prefix("::").map(word);
                let is_model_file = module == "run"
                    && matches!(
                        inner.as_deref(),
                        Some("outcome" | "schedule" | "stats" | "mix")
                    );
                found.push(if is_model_file {
                    "model".to_owned()
                } else {
                    module
                });
                rest = rest_of_path;
            }
            // `super::` from a file's own module stays in its layer; sibling imports of run's
            // engine files are checked through the file paths below.
            for (sibling, module) in [
                ("super::engine", "run"),
                ("super::schedule", "model"),
                ("super::stats", "model"),
                ("super::outcome", "model"),
                ("super::mix", "model"),
            ] {
                if line.contains(sibling) {
                    found.push(module.to_owned());
                }
            }
        }
        found
    }

    #[test]
    fn layers_import_only_downwards() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&root, &root, &mut all);
        let mut violations = Vec::new();
        for file in &all {
            let Some(own) = layer_of_file(file) else {
                continue;
            };
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            for module in imports(&text) {
                if let Some(layer) = layer_of_module(&module)
                    && layer > own
                {
                    violations.push(format!(
                        "{file} ({}) imports crate::{module} ({})",
                        LAYERS[own].0, LAYERS[layer].0
                    ));
                }
            }
        }
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn the_checker_sees_an_upward_import() {
        assert_eq!(layer_of_file("run/stats.rs"), Some(0));
        assert_eq!(layer_of_file("run/engine.rs"), Some(3));
        assert_eq!(layer_of_file("simulate/http.rs"), None);
        let text = "use crate::cli::RunArgs;\n// crate::report in a comment\nuse super::engine::X;\n\
                    use crate::run::stats::Sample;";
        assert_eq!(imports(text), ["cli", "run", "model"]);
    }
}
