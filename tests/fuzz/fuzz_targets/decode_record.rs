//! Decoding stored records into events must never panic, whatever the `type`, `data`, `metadata`
//! and version columns hold: every failure is a typed error.
//!
//! `cargo +nightly fuzz run decode_record --fuzz-dir tests/fuzz -- -max_total_time=600`

#![no_main]

use arbitrary::Arbitrary;
use es_core::{Event, Metadata, Rebuild, RecordedEvent};
use es_tests::domain::{Completed, Created, DueDateSet, Task, TitleUpdated};
use libfuzzer_sys::fuzz_target;

/// One stored row, as corrupt as the fuzzer likes: a tag picked among the real ones (so that
/// decoding reaches serde) or made up, and arbitrary JSON text.
#[derive(Arbitrary, Debug)]
struct Row {
    tag: Tag,
    data: String,
    metadata: String,
    version: i64,
}

#[derive(Arbitrary, Debug)]
enum Tag {
    Known(u8),
    Made(String),
}

const TAGS: [&str; 4] = [Created::TAG, TitleUpdated::TAG, DueDateSet::TAG, Completed::TAG];

fuzz_target!(|rows: Vec<Row>| {
    let mut rebuild = Rebuild::<Task>::new(1).expect("the registry builds");
    for (position, row) in rows.into_iter().enumerate() {
        let event_type = match row.tag {
            Tag::Known(n) => TAGS[usize::from(n) % TAGS.len()].to_owned(),
            Tag::Made(tag) => tag,
        };
        let metadata = Metadata::from_json(&row.metadata).unwrap_or_default();
        let record = RecordedEvent {
            id: position as i64 + 1,
            aggregate_id: 1,
            version: row.version,
            event_type,
            data: row.data,
            metadata: metadata.into(),
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        let _ = TitleUpdated::decode(&record);
        if rebuild.apply(&record).is_err() {
            return;
        }
    }
    let _ = rebuild.finish();
});
