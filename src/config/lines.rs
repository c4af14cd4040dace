//! Field path -> line number, so every diagnostic can point at the line to edit.
//!
//! serde only tells us *which* field is wrong (a path such as
//! `models.gpt-4o.deployments[1].keys[0]`), and values deserialized from a
//! `serde_yaml::Value` have lost their position. A second, event-level pass with
//! yaml-rust2 records where each key and sequence item starts, keyed by the same path
//! syntax, so the two can be joined.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Lines (1-based) of every mapping key and sequence item of one YAML document.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes `text`. A syntax error stops the walk; what was seen before it stays
    /// indexed (the error itself is reported from the serde pass).
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        // Only the first document counts; the serde pass rejects more than one.
        let _ = parser.load(&mut walker, false);
        LineIndex { lines: walker.lines }
    }

    /// The line of `path`, or of its nearest ancestor that appears in the file (a
    /// missing field is reported on the line of the mapping that lacks it).
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut current = path;
        loop {
            if let Some(&line) = self.lines.get(current) {
                return Some(line);
            }
            current = parent(current)?;
        }
    }

    /// The line of exactly `path`, without falling back to a parent.
    pub fn exact(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> none. Keys that contain dots are
/// handled because every shorter prefix is simply tried in turn.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// Appends a mapping key to a path (`models` + `gpt-4o` -> `models.gpt-4o`).
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Appends a sequence index to a path (`keys` + 0 -> `keys[0]`).
pub(crate) fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

enum Frame {
    /// A mapping at `path`; `key` is the path of the key whose value comes next.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Walker {
    /// Where a node that starts now sits, recording keys and items on the way.
    /// `scalar` is the node's text when it is a scalar (it may be a mapping key).
    fn place(&mut self, scalar: Option<&str>, mark: Marker) -> String {
        let line = mark.line();
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Seq { path, next }) => {
                let item = join_index(path, *next);
                *next += 1;
                self.lines.entry(item.clone()).or_insert(line);
                item
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(value_path) => value_path,
                None => {
                    // A key. Complex (non-scalar) keys get a placeholder segment.
                    let key_path = join_key(path, scalar.unwrap_or("?"));
                    self.lines.entry(key_path.clone()).or_insert(line);
                    *key = Some(key_path.clone());
                    key_path
                }
            },
        }
    }

    /// True when the node about to start is a mapping key (not a value).
    fn at_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                self.place(Some(&text), mark);
            }
            Event::Alias(_) => {
                self.place(None, mark);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = self.at_key();
                let path = self.place(None, mark);
                // A complex key's own contents are not addressable: index them under
                // a path nobody asks for.
                let path = if is_key { format!("{path}#key") } else { path };
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
server:
  listen: 127.0.0.1:4000
models:
  gpt-4.1:
    fallbacks: [a, b]
    deployments:
      - provider: openai
        model: gpt-4.1
        keys:
          - K1
          - K2
      - provider: groq
        keys: [K3]
model_list:
  - model_name: x
    litellm_params:
      api_key: os.environ/X
";

    #[test]
    fn keys_and_items_have_their_lines() {
        let idx = LineIndex::build(TEXT);
        assert_eq!(idx.exact("server"), Some(1));
        assert_eq!(idx.exact("server.listen"), Some(2));
        assert_eq!(idx.exact("models.gpt-4.1.fallbacks[1]"), Some(5));
        assert_eq!(idx.exact("models.gpt-4.1.deployments[0]"), Some(7));
        assert_eq!(idx.exact("models.gpt-4.1.deployments[0].model"), Some(8));
        assert_eq!(idx.exact("models.gpt-4.1.deployments[0].keys[1]"), Some(11));
        assert_eq!(idx.exact("models.gpt-4.1.deployments[1]"), Some(12));
        assert_eq!(idx.exact("models.gpt-4.1.deployments[1].keys[0]"), Some(13));
        assert_eq!(idx.exact("model_list[0].litellm_params.api_key"), Some(17));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_parent() {
        let idx = LineIndex::build(TEXT);
        assert_eq!(idx.line("models.gpt-4.1.deployments[1].model"), Some(12));
        assert_eq!(idx.line("models.gpt-4.1.deployments[1].keys[7]"), Some(13));
        assert_eq!(idx.line("server.timeouts.connect"), Some(1));
        assert_eq!(idx.line("nothing.here"), None);
        assert_eq!(idx.exact("models.gpt-4.1.deployments[1].model"), None);
    }

    #[test]
    fn syntax_error_keeps_what_came_before() {
        let idx = LineIndex::build("a: 1\nb:\n  c: [1, 2\nd: 3\n");
        assert_eq!(idx.line("a"), Some(1));
        assert_eq!(idx.line("b.c"), Some(3));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join_key("", "server"), "server");
        assert_eq!(join_key("server", "listen"), "server.listen");
        assert_eq!(join_index("keys", 3), "keys[3]");
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), None);
    }
}
