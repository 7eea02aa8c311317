/**
 * PostgreSQL tables (in the connection's current schema, shared by every namespace: each row carries its own). Text
 * keys compare byte for byte (deterministic collations), so names differing only in case stay apart.
 */
import { SCHEMA_VERSION } from '../sql/schema.js';

/** The server's clock in epoch ms, as the driver's dialect reads it. */
const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/**
 * One look at a name's line (SqlDriver's #attempt, statement for statement), as one call: one round trip and one
 * transaction where the driver's own look takes six. Each statement takes a fresh snapshot (a VOLATILE function in
 * READ COMMITTED), the same as the statements of the driver's transaction. A refused limit is found before anything is
 * written, so that it changes nothing. Returns o_status 'token' (o_token), 'wait' (o_wait_ms: until a holder ahead
 * expires, or NULL), 'gone' (the session is not live) or 'limit' (o_lim: the limit the line's requests name).
 */
const ATTEMPT_FUNCTION = `CREATE OR REPLACE FUNCTION concord_attempt(
  p_ns text, p_kind text, p_name text, p_session text, p_member text, p_queue boolean, p_slot integer,
  p_shared boolean, p_lim integer, p_channel text,
  OUT o_status text, OUT o_token bigint, OUT o_wait_ms bigint, OUT o_lim integer
) LANGUAGE plpgsql VOLATILE AS $concord$
DECLARE
  v_topic text := 'l:' || p_kind || ':' || p_name;
  v_fence bigint;
  v_holder text;
  v_left bigint;
  v_free_holder boolean := false;
  v_changed boolean := false;
  v_held boolean;
  v_dead bigint[] := '{}';
  v_ids bigint[] := '{}';
  v_sessions text[] := '{}';
  v_slots integer[] := '{}';
  v_shared boolean[] := '{}';
  v_lims integer[] := '{}';
  v_tokens bigint[] := '{}';
  v_lefts bigint[] := '{}';
  v_n integer := 0;
  v_at integer := 0;
  v_mine bigint;
  v_holding integer := 0;
  v_all_shared boolean;
  r record;
  i integer;
BEGIN
  PERFORM 1 FROM concord_sessions WHERE id = p_session AND expires_at > ${NOW_MS} FOR KEY SHARE;
  IF NOT FOUND THEN
    o_status := 'gone';
    RETURN;
  END IF;
  SELECT fence, session INTO v_fence, v_holder FROM concord_locks WHERE ns = p_ns AND kind = p_kind AND name = p_name FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO concord_locks (ns, kind, name, fence) VALUES (p_ns, p_kind, p_name, 0) ON CONFLICT DO NOTHING;
    SELECT fence, session INTO v_fence, v_holder FROM concord_locks WHERE ns = p_ns AND kind = p_kind AND name = p_name FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the lock row vanished';
    END IF;
  END IF;
  IF v_holder IS NOT NULL AND v_holder <> p_session THEN
    SELECT expires_at - ${NOW_MS} INTO v_left FROM concord_sessions WHERE id = v_holder;
    IF coalesce(v_left, 0) > 0 THEN
      o_wait_ms := v_left;
    ELSE
      v_free_holder := true;
    END IF;
  END IF;
  v_held := o_wait_ms IS NOT NULL OR v_holder IS NOT DISTINCT FROM p_session;
  FOR r IN
    SELECT w.id, w.session, w.slot, w.shared, w.lim, w.token, s.expires_at - ${NOW_MS} AS left_ms
      FROM concord_waiters w LEFT JOIN concord_sessions s ON s.id = w.session
     WHERE w.ns = p_ns AND w.kind = p_kind AND w.name = p_name ORDER BY w.id
  LOOP
    IF coalesce(r.left_ms, 0) > 0 THEN
      v_n := v_n + 1;
      v_ids[v_n] := r.id;
      v_sessions[v_n] := r.session;
      v_slots[v_n] := r.slot;
      v_shared[v_n] := r.shared = 1;
      v_lims[v_n] := r.lim;
      v_tokens[v_n] := r.token;
      v_lefts[v_n] := r.left_ms;
      IF r.lim <> p_lim AND o_lim IS NULL THEN
        o_lim := r.lim;
      END IF;
      IF r.session = p_session AND r.slot = p_slot THEN
        v_at := v_n;
      END IF;
    ELSE
      v_dead := v_dead || r.id;
    END IF;
  END LOOP;
  IF o_lim IS NOT NULL THEN
    -- Refused before anything was written.
    o_status := 'limit';
    o_wait_ms := NULL;
    RETURN;
  END IF;
  IF v_free_holder THEN
    -- Held by a session that has expired: free (its reaper ends the rest of it).
    UPDATE concord_locks SET session = NULL, member = NULL, token = NULL WHERE ns = p_ns AND kind = p_kind AND name = p_name;
    v_changed := true;
  END IF;
  IF cardinality(v_dead) > 0 THEN
    DELETE FROM concord_waiters WHERE id = ANY (v_dead);
    v_changed := true;
  END IF;
  IF v_at > 0 THEN
    v_mine := v_ids[v_at];
    IF v_tokens[v_at] IS NOT NULL THEN
      -- Granted before (its look committed, but the answer was lost).
      IF v_changed THEN
        PERFORM pg_notify(p_channel, v_topic);
      END IF;
      o_status := 'token';
      o_token := v_tokens[v_at];
      o_wait_ms := NULL;
      RETURN;
    END IF;
  ELSE
    -- Not in line yet: it would be the last (1-based positions here).
    v_at := v_n + 1;
    v_shared[v_at] := p_shared;
    v_lims[v_at] := p_lim;
  END IF;
  -- holdsAt: how many requests at the head of the line hold it.
  IF NOT v_held AND cardinality(v_shared) > 0 THEN
    IF NOT v_shared[1] THEN
      v_holding := 1;
    ELSE
      FOR i IN 1 .. cardinality(v_shared) LOOP
        EXIT WHEN NOT v_shared[i] OR (v_lims[i] > 0 AND v_holding >= v_lims[i]);
        v_holding := v_holding + 1;
      END LOOP;
    END IF;
  END IF;
  IF v_at <= v_holding AND NOT p_shared THEN
    o_token := v_fence + 1;
    UPDATE concord_locks SET fence = o_token, session = p_session, member = p_member, token = o_token
     WHERE ns = p_ns AND kind = p_kind AND name = p_name;
    IF v_mine IS NOT NULL THEN
      DELETE FROM concord_waiters WHERE id = v_mine;
    END IF;
    -- Leader watchers hear of every new term; lock waiters need only releases.
    IF p_kind = 'leader' OR v_changed THEN
      PERFORM pg_notify(p_channel, v_topic);
    END IF;
    o_status := 'token';
    o_wait_ms := NULL;
    RETURN;
  END IF;
  v_all_shared := true;
  FOR i IN 1 .. v_at - 1 LOOP
    IF v_tokens[i] IS NULL THEN
      v_all_shared := false;
    END IF;
  END LOOP;
  IF v_at <= v_holding AND (v_mine IS NULL OR v_all_shared) THEN
    o_token := v_fence + 1;
    IF v_mine IS NOT NULL THEN
      UPDATE concord_waiters SET token = o_token WHERE id = v_mine;
    ELSE
      INSERT INTO concord_waiters (ns, kind, name, session, slot, shared, lim, member, token, since)
      VALUES (p_ns, p_kind, p_name, p_session, p_slot, 1, p_lim, p_member, o_token, ${NOW_MS});
    END IF;
    UPDATE concord_locks SET fence = o_token WHERE ns = p_ns AND kind = p_kind AND name = p_name;
    -- The shared waiters granted with it take their tokens after it: they look again when it has.
    FOR i IN v_at + 1 .. least(v_holding, v_n) LOOP
      IF v_tokens[i] IS NULL THEN
        v_changed := true;
      END IF;
    END LOOP;
    IF v_changed THEN
      PERFORM pg_notify(p_channel, v_topic);
    END IF;
    o_status := 'token';
    o_wait_ms := NULL;
    RETURN;
  END IF;
  -- Waiting: a reap is due when a holder ahead of it expires (the exclusive one, or a shared one).
  FOR i IN 1 .. least(v_at - 1, v_n) LOOP
    IF v_tokens[i] IS NOT NULL THEN
      o_wait_ms := least(coalesce(o_wait_ms, v_lefts[i]), v_lefts[i]);
    END IF;
  END LOOP;
  IF p_queue AND v_mine IS NULL THEN
    INSERT INTO concord_waiters (ns, kind, name, session, slot, shared, lim, member, since)
    VALUES (p_ns, p_kind, p_name, p_session, p_slot, CASE WHEN p_shared THEN 1 ELSE 0 END, p_lim, p_member, ${NOW_MS});
  END IF;
  IF v_changed THEN
    PERFORM pg_notify(p_channel, v_topic);
  END IF;
  o_status := 'wait';
END
$concord$`;

/** The statements that create version SCHEMA_VERSION, each idempotent. */
export const POSTGRES_SCHEMA: readonly string[] = Object.freeze([
  'CREATE TABLE IF NOT EXISTS concord_schema (version integer NOT NULL)',
  `CREATE TABLE IF NOT EXISTS concord_sessions (
  id text PRIMARY KEY, ns text NOT NULL, member text NOT NULL, ttl_ms integer NOT NULL, expires_at bigint NOT NULL
)`,
  'CREATE INDEX IF NOT EXISTS concord_sessions_expiry ON concord_sessions (expires_at)',
  'CREATE TABLE IF NOT EXISTS concord_groups (ns text NOT NULL, name text NOT NULL, PRIMARY KEY (ns, name))',
  'CREATE TABLE IF NOT EXISTS concord_logs (ns text NOT NULL, grp text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (ns, grp))',
  `CREATE TABLE IF NOT EXISTS concord_members (
  ns text NOT NULL, grp text NOT NULL, member text NOT NULL, session text NOT NULL, capabilities text NOT NULL,
  PRIMARY KEY (ns, grp, member)
)`,
  'CREATE INDEX IF NOT EXISTS concord_members_session ON concord_members (session)',
  `CREATE TABLE IF NOT EXISTS concord_changes (
  ns text NOT NULL, grp text NOT NULL, seq bigint NOT NULL, type text NOT NULL, member text NOT NULL, capabilities text,
  PRIMARY KEY (ns, grp, seq)
)`,
  `CREATE TABLE IF NOT EXISTS concord_locks (
  ns text NOT NULL, kind text NOT NULL, name text NOT NULL, fence bigint NOT NULL, session text, member text, token bigint,
  PRIMARY KEY (ns, kind, name)
)`,
  'CREATE INDEX IF NOT EXISTS concord_locks_session ON concord_locks (session) WHERE session IS NOT NULL',
  `CREATE TABLE IF NOT EXISTS concord_waiters (
  id bigserial PRIMARY KEY, ns text NOT NULL, kind text NOT NULL, name text NOT NULL, session text NOT NULL
)`,
  'CREATE INDEX IF NOT EXISTS concord_waiters_lock ON concord_waiters (ns, kind, name, id)',
  'CREATE INDEX IF NOT EXISTS concord_waiters_session ON concord_waiters (session)',
  // Version 2 (shared locks and semaphores); on a version 1 database, the upgrade.
  `ALTER TABLE concord_waiters ADD COLUMN IF NOT EXISTS slot integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS shared smallint NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS lim integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS member text, ADD COLUMN IF NOT EXISTS token bigint`,
  // Version 3 (how long a request has waited).
  'ALTER TABLE concord_waiters ADD COLUMN IF NOT EXISTS since bigint',
  // Version 4 (a lock attempt in one round trip): the function below, replaced whole by each version that changes it
  // (version 5: the session row taken FOR KEY SHARE).
  ATTEMPT_FUNCTION,
  `INSERT INTO concord_schema (version) SELECT ${String(SCHEMA_VERSION)} WHERE NOT EXISTS (SELECT 1 FROM concord_schema)`,
  `UPDATE concord_schema SET version = ${String(SCHEMA_VERSION)} WHERE version < ${String(SCHEMA_VERSION)}`,
]);

/** The script `concord schema --url postgres://...` prints, for a user with CREATE rights to run by hand. */
export function postgresSchemaScript(): string {
  return ['BEGIN;', ...POSTGRES_SCHEMA.map((statement) => `${statement};`), 'COMMIT;', ''].join('\n');
}
