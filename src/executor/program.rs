//! Runs a 'program' task: an executable and its arguments, split into words
//! as a POSIX shell splits them (quotes and backslashes) but with no shell in
//! between, so nothing in the text is expanded or interpreted; a task that
//! wants a shell says so (`sh -c '...'`). The program runs as the server's
//! OS user, in the data directory, as `COPY ... PROGRAM` does.
//!
//! It runs in a process group of its own, so that a timeout, a cancel or a
//! shutdown kills it with every child it started. Its stdout and stderr are
//! read as they come (a program that prints more than a pipe holds must not
//! stall) and kept up to `mtask.program_output_limit` bytes each.

use super::{Outcome, ProgramOutput};
use crate::guc;
use crate::report::Failure;
use mtask_core::states::RunStatus;
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The words of a program command, or why it cannot be split.
pub fn split(command: &str) -> Result<Vec<String>, String> {
    match shlex::split(command) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => Err("the program command is empty".into()),
        None => Err("the program command has an unclosed quote or a trailing backslash".into()),
    }
}

/// What a program printed on one stream: the first `limit` bytes, and how
/// many there were in all.
struct Capture {
    kept: Vec<u8>,
    total: usize,
    limit: usize,
}

impl Capture {
    fn take(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.total += bytes.len();
    }

    /// As text for the run record: NUL bytes, which text cannot hold, and
    /// invalid UTF-8 replaced, with a note when it was cut.
    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).replace('\0', "\u{FFFD}");
        if self.total > self.kept.len() {
            text.push_str(&format!("\n[{} more bytes not kept]", self.total - self.kept.len()));
        }
        text
    }
}

/// Why a program was stopped before it ended by itself.
enum Ending {
    Timeout,
    Cancel,
}

/// A started program's process group, killed if it is still there when
/// this goes, should anything unwind through the wait.
struct Group {
    child: Child,
    done: bool,
}

impl Group {
    fn kill(&mut self) {
        // The child leads its group, so -pid reaches its children too.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.done {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` with `stdin` as its standard input (none if None),
/// cancelled (its group killed) after `timeout_ms` if given. Call outside a
/// transaction: it may take as long as the program does.
pub fn run(command: &str, stdin: Option<&str>, timeout_ms: Option<i32>) -> Outcome {
    let words = match split(command) {
        Ok(words) => words,
        Err(why) => return Outcome::failed(Failure::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, why)),
    };
    let mut command = Command::new(&words[0]);
    let input = if stdin.is_some() { Stdio::piped() } else { Stdio::null() };
    command.args(&words[1..]).stdin(input).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // A worker that dies without unwinding (an immediate shutdown's SIGQUIT,
    // a crash) takes the program with it.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command.spawn();
    let mut group = match child {
        Ok(child) => Group { child, done: false },
        Err(e) => {
            let why = format!("could not run program \"{}\": {e}", words[0]);
            return Outcome::failed(Failure::new(PgSqlErrorCode::ERRCODE_SYSTEM_ERROR, why));
        }
    };
    // The payload is written by a thread of its own, which calls nothing of
    // Postgres: a program may read it slowly, or not at all, while this one
    // reads its output. The thread ends when the pipe's other end closes
    // (EPIPE: backends ignore SIGPIPE), which may be after the program, if a
    // child it left behind holds the pipe; so nothing waits for it.
    if let (Some(mut pipe), Some(text)) = (group.child.stdin.take(), stdin) {
        let bytes = text.as_bytes().to_vec();
        // Started with every signal blocked, so that the server's signals
        // (cancel, shutdown) keep going to the backend's own thread.
        unsafe {
            let (mut all, mut before) = (std::mem::zeroed(), std::mem::zeroed());
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut before);
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut pipe, &bytes);
            });
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        }
    }
    let limit = guc::program_output_limit();
    let mut out = Capture { kept: Vec::new(), total: 0, limit };
    let mut err = Capture { kept: Vec::new(), total: 0, limit };
    let deadline = timeout_ms.filter(|ms| *ms > 0).map(|ms| Instant::now() + Duration::from_millis(ms as u64));
    let mut stdout = group.child.stdout.take();
    let mut stderr = group.child.stderr.take();
    let ending = loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Some(Ending::Timeout);
        }
        // The run ends when the program does. A child it left running may
        // hold its stdout open for as long as it lives; what the program
        // wrote before it exited is in the pipe, and is read now.
        if group.child.try_wait().ok().flatten().is_some() {
            drain(&mut stdout, &mut out);
            drain(&mut stderr, &mut err);
            break None;
        }
        wait_readable(stdout.as_ref(), stderr.as_ref(), deadline);
        drain(&mut stdout, &mut out);
        drain(&mut stderr, &mut err);
        unsafe {
            // A cancel ends the program, not the worker.
            if pg_sys::QueryCancelPending != 0 {
                pg_sys::QueryCancelPending = 0;
                break Some(Ending::Cancel);
            }
            // A shutdown exits the process with FATAL, past every Drop.
            if pg_sys::ProcDiePending != 0 {
                group.kill();
            }
        }
        pgrx::check_for_interrupts!();
    };
    if ending.is_some() {
        group.kill();
    }
    let status = group.child.wait();
    group.done = true;

    let exit_code = status.as_ref().ok().and_then(|s| s.code());
    let cancelled = |why: &str| Outcome::failed(Failure::new(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, why));
    let ended = |why: String| Outcome::failed(Failure::new(PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, why));
    let mut outcome = match (ending, status) {
        (Some(Ending::Timeout), _) => {
            Outcome { status: RunStatus::Timeout, ..cancelled("the program ran past its timeout and was killed") }
        }
        (Some(Ending::Cancel), _) => cancelled("the program was killed on a cancel request"),
        (None, Ok(s)) if s.success() => Outcome::succeeded(None),
        (None, Ok(s)) => match (s.code(), s.signal()) {
            (Some(code), _) => ended(format!("the program exited with code {code}")),
            (None, Some(signal)) => ended(format!("the program was killed by signal {signal}")),
            _ => ended("the program ended abnormally".into()),
        },
        (None, Err(e)) => {
            let why = format!("could not wait for the program: {e}");
            Outcome::failed(Failure::new(PgSqlErrorCode::ERRCODE_SYSTEM_ERROR, why))
        }
    };
    outcome.program = Some(ProgramOutput { exit_code, stdout: out.text(), stderr: err.text() });
    outcome
}

/// Sleeps until one of the streams has something to read (or closed), the
/// deadline, or a tenth of a second, whichever comes first; the short
/// bound keeps cancels and shutdowns prompt.
fn wait_readable(
    stdout: Option<&std::process::ChildStdout>,
    stderr: Option<&std::process::ChildStderr>,
    deadline: Option<Instant>,
) {
    let mut fds: Vec<libc::pollfd> = [stdout.map(|s| s.as_raw_fd()), stderr.map(|s| s.as_raw_fd())]
        .into_iter()
        .flatten()
        .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
        .collect();
    let mut wait = Duration::from_millis(100);
    if let Some(d) = deadline {
        wait = wait.min(d.saturating_duration_since(Instant::now()));
    }
    if fds.is_empty() {
        // Both streams closed; the program has yet to exit.
        std::thread::sleep(wait.min(Duration::from_millis(10)));
        return;
    }
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis() as i32) };
}

/// Reads what a stream has now, without blocking; closes it at its end.
fn drain<R: Read + AsRawFd>(stream: &mut Option<R>, into: &mut Capture) {
    let Some(s) = stream.as_mut() else { return };
    let mut fd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let mut buf = [0u8; 65536];
    loop {
        if unsafe { libc::poll(&mut fd, 1, 0) } <= 0 || fd.revents == 0 {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                *stream = None;
                return;
            }
            Ok(n) => into.take(&buf[..n]),
        }
    }
}

/// Whether `role` may run programs: a superuser, or one with the privileges
/// of pg_execute_server_program, the rule of `COPY ... PROGRAM`.
pub fn may_run_programs(role: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::superuser_arg(role)
            || pg_sys::has_privs_of_role(role, pg_sys::Oid::from(pg_sys::ROLE_PG_EXECUTE_SERVER_PROGRAM))
    }
}
