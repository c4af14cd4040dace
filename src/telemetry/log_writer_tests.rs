use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Limits, LogBuffer, LogWriter};
use tracing_subscriber::fmt::MakeWriter;

/// A sink that records each `write` call; `gate` (if any) holds every write until
/// the test sends on it.
#[derive(Clone, Default)]
struct Recorder {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(gate) = &self.gate {
            let _ = gate.lock().unwrap().recv();
        }
        self.writes.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Recorder {
    fn text(&self) -> String {
        String::from_utf8(self.writes.lock().unwrap().concat()).unwrap()
    }

    fn write_calls(&self) -> usize {
        self.writes.lock().unwrap().len()
    }
}

fn line(writer: &LogWriter, text: &str) {
    writer.make_writer().write_all(text.as_bytes()).unwrap();
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn lines_from_many_threads_arrive_whole_and_in_few_writes() {
    let sink = Recorder::default();
    let (buffer, mut thread) = LogBuffer::start(Box::new(sink.clone()), Limits::default()).unwrap();
    let writer = LogWriter(Arc::clone(&buffer));
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    line(&writer, &format!("thread {t} line {i} {}\n", "x".repeat(100)));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    thread.stop();
    let text = sink.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1000, "every line arrives once");
    for t in 0..4 {
        let mine: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
        let expected: Vec<String> = (0..250).map(|i| format!("thread {t} line {i} {}", "x".repeat(100))).collect();
        assert_eq!(mine, expected, "one thread's lines stay whole and in order");
    }
    // Each batch waits for lines to gather, so 1,000 lines written as fast as possible
    // take a handful of writes; one write per line is what this module exists to avoid.
    assert!(sink.write_calls() <= 100, "{} writes for 1,000 lines", sink.write_calls());
    assert_eq!(buffer.dropped(), 0);
}

#[test]
fn a_line_reaches_the_sink_without_a_stop_or_more_lines() {
    let sink = Recorder::default();
    let (buffer, _thread) = LogBuffer::start(Box::new(sink.clone()), Limits::default()).unwrap();
    let writer = LogWriter(buffer);
    line(&writer, "only line\n");
    eventually("the line to be written", || sink.text() == "only line\n");
    // And again after the writer went idle.
    line(&writer, "second\n");
    eventually("the second line", || sink.text() == "only line\nsecond\n");
}

#[test]
fn a_stuck_reader_costs_dropped_lines_not_waiting_ones() {
    let (release, gate) = mpsc::channel();
    let sink = Recorder { gate: Some(Arc::new(Mutex::new(gate))), ..Recorder::default() };
    let limits = Limits { gather: Duration::from_millis(1), high_water: 64, limit: 1000, ..Limits::default() };
    let (buffer, mut thread) = LogBuffer::start(Box::new(sink.clone()), limits).unwrap();
    let writer = LogWriter(Arc::clone(&buffer));
    // The first line is taken by the writer, which then blocks in the sink.
    line(&writer, &format!("{}\n", "a".repeat(99)));
    eventually("the writer to take the first batch", || buffer.lock().pending.is_empty());
    // Ten more lines of 100 bytes fill the 1,000-byte buffer; the next ten are dropped.
    // None of these calls waits for the sink (it is blocked until `release`).
    let (done_tx, done_rx) = mpsc::channel();
    let producer = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                line(&writer, &format!("{i:02}{}\n", "b".repeat(97)));
            }
            done_tx.send(()).unwrap();
        })
    };
    done_rx.recv_timeout(Duration::from_secs(10)).expect("logging must not wait for a stuck reader");
    producer.join().unwrap();
    assert_eq!(buffer.dropped(), 10);
    drop(release);
    thread.stop();
    let text = sink.text();
    assert_eq!(text.lines().count(), 11, "the first line and the ten that fitted");
    assert!(text.contains("\n09") && !text.contains("\n10"), "the lines past the limit are the dropped ones");
}

#[test]
fn lines_after_stop_are_written_directly() {
    let sink = Recorder::default();
    let (buffer, mut thread) = LogBuffer::start(Box::new(sink.clone()), Limits::default()).unwrap();
    let writer = LogWriter(buffer);
    line(&writer, "before\n");
    thread.stop();
    assert_eq!(sink.text(), "before\n", "stop writes out what waits");
    line(&writer, "after\n");
    assert_eq!(sink.text(), "before\nafter\n", "a line after stop is written by its caller at once");
}

#[test]
fn stop_gives_up_on_a_reader_that_never_reads() {
    let (release, gate) = mpsc::channel::<()>();
    let sink = Recorder { gate: Some(Arc::new(Mutex::new(gate))), ..Recorder::default() };
    let limits = Limits { gather: Duration::from_millis(1), stop_wait: Duration::from_millis(50), ..Limits::default() };
    let (buffer, mut thread) = LogBuffer::start(Box::new(sink.clone()), limits).unwrap();
    let writer = LogWriter(Arc::clone(&buffer));
    line(&writer, "stuck\n");
    eventually("the writer to take the line", || buffer.lock().pending.is_empty());
    let (stopped_tx, stopped_rx) = mpsc::channel();
    std::thread::spawn(move || {
        thread.stop();
        let _ = stopped_tx.send(());
    });
    stopped_rx.recv_timeout(Duration::from_secs(10)).expect("stop must not wait for a reader that never reads");
    // Logging goes on meanwhile without waiting either: the line waits in the buffer.
    line(&writer, "later\n");
    drop(release);
    eventually("the stuck writer to finish once the reader reads", || sink.text() == "stuck\nlater\n");
}
