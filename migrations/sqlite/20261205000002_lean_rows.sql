-- Lean rows (issue 14, item 6): fewer bytes per event, the same events.
--
-- `events`: the event id as its 16 bytes and the hash as its 32 (the chain still links the hex
-- form, computed from these); the metadata as a JSON array of its values instead of an object
-- repeating every key (commands/store/src/stored_metadata.rs). Only the storage changes: every
-- hash stays what it was, and `audit verify` re-computes the same values.
--
-- SQLite cannot change a column's type, so the table is copied once, converting as it goes.
CREATE TABLE events_lean (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB    NOT NULL, -- the UUID's 16 bytes
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL, -- compact JSON array; a legacy JSON object where noted below
    recorded_at    INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    hash           BLOB,             -- the SHA-256's 32 bytes; NULL only before the chain existed
    CONSTRAINT events_stream_version UNIQUE (stream, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

-- Metadata is converted only where the array decodes to exactly the object stored: known keys
-- only, every value a string, the actor's keys exactly its kind's, ids in the canonical
-- lower-case form the service writes. Anything else (edited by hand, from another tool) stays
-- the object it was; readers take both forms, and the verifier hashes a legacy object as stored.
INSERT INTO events_lean (position, stream, version, event_id, event_type, schema_version, payload,
                         metadata, recorded_at, hash)
SELECT position, stream, version, unhex(replace(event_id, '-', '')), event_type, schema_version,
       payload,
       CASE WHEN json_valid(metadata)
             AND json_type(metadata) = 'object'
             AND json_type(metadata, '$.actor') = 'object'
             AND NOT EXISTS (
                 SELECT 1 FROM json_each(metadata) AS field
                 WHERE field.key NOT IN ('actor', 'client_ip', 'user_agent', 'correlation_id',
                                         'causation_id')
                    OR (field.key <> 'actor' AND field.type <> 'text'))
             AND NOT EXISTS (
                 SELECT 1 FROM json_each(metadata, '$.actor') AS field
                 WHERE field.type <> 'text'
                    OR (field.key IN ('key_id', 'device_id')
                        AND NOT (length(field.value) = 36
                                 AND field.value NOT GLOB '*[^0-9a-f-]*'
                                 AND length(replace(field.value, '-', '')) = 32
                                 AND substr(field.value, 9, 1) = '-'
                                 AND substr(field.value, 14, 1) = '-'
                                 AND substr(field.value, 19, 1) = '-'
                                 AND substr(field.value, 24, 1) = '-')))
             AND (SELECT group_concat(key, ',')
                  FROM (SELECT key FROM json_each(metadata, '$.actor') ORDER BY key))
                 = CASE json_extract(metadata, '$.actor.kind')
                       WHEN 'portal' THEN 'key_id,key_name,kind'
                       WHEN 'device' THEN 'device_id,kind'
                       WHEN 'helpdesk' THEN 'key_id,kind,operator'
                       WHEN 'system' THEN 'kind'
                       WHEN 'operator' THEN 'kind,name'
                       WHEN 'auditor' THEN 'key_id,key_name,kind'
                       WHEN 'user' THEN 'kind'
                   END
        THEN CASE json_extract(metadata, '$.actor.kind')
                 WHEN 'portal' THEN json_array('portal',
                     json_extract(metadata, '$.actor.key_id'),
                     json_extract(metadata, '$.actor.key_name'),
                     json_extract(metadata, '$.client_ip'), json_extract(metadata, '$.user_agent'),
                     json_extract(metadata, '$.correlation_id'),
                     json_extract(metadata, '$.causation_id'))
                 WHEN 'device' THEN json_array('device',
                     json_extract(metadata, '$.actor.device_id'),
                     json_extract(metadata, '$.client_ip'), json_extract(metadata, '$.user_agent'),
                     json_extract(metadata, '$.correlation_id'),
                     json_extract(metadata, '$.causation_id'))
                 WHEN 'helpdesk' THEN json_array('helpdesk',
                     json_extract(metadata, '$.actor.operator'),
                     json_extract(metadata, '$.actor.key_id'),
                     json_extract(metadata, '$.client_ip'), json_extract(metadata, '$.user_agent'),
                     json_extract(metadata, '$.correlation_id'),
                     json_extract(metadata, '$.causation_id'))
                 WHEN 'operator' THEN json_array('operator',
                     json_extract(metadata, '$.actor.name'),
                     json_extract(metadata, '$.client_ip'), json_extract(metadata, '$.user_agent'),
                     json_extract(metadata, '$.correlation_id'),
                     json_extract(metadata, '$.causation_id'))
                 WHEN 'auditor' THEN json_array('auditor',
                     json_extract(metadata, '$.actor.key_id'),
                     json_extract(metadata, '$.actor.key_name'),
                     json_extract(metadata, '$.client_ip'), json_extract(metadata, '$.user_agent'),
                     json_extract(metadata, '$.correlation_id'),
                     json_extract(metadata, '$.causation_id'))
                 ELSE json_array(json_extract(metadata, '$.actor.kind'),
                     json_extract(metadata, '$.client_ip'), json_extract(metadata, '$.user_agent'),
                     json_extract(metadata, '$.correlation_id'),
                     json_extract(metadata, '$.causation_id'))
             END
        ELSE metadata
       END,
       recorded_at, unhex(hash)
FROM events;
DROP TABLE events;
ALTER TABLE events_lean RENAME TO events;

-- Absent optional values at the end of an array are left out, as the service writes them. The
-- actor's own values are strings, so a trailing null is always one of the four optional ones.
UPDATE events SET metadata = json_remove(metadata, '$[#-1]')
WHERE json_type(metadata) = 'array' AND json_type(metadata, '$[#-1]') = 'null';
UPDATE events SET metadata = json_remove(metadata, '$[#-1]')
WHERE json_type(metadata) = 'array' AND json_type(metadata, '$[#-1]') = 'null';
UPDATE events SET metadata = json_remove(metadata, '$[#-1]')
WHERE json_type(metadata) = 'array' AND json_type(metadata, '$[#-1]') = 'null';
UPDATE events SET metadata = json_remove(metadata, '$[#-1]')
WHERE json_type(metadata) = 'array' AND json_type(metadata, '$[#-1]') = 'null';

-- `audit_log` keeps what its indexes need and nothing the event row already holds: the stream,
-- user agent, correlation id and the readable summary come from `events` by position when a page
-- is read (projections/src/audit_log.rs).
ALTER TABLE audit_log DROP COLUMN stream;
ALTER TABLE audit_log DROP COLUMN user_agent;
ALTER TABLE audit_log DROP COLUMN correlation_id;
ALTER TABLE audit_log DROP COLUMN summary;
