//! Running a program in its own process group, as the `script` check and `klaxon exec`
//! do: its output is captured bounded (the first [`HEAD_BYTES`] and the last
//! [`TAIL_BYTES`] of each stream) and, if asked, passed through to klaxon's own stdout
//! and stderr as it comes. On timeout or interruption the whole group gets SIGTERM, then
//! SIGKILL after [`KILL_GRACE`]; a run that is dropped half way kills the group; the
//! child is always reaped.
//!
//! Every group still running is known process-wide, so that a process that must exit
//! at once (a second Ctrl-C) can SIGKILL them all first with [`kill_all`] and leave
//! nothing behind.

use std::collections::VecDeque;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::{Metric, perfdata, text};

/// Bytes kept from the start of each output stream.
pub const HEAD_BYTES: usize = 4 * 1024;
/// Bytes kept from the end of each output stream.
pub const TAIL_BYTES: usize = 60 * 1024;
/// How long a timed-out group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the program exits, how long to wait for processes it left behind to close its
/// output; past that they are stopped with the group.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Both streams as one text: stdout, then stderr.
pub fn join_output(stdout: String, stderr: String) -> String {
    match (stdout.is_empty(), stderr.is_empty()) {
        (_, true) => stdout,
        (true, false) => stderr,
        (false, false) if stdout.ends_with('\n') => stdout + &stderr,
        (false, false) => stdout + "\n" + &stderr,
    }
}

/// `exit 137` or `killed by signal 9`.
pub fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Waits for the readers to reach end of file; `false` if they did not by `until`.
async fn drained(readers: &mut tokio::task::JoinSet<()>, until: Instant) -> bool {
    tokio::time::timeout_at(until, async {
        while readers.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}

/// SIGTERM to the group; SIGKILL to whatever is left after [`KILL_GRACE`]. Reaps
/// `child` when given.
async fn stop_group(group: Pid, mut child: Option<&mut tokio::process::Child>) {
    let _ = killpg(group, Signal::SIGTERM);
    let grace_end = Instant::now() + KILL_GRACE;
    if let Some(child) = child.as_deref_mut() {
        let _ = tokio::time::timeout_at(grace_end, child.wait()).await;
    }
    // Grandchildren are not ours to wait for: poll until the group is gone.
    while group_exists(group) && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_exists(group) {
        let _ = killpg(group, Signal::SIGKILL);
    }
    if let Some(child) = child {
        let _ = child.wait().await;
    }
}

/// Whether any process of the group is left (zombies count until their parent reaps
/// them).
fn group_exists(group: Pid) -> bool {
    killpg(group, None).is_ok()
}

/// The groups started by [`run`] and not finished yet, for [`kill_all`].
static LIVE: Mutex<Live> = Mutex::new(Live {
    groups: Vec::new(),
    closed: false,
});

struct Live {
    groups: Vec<Pid>,
    /// Set by [`kill_all`]: nothing new may start.
    closed: bool,
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILLs the process group of every program [`run`] started that has not finished,
/// and refuses to start any more: for a process about to exit without waiting (a
/// second Ctrl-C), so that none of its groups outlive it.
pub fn kill_all() {
    let mut live = live();
    live.closed = true;
    for &group in &live.groups {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Starts `command` and registers its group, unless [`kill_all`] ran. The registry stays
/// locked across the spawn, so a [`kill_all`] on another thread either comes first (and
/// nothing starts) or sees the new group.
fn spawn_registered(
    command: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, GroupGuard)> {
    let mut live = live();
    if live.closed {
        return Err(std::io::Error::other("klaxon is exiting"));
    }
    let child = command.spawn()?;
    // `process_group(0)` made the child the leader of a group with its own id.
    let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        // Only when the child was already reaped, which nothing here has done.
        return Err(std::io::Error::other("lost the process id"));
    };
    live.groups.push(group);
    Ok((
        child,
        GroupGuard {
            group,
            stopped: false,
        },
    ))
}

/// Forgets the group when its run ends, and kills it if the run is dropped half way
/// (its task cancelled), so nothing the program started outlives it.
struct GroupGuard {
    group: Pid,
    /// The run stopped the group or saw it close its output: no kill on drop.
    stopped: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = killpg(self.group, Signal::SIGKILL);
        }
        live().groups.retain(|&g| g != self.group);
    }
}

/// Reads a stream to its end into `capture`, and, with `echo`, writes each chunk on to
/// klaxon's own stream as it comes (a failed echo does not stop the capture).
async fn read_into(
    mut stream: impl AsyncRead + Unpin,
    capture: Arc<Mutex<Capture>>,
    mut echo: Option<Box<dyn Write + Send>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                capture
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(&buf[..n]);
                // A plain blocking write: a chunk at a time to a pipe or terminal, the
                // same as the program would have done itself.
                if let Some(out) = echo.as_mut()
                    && (out.write_all(&buf[..n]).is_err() || out.flush().is_err())
                {
                    echo = None;
                }
            }
        }
    }
}

fn take(capture: &Mutex<Capture>) -> Capture {
    std::mem::take(&mut *capture.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One output stream, bounded: its first [`HEAD_BYTES`], its last [`TAIL_BYTES`], and
/// how many bytes between them were dropped.
#[derive(Debug, Default)]
pub struct Capture {
    pub(crate) head: Vec<u8>,
    pub(crate) tail: VecDeque<u8>,
    pub(crate) dropped: u64,
}

impl Capture {
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        let room = HEAD_BYTES - self.head.len();
        let (first, rest) = data.split_at(room.min(data.len()));
        self.head.extend_from_slice(first);
        data = rest;
        if data.len() >= TAIL_BYTES {
            self.dropped += (self.tail.len() + data.len() - TAIL_BYTES) as u64;
            self.tail.clear();
            self.tail.extend(&data[data.len() - TAIL_BYTES..]);
            return;
        }
        self.tail.extend(data);
        let excess = self.tail.len().saturating_sub(TAIL_BYTES);
        if excess > 0 {
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The perfdata in the output kept: all of it when nothing was dropped, else only
    /// the first line's, when that line was kept whole.
    pub(crate) fn metrics(&self) -> Vec<Metric> {
        if self.dropped == 0 {
            let mut all = self.head.clone();
            all.extend(self.tail.iter());
            return perfdata::from_output(&String::from_utf8_lossy(&all));
        }
        match self.head.iter().position(|&b| b == b'\n') {
            Some(end) => perfdata::from_first_line(&String::from_utf8_lossy(&self.head[..end])),
            None => Vec::new(),
        }
    }

    /// The text kept, with a marker where bytes were dropped; lossy UTF-8.
    pub fn render(&self) -> String {
        let mut bytes = self.head.clone();
        if self.dropped > 0 {
            if !bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(format!("[… {} bytes dropped …]\n", self.dropped).as_bytes());
        }
        bytes.extend(self.tail.iter());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// How a run of a program ended.
#[derive(Debug)]
pub enum Ending {
    Exited(ExitStatus),
    TimedOut,
    /// The `interrupt` future completed first.
    Interrupted,
    /// Waiting for the child failed.
    Lost(std::io::Error),
}

impl Ending {
    /// `exit 3`, `killed by signal 9`, `timed out after 5s`, …
    pub fn describe(&self, program: &str, timeout: Duration) -> String {
        match self {
            Ending::Exited(status) => exit_text(*status),
            Ending::TimedOut => text::timed_out(timeout),
            Ending::Interrupted => "interrupted".to_owned(),
            Ending::Lost(e) => format!("lost track of `{program}`: {e}"),
        }
    }
}

/// A finished run: how it ended and what it printed.
#[derive(Debug)]
pub struct Ran {
    pub ending: Ending,
    pub stdout: Capture,
    pub stderr: Capture,
    pub elapsed: Duration,
}

impl Ran {
    /// Both streams' kept text, stdout first.
    pub fn output(&self) -> String {
        join_output(self.stdout.render(), self.stderr.render())
    }
}

/// Runs `command` (its program, arguments, environment and stdin set by the caller) in
/// a process group of its own, for at most `timeout`, or until `interrupt` completes.
/// With `echo`, its stdout and stderr are also written to klaxon's as they come.
/// Fails only when the program cannot be started.
pub async fn run(
    mut command: tokio::process::Command,
    timeout: Duration,
    echo: bool,
    interrupt: impl Future<Output = ()>,
) -> std::io::Result<Ran> {
    let start = Instant::now();
    let deadline = start + timeout;
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // If the run is cancelled, tokio kills and reaps the child; the guard kills
        // the rest of its group.
        .kill_on_drop(true);
    let (mut child, mut guard) = spawn_registered(&mut command)?;
    let group = guard.group;

    let stdout = Arc::new(Mutex::new(Capture::default()));
    let stderr = Arc::new(Mutex::new(Capture::default()));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(read_into(
            out,
            stdout.clone(),
            echo.then(|| Box::new(std::io::stdout()) as Box<dyn Write + Send>),
        ));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(read_into(
            err,
            stderr.clone(),
            echo.then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>),
        ));
    }

    let waited = tokio::select! {
        waited = tokio::time::timeout_at(deadline, child.wait()) => Some(waited),
        () = interrupt => None,
    };
    let ending = match waited {
        Some(Ok(Ok(status))) => {
            // Processes the program left in the background may still hold its output.
            let drain_until = deadline.min(Instant::now() + DRAIN_AFTER_EXIT);
            if !drained(&mut readers, drain_until).await {
                stop_group(group, None).await;
            }
            Ending::Exited(status)
        }
        Some(Ok(Err(e))) => {
            stop_group(group, Some(&mut child)).await;
            Ending::Lost(e)
        }
        Some(Err(_)) => {
            stop_group(group, Some(&mut child)).await;
            Ending::TimedOut
        }
        None => {
            stop_group(group, Some(&mut child)).await;
            Ending::Interrupted
        }
    };
    // Everything in the group has been killed or has closed its output by now; a
    // reader still blocked is not worth waiting for.
    if !drained(&mut readers, Instant::now() + Duration::from_millis(500)).await {
        readers.abort_all();
    }
    guard.stopped = true;
    drop(guard);
    Ok(Ran {
        ending,
        stdout: take(&stdout),
        stderr: take(&stderr),
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Capture::default();
        c.push(&[b'a'; HEAD_BYTES - 1]);
        c.push(b"bc");
        assert_eq!(c.head.len(), HEAD_BYTES);
        assert_eq!(c.tail, [b'c']);
        c.push(&vec![b'x'; TAIL_BYTES]);
        assert_eq!(c.dropped, 1);
        c.push(&vec![b'y'; 3 * TAIL_BYTES]);
        assert_eq!(c.dropped, 1 + 3 * TAIL_BYTES as u64);
        assert!(c.tail.iter().all(|&b| b == b'y'));
        assert_eq!(c.tail.len(), TAIL_BYTES);
        c.push(b"z");
        assert_eq!(c.tail.back(), Some(&b'z'));
        assert_eq!(c.tail.len(), TAIL_BYTES);
        assert_eq!(c.dropped, 2 + 3 * TAIL_BYTES as u64);
    }
}
