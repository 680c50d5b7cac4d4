"""Event contracts (versioned), view declarations, Delta table schemas and CQL migrations: data the layers compile."""
