"""The cart worker: answers cart commands and keeps carts in MongoDB."""
