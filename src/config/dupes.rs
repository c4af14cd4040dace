//! Keys written twice in one mapping. PyYAML (and so LiteLLM) keeps the last one;
//! serde_yaml 0.9 refuses the whole file. So the earlier occurrences are blanked out
//! of the text (each character but line breaks becomes a space, so every line and
//! column stays where it was) before serde_yaml reads it, and each one is reported.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::lines::{join_index, join_key};

/// One key written again later in the same mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    /// Field path of the key (`litellm_settings`, `model_list[2].litellm_params.rpm`).
    pub path: String,
    /// 1-based lines of the occurrence that is dropped and of the one that counts.
    pub dropped_line: usize,
    pub kept_line: usize,
}

/// `text` with the earlier occurrences of repeated keys blanked, and those
/// occurrences. Text without repeats (or that yaml-rust2 cannot parse: serde_yaml
/// then reports the syntax error) comes back unchanged.
pub(crate) fn dedupe(text: &str) -> (std::borrow::Cow<'_, str>, Vec<Duplicate>) {
    let mut walker = Walker::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut walker, false).is_err() || walker.blank.is_empty() {
        return (std::borrow::Cow::Borrowed(text), Vec::new());
    }
    let mut blank = walker.blank;
    blank.sort_unstable();
    let mut ranges = blank.iter().peekable();
    let out: String = text
        .chars()
        .enumerate()
        .map(|(i, c)| {
            while ranges.peek().is_some_and(|(_, end)| *end <= i) {
                ranges.next();
            }
            let inside = ranges.peek().is_some_and(|(start, _)| *start <= i);
            if inside && c != '\n' && c != '\r' {
                ' '
            } else {
                c
            }
        })
        .collect();
    (std::borrow::Cow::Owned(out), walker.duplicates)
}

enum Frame {
    Map {
        path: String,
        /// Keys in order, each with where it starts.
        keys: Vec<(String, Marker)>,
        /// Set while the value of the last key is read.
        in_value: bool,
        /// Value paths for child frames.
        value_path: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    /// Character ranges `[start, end)` to blank.
    blank: Vec<(usize, usize)>,
    duplicates: Vec<Duplicate>,
}

impl Walker {
    /// The path of a node that starts now; records keys of mappings.
    fn place(&mut self, scalar: Option<&str>, mark: Marker) -> String {
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Seq { path, next }) => {
                let item = join_index(path, *next);
                *next += 1;
                item
            }
            Some(Frame::Map { path, keys, in_value, value_path }) => {
                if *in_value {
                    *in_value = false;
                    return value_path.take().unwrap_or_default();
                }
                let key = scalar.unwrap_or("?").to_owned();
                let key_path = join_key(path, &key);
                // Complex keys are not compared (serde_yaml refuses most of them anyway).
                if scalar.is_some() {
                    keys.push((key, mark));
                }
                *in_value = true;
                *value_path = Some(key_path.clone());
                key_path
            }
        }
    }

    fn close_map(&mut self, path: &str, keys: &[(String, Marker)]) {
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, (key, _)) in keys.iter().enumerate() {
            last.insert(key, i);
        }
        for (i, (key, mark)) in keys.iter().enumerate() {
            let kept = last[key.as_str()];
            if kept == i {
                continue;
            }
            // Up to the next key of this mapping: the earlier entry and its value.
            let Some((_, next)) = keys.get(i + 1) else { continue };
            self.blank.push((mark.index(), next.index()));
            self.duplicates.push(Duplicate {
                path: join_key(path, key),
                dropped_line: mark.line(),
                kept_line: keys[kept].1.line(),
            });
        }
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
            Event::MappingStart(..) => {
                let path = self.place(None, mark);
                self.stack.push(Frame::Map { path, keys: Vec::new(), in_value: false, value_path: None });
            }
            Event::SequenceStart(..) => {
                let path = self.place(None, mark);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { path, keys, .. }) = self.stack.pop() {
                    self.close_map(&path, &keys);
                }
            }
            Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_occurrences_are_blanked_keeping_lines_and_columns() {
        let text = "a: 1\nb:\n  x: 1\n  x: 2\na: [3,\n  4]\nc: 5\n";
        let (out, dups) = dedupe(text);
        assert_eq!(out, "    \nb:\n      \n  x: 2\na: [3,\n  4]\nc: 5\n");
        assert_eq!(out.lines().count(), text.lines().count());
        assert_eq!(
            dups,
            [
                Duplicate { path: "b.x".into(), dropped_line: 3, kept_line: 4 },
                Duplicate { path: "a".into(), dropped_line: 1, kept_line: 5 },
            ]
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["a"][1].as_u64(), Some(4));
        assert_eq!(v["b"]["x"].as_u64(), Some(2));
    }

    #[test]
    fn keys_in_sequence_items_and_flow_mappings() {
        let text = "l:\n  - m: 1\n    m: 2\n  - {k: 1, k: 2}\n";
        let (out, dups) = dedupe(text);
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["l"][0]["m"].as_u64(), Some(2));
        assert_eq!(v["l"][1]["k"].as_u64(), Some(2));
        assert_eq!(dups.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(), ["l[0].m", "l[1].k"]);
    }

    #[test]
    fn text_without_repeats_is_not_copied() {
        let (out, dups) = dedupe("a: 1\nb: {c: 2}\n");
        assert!(matches!(out, std::borrow::Cow::Borrowed(_)) && dups.is_empty());
        let (out, _) = dedupe("a: [1\n");
        assert_eq!(out, "a: [1\n");
    }
}
