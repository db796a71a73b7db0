"""PostgreSQL plumbing both database roles share: connections (and DSN
redaction), catalog introspection and database identity, SQL files."""
