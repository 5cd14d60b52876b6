"""The stock worker: owns stock levels and reservations; nobody else writes them."""
