-- Short integer ids for strings that recur on many rows (stream names, event types, payload
-- shapes, actors, client addresses): a row holds the id, one or two bytes, instead of the text
-- again (issue 14, item 6). A term, once given an id, keeps it for ever, and nothing owns this
-- table but the database: a projection rebuild leaves it as it is.
CREATE TABLE terms (
    id   INTEGER PRIMARY KEY,
    term TEXT    NOT NULL UNIQUE
);
