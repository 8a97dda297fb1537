//! From the parsed document to lines: which node a key path names, which
//! key a byte offset falls in, and which line either is on.
//!
//! `toml_edit` keeps a byte span for every key and value; this module is the
//! only one that reads them. It owns turning a [`Found`] into the
//! [`Problem`]s the operator sees, each on the line of its key or, when the
//! key was left out, of its nearest ancestor in the file. Must never judge a
//! value: what is wrong is the validators' business, where it is is this
//! module's.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

use crate::error::Problem;
use crate::problems::{Found, KeyPath, Segment};

/// Deeper than any key this schema has; bounds the work spent on hostile nesting.
const MAX_LOCATE_DEPTH: usize = 8;

/// A position in the document; arrays of tables hold `Table`s and inline
/// arrays hold `Value`s, so one reference type cannot name every node.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    pub(crate) fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }

    pub(crate) fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(tables)) => tables.get(index).map(Node::Table),
            Node::Item(Item::Value(Value::Array(array))) | Node::Value(Value::Array(array)) => {
                array.get(index).map(Node::Value)
            }
            _ => None,
        }
    }

    /// The child at `segment` and the span that marks it: the key for table
    /// entries, the element itself for array entries.
    fn child(self, segment: &Segment) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match segment {
            Segment::Key(name) => {
                let (key, item) = self.table_like()?.get_key_value(name)?;
                Some((Node::Item(item), key.span()))
            }
            Segment::Index(index) => {
                let node = self.element(*index)?;
                Some((node, node.span()))
            }
        }
    }

    fn children(self) -> Vec<(Segment, Node<'a>, Option<Range<usize>>)> {
        let segments: Vec<Segment> = match self.table_like() {
            Some(table) => table
                .iter()
                .map(|(name, _)| Segment::Key(name.to_owned()))
                .collect(),
            None => (0..)
                .map_while(|i| self.element(i).map(|_| Segment::Index(i)))
                .collect(),
        };
        segments
            .into_iter()
            .filter_map(|segment| {
                let (node, span) = self.child(&segment)?;
                Some((segment, node, span))
            })
            .collect()
    }

    pub(crate) fn to_item(self) -> Item {
        match self {
            Node::Item(item) => item.clone(),
            Node::Table(table) => Item::Table(table.clone()),
            Node::Value(value) => Item::Value(value.clone()),
        }
    }

    /// Extends `path` down to the deepest key or value under this node whose
    /// span holds `offset`, the spot a deserialization error points at.
    pub(crate) fn locate(self, offset: usize, path: &mut KeyPath) {
        locate(self, offset, &mut path.0, 0);
    }
}

fn covers(span: Option<&Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|span| span.start <= offset && offset < span.end.max(span.start + 1))
}

fn locate(node: Node<'_>, offset: usize, path: &mut Vec<Segment>, depth: usize) -> bool {
    if depth >= MAX_LOCATE_DEPTH {
        return false;
    }
    for (segment, child, anchor) in node.children() {
        path.push(segment);
        if covers(anchor.as_ref(), offset)
            || locate(child, offset, path, depth + 1)
            || covers(child.span().as_ref(), offset)
        {
            return true;
        }
        path.pop();
    }
    false
}

/// The line of every byte offset in one text.
#[derive(Debug)]
pub(crate) struct Lines(Vec<usize>);

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        Lines(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    /// The 1-based line holding `offset`.
    pub(crate) fn at(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// A parsed document and the lines of its text.
pub(crate) struct Locator<'a> {
    doc: &'a ImDocument<&'a str>,
    lines: Lines,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(doc: &'a ImDocument<&'a str>, lines: Lines) -> Self {
        Locator { doc, lines }
    }

    /// The node `path` names, if the file has it.
    pub(crate) fn node_at(&self, path: &KeyPath) -> Option<Node<'a>> {
        let mut node = Node::Item(self.doc.as_item());
        for segment in &path.0 {
            node = node.child(segment)?.0;
        }
        Some(node)
    }

    /// The line of `path`, or of its nearest ancestor present in the file
    /// when the key itself was left out.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut node = Node::Item(self.doc.as_item());
        let mut line = None;
        for segment in &path.0 {
            let Some((child, span)) = node.child(segment) else {
                break;
            };
            if let Some(span) = span {
                line = Some(self.lines.at(span.start));
            }
            node = child;
        }
        line
    }

    /// Places every problem on its line. The one place problems are made:
    /// messages quote input between backticks, and
    /// [`levee_common::text::bound_message`] keeps every quoted piece and the
    /// whole message short (check, reload and SIGHUP print them).
    pub(crate) fn problems(&self, found: Found) -> Vec<Problem> {
        found
            .into_entries()
            .into_iter()
            .map(|entry| Problem {
                line: match entry.offset {
                    Some(offset) => Some(self.lines.at(offset)),
                    None => self.line_of(&entry.at),
                },
                key: entry.at.to_string(),
                message: levee_common::text::bound_message(&entry.message),
            })
            .collect()
    }
}
