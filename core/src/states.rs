//! The states of a task and of a run, and a task's kind and command type,
//! with the names the tables give them.

sql_enum! {
    /// `mtask.tasks.status`.
    pub enum Status {
        Scheduled = "scheduled",
        /// A non-transactional run is under way (its run row is committed).
        Running = "running",
        Paused = "paused",
        /// A one-shot task that ran, or a recurring one past its end.
        Done = "done",
        /// A one-shot task whose last attempt failed.
        Failed = "failed",
    }
}

sql_enum! {
    /// `mtask.tasks.kind`.
    pub enum Kind {
        Once = "once",
        Recurring = "recurring",
    }
}

sql_enum! {
    /// `mtask.tasks.command_type`: what the command text is.
    pub enum CommandType {
        /// SQL, run as the owner.
        Sql = "sql",
        /// An executable and its arguments, run without a shell.
        Program = "program",
        /// A channel: the task's payload is sent to it with pg_notify.
        Notify = "notify",
    }
}

sql_enum! {
    /// `mtask.runs.status` (and `mtask.tasks.last_status`).
    pub enum RunStatus {
        Succeeded = "succeeded",
        Failed = "failed",
        /// Failed because it ran past its timeout.
        Timeout = "timeout",
        /// Slots passed over without a run.
        Skipped = "skipped",
        /// A non-transactional run under way.
        Running = "running",
        /// A run whose worker stopped before it ended.
        Crashed = "crashed",
    }
}

sql_enum! {
    /// `mtask.runs.trigger`: why a run ran.
    pub enum Trigger {
        /// Its slot came.
        Schedule = "schedule",
        /// An earlier attempt for its slot failed.
        Retry = "retry",
        /// mtask.run_now() or CALL mtask.run() asked for it.
        Manual = "manual",
        /// It delivers an event to a listener.
        Event = "event",
        /// Its slot was missed (the server was down, the task paused, the
        /// workers busy) and is run late, as the missed-run policy says.
        CatchUp = "catch-up",
    }
}

impl RunStatus {
    /// Whether a run that ended so counts as a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Timeout | RunStatus::Crashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_sql_name() {
        for s in Status::ALL {
            assert_eq!(Status::from_sql(s.as_sql()), Some(*s));
        }
        for r in RunStatus::ALL {
            assert_eq!(RunStatus::from_sql(r.as_sql()), Some(*r));
        }
        assert_eq!(CommandType::from_sql("program"), Some(CommandType::Program));
        assert_eq!(Kind::from_sql("Once"), None);
        assert_eq!(RunStatus::Timeout.to_string(), "timeout");
    }

    #[test]
    fn failures_are_failed_timed_out_and_crashed_runs() {
        let failures: Vec<_> = RunStatus::ALL.iter().filter(|s| s.is_failure()).map(|s| s.as_sql()).collect();
        assert_eq!(failures, ["failed", "timeout", "crashed"]);
    }
}
