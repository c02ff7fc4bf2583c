-- The event rows as readers outside the store read them (issue 14, item 6): on SQLite the view
-- `event_rows` puts back the texts the `events` row holds as term ids
-- (migrations/sqlite/20261207000010_event_row_terms.sql). PostgreSQL stores every column as it
-- was, so here the view is the table itself, with NULL for the two terms SQLite's decoding needs
-- (the payload's keys and the metadata's head). It stays insertable: the two are not columns.
CREATE VIEW event_rows AS
SELECT position, stream, version, event_id, event_type, schema_version, payload, metadata,
       recorded_at, hash, NULL::text AS payload_keys, NULL::text AS metadata_context
FROM events;
