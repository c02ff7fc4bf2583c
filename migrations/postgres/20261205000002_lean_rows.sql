-- Lean rows (issue 14, item 6): the same as migrations/sqlite/20261205000002_lean_rows.sql.
--
-- `events`: the event id as its 16 bytes and the hash as its 32 (BYTEA; the chain still links
-- the hex form, computed from these); the metadata as a JSON array of its values instead of an
-- object repeating every key (commands/store/src/stored_metadata.rs). Only the storage changes:
-- every hash stays what it was, and `audit verify` re-computes the same values.

-- The compact form of one stored metadata object, or the object unchanged where the array would
-- not decode to exactly it: unknown keys, a value that is not a string, an actor whose keys are
-- not exactly its kind's, an id not in the canonical lower-case form the service writes. Readers
-- take both forms, and the verifier hashes a legacy object as stored.
CREATE FUNCTION pg_temp.lean_metadata(stored TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    m      jsonb;
    actor  jsonb;
    fields text[];
    field  text;
    out    jsonb;
BEGIN
    BEGIN
        m := stored::jsonb;
    EXCEPTION WHEN others THEN
        RETURN stored;
    END;
    IF jsonb_typeof(m) <> 'object' OR jsonb_typeof(m -> 'actor') IS DISTINCT FROM 'object' THEN
        RETURN stored;
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(m) AS e
               WHERE e.key NOT IN ('actor', 'client_ip', 'user_agent', 'correlation_id',
                                   'causation_id')
                  OR (e.key <> 'actor' AND jsonb_typeof(e.value) <> 'string')) THEN
        RETURN stored;
    END IF;
    actor := m -> 'actor';
    IF EXISTS (SELECT 1 FROM jsonb_each(actor) AS e WHERE jsonb_typeof(e.value) <> 'string') THEN
        RETURN stored;
    END IF;
    fields := CASE actor ->> 'kind'
        WHEN 'portal' THEN ARRAY['key_id', 'key_name']
        WHEN 'device' THEN ARRAY['device_id']
        WHEN 'helpdesk' THEN ARRAY['operator', 'key_id']
        WHEN 'system' THEN ARRAY[]::text[]
        WHEN 'operator' THEN ARRAY['name']
        WHEN 'auditor' THEN ARRAY['key_id', 'key_name']
        WHEN 'user' THEN ARRAY[]::text[]
    END;
    IF fields IS NULL THEN
        RETURN stored;
    END IF;
    IF (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(actor) AS t(k))
       IS DISTINCT FROM (SELECT array_agg(f ORDER BY f) FROM unnest(fields || 'kind'::text) AS t(f)) THEN
        RETURN stored;
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each_text(actor) AS e
               WHERE e.key IN ('key_id', 'device_id')
                 AND e.value !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$') THEN
        RETURN stored;
    END IF;
    out := jsonb_build_array(actor -> 'kind');
    FOREACH field IN ARRAY fields LOOP
        out := out || jsonb_build_array(actor -> field);
    END LOOP;
    out := out || jsonb_build_array(m -> 'client_ip', m -> 'user_agent', m -> 'correlation_id',
                                    m -> 'causation_id');
    -- Absent values at the end are left out, as the service writes them.
    WHILE jsonb_array_length(out) > 1 + cardinality(fields) AND jsonb_typeof(out -> -1) = 'null' LOOP
        out := out - (-1);
    END LOOP;
    RETURN out::text;
END
$$;

ALTER TABLE events
    ALTER COLUMN event_id TYPE BYTEA USING decode(replace(event_id, '-', ''), 'hex'),
    ALTER COLUMN hash TYPE BYTEA USING decode(hash, 'hex');
UPDATE events SET metadata = pg_temp.lean_metadata(metadata) WHERE metadata LIKE '{%';
DROP FUNCTION pg_temp.lean_metadata(TEXT);

-- `audit_log` keeps what its indexes need and nothing the event row already holds: the stream,
-- user agent, correlation id and the readable summary come from `events` by position when a page
-- is read (projections/src/audit_log.rs).
ALTER TABLE audit_log
    DROP COLUMN stream,
    DROP COLUMN user_agent,
    DROP COLUMN correlation_id,
    DROP COLUMN summary;
