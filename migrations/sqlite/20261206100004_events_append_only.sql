-- The event log is append-only (issue 13, section 4): the service never updates or deletes an
-- event (`import` writes through INSERT), so the database refuses both, and an insider with SQL
-- access must first drop these triggers, which is itself a schema change a DBA's tooling sees.
-- A later migration that must rewrite the table drops and re-creates them around its work.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE of events is refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE from events is refused');
END;
