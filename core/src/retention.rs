//! Which runs are recorded in `mtask.runs`: the `log_runs` policy, set by
//! `mtask.log_runs` and overridden per task. (How long they are kept is the
//! purge's: `src/worker/retention.rs`.)

use crate::states::RunStatus;

sql_enum! {
    pub enum LogRuns {
        /// Every run, and the slots passed over.
        All = "all",
        /// Runs that did not succeed: failed, timed out, crashed.
        Failures = "failures",
        /// No run is recorded; the task's own last_* columns still say how
        /// the last one went.
        None = "none",
    }
}

impl LogRuns {
    /// Whether a run that ended with `status` is recorded.
    pub fn records(self, status: RunStatus) -> bool {
        match self {
            LogRuns::All => true,
            LogRuns::Failures => status.is_failure(),
            LogRuns::None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogRuns;
    use crate::states::RunStatus::{self, *};

    #[test]
    fn each_policy_records_what_it_says() {
        let statuses = [Succeeded, Failed, Timeout, Crashed, Skipped];
        let recorded = |p: LogRuns| statuses.iter().filter(|s| p.records(**s)).copied().collect::<Vec<RunStatus>>();
        assert_eq!(recorded(LogRuns::All), statuses);
        assert_eq!(recorded(LogRuns::Failures), [Failed, Timeout, Crashed]);
        assert!(recorded(LogRuns::None).is_empty());
    }

    #[test]
    fn reads_the_sql_names_only() {
        assert_eq!(LogRuns::from_sql("failures"), Some(LogRuns::Failures));
        assert_eq!(LogRuns::from_sql("none"), Some(LogRuns::None));
        assert_eq!(LogRuns::from_sql("All"), None);
    }
}
