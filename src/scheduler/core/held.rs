//! A task's spec as the core holds it.
//!
//! A queued task's spec is read by matching and launching, so it is held parsed. Once the
//! task is launched, nothing reads it again unless the attempt is lost and the task
//! relaunched (or killed, for its grace period): it is then held packed, as its JSON text,
//! and parsed again when needed. A parsed spec with its strings takes about 500 bytes, its
//! JSON about 60 for a plain command; 100,000 running tasks held ~50 MB of parsed specs.

use crate::task::TaskSpec;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum HeldSpec {
    Parsed(Arc<TaskSpec>),
    Packed(Box<str>),
}

impl HeldSpec {
    /// The spec, parsed again if it is packed. `Err` names what was wrong with the packed
    /// text (it is this process's own serialization, so that would be a bug).
    pub(super) fn get(&self) -> Result<Arc<TaskSpec>, String> {
        match self {
            HeldSpec::Parsed(s) => Ok(s.clone()),
            HeldSpec::Packed(json) => serde_json::from_str(json)
                .map(Arc::new)
                .map_err(|e| format!("the held spec does not parse: {e}")),
        }
    }

    /// Holds it packed. A spec that does not serialize (none does: its maps have string keys)
    /// stays parsed.
    pub(super) fn pack(&mut self) {
        if let HeldSpec::Parsed(s) = self {
            if let Ok(json) = serde_json::to_string(&**s) {
                *self = HeldSpec::Packed(json.into_boxed_str());
            }
        }
    }

    #[cfg(test)]
    pub(super) fn is_parsed(&self) -> bool {
        matches!(self, HeldSpec::Parsed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Command, SandboxFile};

    #[test]
    fn a_packed_spec_parses_back_to_the_same_spec() {
        let mut spec = TaskSpec::shell("airflow tasks run dag task 2026-12-06 --local");
        spec.name = Some("dag.task".into());
        spec.cpus = Some(0.25);
        spec.mem = Some(1536.5);
        spec.kill_grace_period = Some(2.75);
        spec.retries = Some(3);
        spec.env.insert("AIRFLOW__CORE__X".into(), "1".into());
        spec.secret_env.insert("PW".into(), "hunter2".into());
        spec.files.push(SandboxFile {
            path: "conf/a.txt".into(),
            content: "secret".into(),
        });
        spec.executor_config = Some(serde_json::json!({"cpus": 0.25, "mem_limit": "1536m"}));
        let spec = Arc::new(spec);
        let mut held = HeldSpec::Parsed(spec.clone());
        held.pack();
        assert!(!held.is_parsed());
        let HeldSpec::Packed(json) = &held else {
            unreachable!()
        };
        assert!(json.len() < 400, "{json}");
        assert_eq!(*held.get().unwrap(), *spec);
        let argv = TaskSpec {
            command: Some(Command::Argv(vec!["echo".into(), "a b".into()])),
            ..TaskSpec::default()
        };
        let mut held = HeldSpec::Parsed(Arc::new(argv.clone()));
        held.pack();
        assert_eq!(*held.get().unwrap(), argv);
    }

    #[test]
    fn a_packed_spec_that_does_not_parse_says_so() {
        let held = HeldSpec::Packed("{\"cpus\": \"many\"}".into());
        let e = held.get().unwrap_err();
        assert!(e.contains("the held spec does not parse"), "{e}");
    }
}
