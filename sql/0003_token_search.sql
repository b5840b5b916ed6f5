-- Token search (issue #4): one lower-cased text of name, username, createdBy and groups per token,
-- kept by a trigger (array_to_string is not immutable, so a generated column cannot hold it),
-- with a trigram index so `?search=` stays fast over millions of tokens. pg_trgm ships with
-- PostgreSQL's contrib and is a trusted extension (a database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE tokens ADD COLUMN search_text text;

CREATE FUNCTION tokens_search_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_text := lower(NEW.name || ' ' || NEW.username || ' ' || NEW.created_by || ' '
                             || array_to_string(NEW.groups, ' '));
    RETURN NEW;
END;
$$;
CREATE TRIGGER tokens_search_text BEFORE INSERT OR UPDATE OF name, username, created_by, groups ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_search_text();

UPDATE tokens SET search_text = lower(name || ' ' || username || ' ' || created_by || ' ' || array_to_string(groups, ' '));
ALTER TABLE tokens ALTER COLUMN search_text SET NOT NULL;
CREATE INDEX tokens_search_trgm_idx ON tokens USING gin (search_text gin_trgm_ops);
