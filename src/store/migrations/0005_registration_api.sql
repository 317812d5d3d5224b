-- The registration API (DESIGN.md flow 3). A registration's callback secret is derived from the
-- region secret, its id and its generation, so a repeated registration returns the same
-- listener URL while only the secret's SHA-384 is stored. The generation is bumped when a
-- deleted registration is registered again: the old Exchange subscription's URL stays dead.

ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS secret_generation INT UNSIGNED NOT NULL DEFAULT 0 AFTER secret_hash;
