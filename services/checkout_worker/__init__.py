"""The checkout worker: checkout sagas, one shared payment, a durable payment deadline."""
