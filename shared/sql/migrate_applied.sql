SELECT version, name, checksum, partial_statements FROM schema_migrations
