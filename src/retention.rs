//! Which runs are recorded in `mtask.runs`: the `log_runs` policy, set by
//! `mtask.log_runs` and overridden per task. (How long they are kept is the
//! purge's, in `worker/store.rs`.)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRuns {
    /// Every run, and the slots passed over.
    All,
    /// Runs that did not succeed: failed, timed out, crashed.
    Failures,
    /// No run is recorded; the task's own last_* columns still say how the
    /// last one went.
    None,
}

impl LogRuns {
    pub fn from_sql(text: &str) -> Option<LogRuns> {
        match text {
            "all" => Some(LogRuns::All),
            "failures" => Some(LogRuns::Failures),
            "none" => Some(LogRuns::None),
            _ => None,
        }
    }

    /// Whether a run that ended with `status` (a runs.status) is recorded.
    pub fn records(self, status: &str) -> bool {
        match self {
            LogRuns::All => true,
            LogRuns::Failures => !matches!(status, "succeeded" | "skipped"),
            LogRuns::None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogRuns;

    #[test]
    fn each_policy_records_what_it_says() {
        let statuses = ["succeeded", "failed", "timeout", "crashed", "skipped"];
        let recorded = |p: LogRuns| statuses.iter().filter(|s| p.records(s)).copied().collect::<Vec<_>>();
        assert_eq!(recorded(LogRuns::All), statuses);
        assert_eq!(recorded(LogRuns::Failures), ["failed", "timeout", "crashed"]);
        assert!(recorded(LogRuns::None).is_empty());
    }

    #[test]
    fn reads_the_sql_names_only() {
        assert_eq!(LogRuns::from_sql("failures"), Some(LogRuns::Failures));
        assert_eq!(LogRuns::from_sql("none"), Some(LogRuns::None));
        assert_eq!(LogRuns::from_sql("All"), None);
    }
}
