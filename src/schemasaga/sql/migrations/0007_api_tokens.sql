-- API tokens. A token reads ssg_<lookup_id>_<secret>: the row is found by its lookup_id, and the
-- SHA-256 of the whole token compared with secret_hash; the token itself is never stored. Revoked
-- tokens stay (their name is not given again), so the events that name them keep meaning one token.
CREATE TABLE api_tokens (
    name        text        PRIMARY KEY,
    lookup_id   text        NOT NULL UNIQUE,
    secret_hash text        NOT NULL,
    scope       text        NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    databases   text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
