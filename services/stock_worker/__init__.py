"""The stock worker: stock levels and reservations (not built yet)."""
