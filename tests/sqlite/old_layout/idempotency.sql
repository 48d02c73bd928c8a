-- The idempotency.db file of cio-relay before its SQLite layer (git 51cf28a), dumped by sqlite3's
-- iterdump with its page size, user_version and journal mode; made into a file again by
-- tests/sqlite/old_layout/__init__.py, which says what it holds.
PRAGMA page_size = 4096;
BEGIN TRANSACTION;
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    op_ids BLOB NOT NULL,
    done INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key_hash)
) WITHOUT ROWID;
INSERT INTO "idempotency" VALUES('scope-a','7c36b0a9dedde119c75165957c6c9c187e65df1ee5db87c4c58ad503ad88cbe3',X'66696E6765727072696E742D32',X'5B2230314D3933375931434831455152595341415242514353345039222C2230314D3933375931434847515842464252563545533950415741225D',0,1760000000.0);
INSERT INTO "idempotency" VALUES('scope-a','be2974546978e3739e6d6da85c4be9f334ce32df2b9fd4b6ff1b55c0d57e9d44',X'66696E6765727072696E742D31',X'5B2230314D39333759314348475144414A48393538574E5A5A353352225D',1,1760000000.0);
CREATE INDEX idempotency_created_at ON idempotency (created_at);
COMMIT;
PRAGMA user_version = 0;
PRAGMA journal_mode = WAL;
