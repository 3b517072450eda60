//! What tantivy stores for each chunk.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TextFieldIndexing,
    TextOptions,
};

#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) path: Field,
    pub(super) path_text: Field,
    pub(super) kind: Field,
    pub(super) extension: Field,
    pub(super) title: Field,
    pub(super) headings: Field,
    pub(super) text: Field,
    pub(super) line_start: Field,
    pub(super) line_end: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let stemmed = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        // FAST: ranking reads a candidate's id from its column, not from the document store.
        id: builder.add_u64_field("id", INDEXED | STORED | FAST),
        path: builder.add_text_field("path", STRING | STORED),
        path_text: builder.add_text_field("path_text", TEXT),
        kind: builder.add_text_field("kind", STRING | STORED),
        extension: builder.add_text_field("extension", STRING),
        title: builder.add_text_field("title", stemmed.clone()),
        headings: builder.add_text_field("headings", stemmed.clone()),
        text: builder.add_text_field("text", stemmed),
        line_start: builder.add_u64_field("line_start", STORED),
        line_end: builder.add_u64_field("line_end", STORED),
    };
    (builder.build(), fields)
}
