"""The checkout worker: checkout sagas with a payment deadline (not built yet)."""
