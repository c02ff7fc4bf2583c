-- The event log is append-only (issue 13, section 4): the service never updates or deletes an
-- event (`import` writes through INSERT), so the database refuses both, TRUNCATE too, and an
-- insider with SQL access must first drop these triggers, which is itself a schema change a
-- DBA's tooling sees. A later migration that must rewrite the table drops and re-creates them.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % of events is refused', TG_OP;
END
$$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
