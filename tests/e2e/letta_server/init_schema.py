"""Create Letta's PostgreSQL schema without the alembic migration files (run with the Letta venv's python).

From the tested offline Letta recipe. The letta wheel ships
the ORM but not the alembic/ directory Letta's Docker image runs; Letta's CI checks that the ORM
metadata equals the migrated schema, so `Base.metadata.create_all()` gives an equivalent schema.
Only the migrations create the `message_seq_id` sequence behind `messages.sequence_id` (without
it every message insert violates NOT NULL), so it is added here, and alembic_version is stamped.

Needs LETTA_PG_URI pointing at a database that has `CREATE EXTENSION vector`.
Usage: python init_schema.py [alembic_head_revision]
"""

import os
import sys

from letta.database_utils import get_database_uri_for_context
from letta.orm import Base  # importing registers every table
from sqlalchemy import create_engine, text

uri = os.environ["LETTA_PG_URI"]
head = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LETTA_ALEMBIC_HEAD", "")
engine = create_engine(get_database_uri_for_context(uri, "sync"))
with engine.begin() as conn:
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
Base.metadata.create_all(engine)
with engine.begin() as conn:
    conn.execute(text("CREATE SEQUENCE IF NOT EXISTS message_seq_id"))
    conn.execute(text("ALTER TABLE messages ALTER COLUMN sequence_id SET DEFAULT nextval('message_seq_id')"))
    conn.execute(text("ALTER SEQUENCE message_seq_id OWNED BY messages.sequence_id"))
with engine.begin() as conn:
    conn.execute(text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    if head:
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
print(f"created {len(Base.metadata.tables)} tables")
