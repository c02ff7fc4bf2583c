-- The event row at half its bytes (issue 14, item 6): what recurs on many events is stored once
-- in `terms` and the row holds its id (commands/store/src/stored_row.rs describes the format):
--
-- - `stream_id`, `type_id`: the stream name and the event type. The unique index on the stream
--   and version becomes two integers instead of ~40 bytes of name.
-- - `shape_id`, `payload`: a payload that is a JSON object is its values alone, as a JSON array,
--   and `shape_id` names the term holding its keys (`["at","client_ip",...]`), which recur on
--   every event of a type. NULL: the payload is stored as it is.
-- - `context_id`, `metadata`: the compact metadata array (stored_metadata.rs) split where the
--   request's own ids begin. The term holds the actor, client address and user agent, the same
--   for every event of a session; the row keeps the rest (`[correlation, causation]`). NULL: the
--   metadata is stored whole as before (a legacy object).
--
-- Only the storage changes: every event reads back and hashes exactly as before, so `audit
-- verify` is unaffected. Readers outside the store read the view `event_rows`, with the old
-- columns' names and texts plus the two terms decoding needs; a row inserted into the view by
-- hand (seeders, tests) is converted by its trigger exactly as this migration converts.
--
-- SQLite cannot change a column's type, so the table is copied once, through the view.

-- The append-only triggers (20261206100004_events_append_only.sql) would refuse the copy's
-- last step; they are re-created on the new table at the end.
DROP TRIGGER events_no_update;
DROP TRIGGER events_no_delete;
ALTER TABLE events RENAME TO events_before_terms;

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream_id      INTEGER NOT NULL REFERENCES terms (id),
    version        INTEGER NOT NULL,
    event_id       BLOB    NOT NULL, -- the UUID's 16 bytes
    type_id        INTEGER NOT NULL REFERENCES terms (id),
    schema_version INTEGER NOT NULL,
    shape_id       INTEGER REFERENCES terms (id), -- the payload's keys; NULL: payload as stored
    payload        TEXT    NOT NULL,
    context_id     INTEGER REFERENCES terms (id), -- the metadata's head; NULL: metadata whole
    metadata       TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    hash           BLOB,             -- the SHA-256's 32 bytes; NULL only before the chain existed
    CONSTRAINT events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

-- The old columns, as readers outside the store know them.
CREATE VIEW event_rows AS
SELECT e.position, s.term AS stream, e.version, e.event_id, t.term AS event_type,
       e.schema_version, e.payload, e.metadata, e.recorded_at, e.hash,
       k.term AS payload_keys, c.term AS metadata_context
FROM events e
JOIN terms s ON s.id = e.stream_id
JOIN terms t ON t.id = e.type_id
LEFT JOIN terms k ON k.id = e.shape_id
LEFT JOIN terms c ON c.id = e.context_id;

-- A row in the old form, converted. A payload is split only where its values read back as the
-- same object: valid JSON, an object with at least one key, no key twice, and every key a plain
-- name (so `payload -> key` finds exactly it). `->` gives each value as its JSON text, so
-- numbers keep their digits, booleans stay booleans and containers stay JSON (json_each's own
-- `value` would turn `true` into 1). Metadata is split only where it is a compact array of a
-- known actor kind: the term is its values up to and including the user agent, the row the
-- values after them. The keys and the head are computed once, in the innermost query.
CREATE TRIGGER event_rows_insert INSTEAD OF INSERT ON event_rows
BEGIN
    INSERT OR IGNORE INTO terms (term) VALUES (NEW.stream);
    INSERT OR IGNORE INTO terms (term) VALUES (NEW.event_type);
    -- A NULL term (nothing to intern) is skipped: OR IGNORE covers NOT NULL too.
    INSERT OR IGNORE INTO terms (term)
    SELECT keys FROM (SELECT CASE WHEN json_valid(NEW.payload) THEN
                                      CASE WHEN json_type(NEW.payload) = 'object'
                                            AND EXISTS (SELECT 1 FROM json_each(NEW.payload))
                                            AND NOT EXISTS (SELECT 1 FROM json_each(NEW.payload)
                                                            WHERE key = '' OR key GLOB '*[^A-Za-z0-9_]*'
                                                               OR key GLOB '[0-9]*')
                                            AND (SELECT COUNT(*) = COUNT(DISTINCT key) FROM json_each(NEW.payload))
                                           THEN (SELECT json_group_array(key) FROM json_each(NEW.payload))
                                      END
                                  END AS keys);
    INSERT OR IGNORE INTO terms (term)
    SELECT head FROM (SELECT CASE WHEN json_valid(NEW.metadata) THEN
                                      CASE WHEN json_type(NEW.metadata) = 'array'
                                            AND json_type(NEW.metadata, '$[0]') = 'text'
                                           THEN (SELECT json_group_array(NEW.metadata -> ('$[' || key || ']'))
                                                 FROM json_each(NEW.metadata)
                                                 WHERE key < CASE json_extract(NEW.metadata, '$[0]')
                                                                 WHEN 'portal' THEN 5 WHEN 'auditor' THEN 5
                                                                 WHEN 'helpdesk' THEN 5 WHEN 'console' THEN 5
                                                                 WHEN 'device' THEN 4 WHEN 'operator' THEN 4
                                                                 WHEN 'system' THEN 3 WHEN 'user' THEN 3 END
                                                 HAVING COUNT(*) > 0)
                                      END
                                  END AS head);
    INSERT INTO events (position, stream_id, version, event_id, type_id, schema_version,
                        shape_id, payload, context_id, metadata, recorded_at, hash)
    SELECT NEW.position,
           (SELECT id FROM terms WHERE term = NEW.stream),
           NEW.version, NEW.event_id,
           (SELECT id FROM terms WHERE term = NEW.event_type),
           NEW.schema_version,
           shape.id,
           CASE WHEN shape.id IS NULL THEN NEW.payload
                ELSE (SELECT json_group_array(NEW.payload -> key) FROM json_each(NEW.payload))
           END,
           context.id,
           CASE WHEN context.id IS NULL THEN NEW.metadata
                ELSE (SELECT json_group_array(NEW.metadata -> ('$[' || key || ']'))
                      FROM json_each(NEW.metadata)
                      WHERE key >= json_array_length(context.term))
           END,
           NEW.recorded_at, NEW.hash
    FROM (SELECT CASE WHEN json_valid(NEW.payload) THEN
                              CASE WHEN json_type(NEW.payload) = 'object'
                                    AND EXISTS (SELECT 1 FROM json_each(NEW.payload))
                                    AND NOT EXISTS (SELECT 1 FROM json_each(NEW.payload)
                                                    WHERE key = '' OR key GLOB '*[^A-Za-z0-9_]*'
                                                       OR key GLOB '[0-9]*')
                                    AND (SELECT COUNT(*) = COUNT(DISTINCT key) FROM json_each(NEW.payload))
                                   THEN (SELECT json_group_array(key) FROM json_each(NEW.payload))
                              END
                          END AS keys,
                 CASE WHEN json_valid(NEW.metadata) THEN
                              CASE WHEN json_type(NEW.metadata) = 'array'
                                    AND json_type(NEW.metadata, '$[0]') = 'text'
                                   THEN (SELECT json_group_array(NEW.metadata -> ('$[' || key || ']'))
                                         FROM json_each(NEW.metadata)
                                         WHERE key < CASE json_extract(NEW.metadata, '$[0]')
                                                         WHEN 'portal' THEN 5 WHEN 'auditor' THEN 5
                                                         WHEN 'helpdesk' THEN 5 WHEN 'console' THEN 5
                                                         WHEN 'device' THEN 4 WHEN 'operator' THEN 4
                                                         WHEN 'system' THEN 3 WHEN 'user' THEN 3 END
                                         HAVING COUNT(*) > 0)
                              END
                          END AS head) AS split
    LEFT JOIN terms AS shape ON shape.term = split.keys
    LEFT JOIN terms AS context ON context.term = split.head;
END;

INSERT INTO event_rows (position, stream, version, event_id, event_type, schema_version, payload,
                        metadata, recorded_at, hash)
SELECT position, stream, version, event_id, event_type, schema_version, payload, metadata,
       recorded_at, hash
FROM events_before_terms
ORDER BY position;
DROP TABLE events_before_terms;

-- The log stays append-only.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE of events is refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE from events is refused');
END;
