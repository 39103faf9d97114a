/* store_migrations: the store's schema, one ordered list that every backend
 * runs (store_backend.h): migration i takes a database from schema version
 * i to i + 1, on SQLite and on PostgreSQL alike, so a version means the
 * same tables everywhere.  Append only: a shipped migration is never
 * edited, because databases out there already ran it.
 *
 * Adding one is one entry at the end: .sql alone when the same text runs
 * on both (write the types both know: TEXT, BIGINT for 64-bit numbers,
 * INTEGER for small ones; ALTER TABLE ... ADD COLUMN is the same), or .sql
 * for SQLite and .pg for PostgreSQL where they differ (SQLite's INTEGER is
 * 64-bit, PostgreSQL's 32; AUTOINCREMENT is BIGSERIAL; there is no rowid).
 * No I/O here. */
#include "store_backend.h"

const struct store_migration store_migrations[] = {
    /* 1: servers and their event history. */
    {.sql = "CREATE TABLE servers ("
            "  id TEXT PRIMARY KEY,"
            "  state INTEGER NOT NULL,"
            "  since_ms INTEGER NOT NULL,"
            "  deadline_ms INTEGER NOT NULL,"
            "  retries INTEGER NOT NULL,"
            "  ttl_s INTEGER NOT NULL,"
            "  expires_at_ms INTEGER NOT NULL,"
            "  last_error TEXT NOT NULL,"
            "  ssh_keys TEXT,"
            "  rescue_json TEXT,"
            "  updated_ms INTEGER NOT NULL"
            ");"
            "CREATE TABLE events ("
            "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
            "  server TEXT NOT NULL,"
            "  at_ms INTEGER NOT NULL,"
            "  kind TEXT NOT NULL,"
            "  from_state TEXT,"
            "  to_state TEXT,"
            "  actor TEXT NOT NULL,"
            "  message TEXT NOT NULL"
            ");"
            "CREATE INDEX events_server ON events (server, id);",
     .pg = "CREATE TABLE servers ("
           "  id TEXT PRIMARY KEY,"
           "  state INTEGER NOT NULL,"
           "  since_ms BIGINT NOT NULL,"
           "  deadline_ms BIGINT NOT NULL,"
           "  retries INTEGER NOT NULL,"
           "  ttl_s BIGINT NOT NULL,"
           "  expires_at_ms BIGINT NOT NULL,"
           "  last_error TEXT NOT NULL,"
           "  ssh_keys TEXT,"
           "  rescue_json TEXT,"
           "  updated_ms BIGINT NOT NULL"
           ");"
           "CREATE TABLE events ("
           "  id BIGSERIAL PRIMARY KEY,"
           "  server TEXT NOT NULL,"
           "  at_ms BIGINT NOT NULL,"
           "  kind TEXT NOT NULL,"
           "  from_state TEXT,"
           "  to_state TEXT,"
           "  actor TEXT NOT NULL,"
           "  message TEXT NOT NULL"
           ");"
           "CREATE INDEX events_server ON events (server, id);"},
    /* 2: one-time boot tokens.  PostgreSQL has no rowid: seq stands in for
     * it (the order tokens were added in). */
    {.sql = "CREATE TABLE tokens ("
            "  token TEXT PRIMARY KEY,"
            "  server TEXT NOT NULL,"
            "  created_ms INTEGER NOT NULL,"
            "  revoked_ms INTEGER"
            ");"
            "CREATE INDEX tokens_server ON tokens (server);",
     .pg = "CREATE TABLE tokens ("
           "  token TEXT PRIMARY KEY,"
           "  server TEXT NOT NULL,"
           "  created_ms BIGINT NOT NULL,"
           "  revoked_ms BIGINT,"
           "  seq BIGSERIAL"
           ");"
           "CREATE INDEX tokens_server ON tokens (server);"},
    /* 3: actions stored with a transition and not yet known done, so a
     * restart re-runs exactly those. */
    {.sql = "ALTER TABLE servers ADD COLUMN pending_actions INTEGER NOT NULL"
            " DEFAULT 0;",
     .pg = "ALTER TABLE servers ADD COLUMN pending_actions BIGINT NOT NULL"
           " DEFAULT 0;"},
    /* 4: a token bound to its boot: the address that fetched the kernel,
     * and when the overlay was served (once). */
    {.sql = "ALTER TABLE tokens ADD COLUMN addr TEXT;"
            "ALTER TABLE tokens ADD COLUMN overlay_ms INTEGER;",
     .pg = "ALTER TABLE tokens ADD COLUMN addr TEXT;"
           "ALTER TABLE tokens ADD COLUMN overlay_ms BIGINT;"},
    /* 5 (h13rest's): the portal's sign-in sessions, so a restart signs no
     * one out.  Hashes of the cookie's id and of the token, never either;
     * project NULL is the admin. */
    {.sql = "CREATE TABLE portal_sessions ("
            "  id_hash TEXT PRIMARY KEY,"
            "  token_hash TEXT NOT NULL,"
            "  csrf TEXT NOT NULL,"
            "  project TEXT,"
            "  expires_ms BIGINT NOT NULL"
            ");"
            "CREATE INDEX portal_sessions_expires ON portal_sessions "
            "(expires_ms);"},
    /* 6 (h12rest): which pending actions were sent and not confirmed (a
     * restart waits for their evidence instead of sending them again),
     * and the project a server is in with the event id its history
     * starts at for that project, so a move's cut-off survives a restart
     * and a move made while the daemon was down is seen at start. */
    {.sql = "ALTER TABLE servers ADD COLUMN sent_actions INTEGER NOT NULL"
            " DEFAULT 0;"
            "ALTER TABLE servers ADD COLUMN project TEXT;"
            "ALTER TABLE servers ADD COLUMN project_since_id INTEGER NOT NULL"
            " DEFAULT 0;",
     .pg = "ALTER TABLE servers ADD COLUMN sent_actions BIGINT NOT NULL"
           " DEFAULT 0;"
           "ALTER TABLE servers ADD COLUMN project TEXT;"
           "ALTER TABLE servers ADD COLUMN project_since_id BIGINT NOT NULL"
           " DEFAULT 0;"},
    /* 7 (h15node's): facilities: each one's lease, the actions asked on one
     * node for the active node of a server's facility, and the newest
     * such action each server's row has applied. */
    {.sql = "CREATE TABLE leases ("
            "  facility TEXT PRIMARY KEY,"
            "  holder TEXT NOT NULL,"
            "  expires_ms INTEGER NOT NULL,"
            "  since_ms INTEGER NOT NULL"
            ");"
            "CREATE TABLE actions ("
            "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
            "  facility TEXT NOT NULL,"
            "  server TEXT NOT NULL,"
            "  origin TEXT NOT NULL,"
            "  actor TEXT NOT NULL,"
            "  body TEXT NOT NULL,"
            "  created_ms INTEGER NOT NULL,"
            "  taken_by TEXT,"
            "  taken_ms INTEGER,"
            "  done_ms INTEGER"
            ");"
            "CREATE INDEX actions_waiting ON actions (facility, id)"
            " WHERE done_ms IS NULL;"
            "ALTER TABLE servers ADD COLUMN action_id INTEGER NOT NULL"
            " DEFAULT 0;",
     .pg = "CREATE TABLE leases ("
           "  facility TEXT PRIMARY KEY,"
           "  holder TEXT NOT NULL,"
           "  expires_ms BIGINT NOT NULL,"
           "  since_ms BIGINT NOT NULL"
           ");"
           "CREATE TABLE actions ("
           "  id BIGSERIAL PRIMARY KEY,"
           "  facility TEXT NOT NULL,"
           "  server TEXT NOT NULL,"
           "  origin TEXT NOT NULL,"
           "  actor TEXT NOT NULL,"
           "  body TEXT NOT NULL,"
           "  created_ms BIGINT NOT NULL,"
           "  taken_by TEXT,"
           "  taken_ms BIGINT,"
           "  done_ms BIGINT"
           ");"
           "CREATE INDEX actions_waiting ON actions (facility, id)"
           " WHERE done_ms IS NULL;"
           "ALTER TABLE servers ADD COLUMN action_id BIGINT NOT NULL"
           " DEFAULT 0;"},
    /* Append new migrations here (see the top of this file). */
};

const int store_schema_latest =
    (int)(sizeof(store_migrations) / sizeof(store_migrations[0]));

const char *
store_migration_sql(int i, enum store_dialect d)
{
    const struct store_migration *m = &store_migrations[i];
    return d == STORE_DIALECT_PG && m->pg ? m->pg : m->sql;
}
