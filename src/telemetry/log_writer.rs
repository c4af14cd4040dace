//! Where log lines go: one bounded buffer in memory, written to stderr by one thread
//! in batches, so that no request waits on whatever reads the pod's log.
//!
//! `tracing-appender`'s non-blocking writer hands each line to its thread over a
//! channel. At a sidecar's request rates that thread wakes, writes one line and parks
//! again for nearly every request: `scripts/bench-vs-nginx` counted about one
//! `sched_yield`, half a futex wake and half a `write` per request, each a cross-core
//! wake-up on a machine whose cores the app also needs. Here a line is a copy into
//! the buffer under a lock. The thread is woken when the buffer goes from empty to
//! not empty; it then lets lines gather for [`GATHER`] (or until [`HIGH_WATER`]
//! bytes wait) and writes them in one go. Under load that is one wake-up and one
//! `write` per [`GATHER`], not per request; an idle process wakes for nothing.
//!
//! Past [`LIMIT`] bytes waiting (stderr not read), lines are dropped whole and
//! counted, never made to wait. After [`WriterThread::stop`] lines are written directly.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather once the first one arrives: a line shows up
/// in the log at most this late.
pub const GATHER: Duration = Duration::from_millis(20);
/// Bytes waiting that make the writer write at once, whatever [`GATHER`] says.
pub const HIGH_WATER: usize = 256 * 1024;
/// Bytes that may wait at most: about 8,000 access lines, a second or two of them at
/// the request rates a sidecar sees. Past it lines are dropped.
pub const LIMIT: usize = 2 * 1024 * 1024;
/// How long [`WriterThread::stop`] waits for what is left to be written: stderr that is
/// never read must not keep the process from ending.
pub const STOP_WAIT: Duration = Duration::from_secs(1);
/// Capacity the writer keeps between batches; a larger buffer left by a burst is freed.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The buffer shared by every thread that logs and the one that writes.
pub struct LogBuffer {
    state: Mutex<State>,
    /// Wakes the writer: the first line after it went idle, [`HIGH_WATER`], or stop.
    wake: Condvar,
    dropped: AtomicU64,
    limits: Limits,
}

/// The buffer's sizes; tests shrink them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub gather: Duration,
    pub high_water: usize,
    pub limit: usize,
    pub stop_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { gather: GATHER, high_water: HIGH_WATER, limit: LIMIT, stop_wait: STOP_WAIT }
    }
}

struct State {
    pending: Vec<u8>,
    /// The writer waits for a first line: a line into an empty buffer must wake it.
    writer_idle: bool,
    /// Who writes lines out: the thread, or (once stopped) whoever logs them.
    sink: Sink,
}

enum Sink {
    /// The writer thread owns the sink.
    Thread,
    /// Stopped: lines are written by whoever logs them.
    Direct(Box<dyn Write + Send>),
    /// Stopping: the writer is writing out what is left.
    Draining,
}

impl LogBuffer {
    /// Starts the writer thread (named `keyrelay-log`) writing to `sink`.
    pub fn start(sink: Box<dyn Write + Send>, limits: Limits) -> std::io::Result<(Arc<LogBuffer>, WriterThread)> {
        let buffer = Arc::new(LogBuffer {
            state: Mutex::new(State { pending: Vec::new(), writer_idle: false, sink: Sink::Thread }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            limits,
        });
        let shared = Arc::clone(&buffer);
        let (done, finished) = mpsc::channel();
        let handle = std::thread::Builder::new().name("keyrelay-log".to_owned()).spawn(move || {
            shared.run(sink);
            let _ = done.send(());
        })?;
        Ok((Arc::clone(&buffer), WriterThread { buffer, running: Some((handle, finished)) }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one line (whatever one `write` call brings: the fmt layer writes each
    /// event whole), or drops it if [`Limits::limit`] bytes are already waiting.
    pub(super) fn push(&self, line: &[u8]) {
        let mut state = self.lock();
        if let Sink::Direct(sink) = &mut state.sink {
            let _ = sink.write_all(line);
            let _ = sink.flush();
            return;
        }
        let before = state.pending.len();
        if before.saturating_add(line.len()) > self.limits.limit {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.pending.extend_from_slice(line);
        let first = before == 0 && state.writer_idle;
        let high = before < self.limits.high_water && state.pending.len() >= self.limits.high_water;
        if first {
            state.writer_idle = false;
        }
        drop(state);
        if first || high {
            self.wake.notify_one();
        }
    }

    /// Lines dropped since start because [`Limits::limit`] bytes were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn run(&self, mut sink: Box<dyn Write + Send>) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.lock();
            while state.pending.is_empty() && matches!(state.sink, Sink::Thread) {
                state.writer_idle = true;
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.writer_idle = false;
            if matches!(state.sink, Sink::Thread) {
                // Let more lines gather; stop or a full batch cuts the wait short.
                let high_water = self.limits.high_water;
                state = self
                    .wake
                    .wait_timeout_while(state, self.limits.gather, |s| {
                        matches!(s.sink, Sink::Thread) && s.pending.len() < high_water
                    })
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut state.pending, &mut batch);
            let stopping = !matches!(state.sink, Sink::Thread);
            drop(state);
            let _ = sink.write_all(&batch);
            let _ = sink.flush();
            batch.clear();
            if batch.capacity() > KEEP_CAPACITY {
                batch = Vec::new();
            }
            if stopping {
                // Lines pushed while this batch was written are still pending: write
                // them (not under the lock: the sink may block), and hand the sink over
                // under the lock once none is left, so no line slips between.
                loop {
                    let mut state = self.lock();
                    if state.pending.is_empty() {
                        state.sink = Sink::Direct(sink);
                        return;
                    }
                    let rest = std::mem::take(&mut state.pending);
                    drop(state);
                    let _ = sink.write_all(&rest);
                    let _ = sink.flush();
                }
            }
        }
    }
}

/// A handle on the writer thread: [`WriterThread::stop`] writes out what is waiting.
pub struct WriterThread {
    buffer: Arc<LogBuffer>,
    /// The thread, and word from it that it has finished.
    running: Option<(JoinHandle<()>, mpsc::Receiver<()>)>,
}

impl WriterThread {
    /// Writes out every waiting line and ends the thread; lines logged after this are
    /// written directly by the thread that logs them. Waits [`Limits::stop_wait`] at
    /// most: past it (stderr not read) the thread is left to finish on its own.
    pub fn stop(&mut self) {
        let Some((handle, finished)) = self.running.take() else { return };
        {
            let mut state = self.buffer.lock();
            if matches!(state.sink, Sink::Thread) {
                state.sink = Sink::Draining;
            }
        }
        self.buffer.wake.notify_one();
        if !matches!(finished.recv_timeout(self.buffer.limits.stop_wait), Err(mpsc::RecvTimeoutError::Timeout)) {
            let _ = handle.join();
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the fmt layer writes through: each event's line goes into the buffer.
#[derive(Clone)]
pub struct LogWriter(pub Arc<LogBuffer>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.0)
    }
}

/// One event's writer.
pub struct LineWriter<'a>(&'a LogBuffer);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_writer_tests.rs"]
mod tests;
