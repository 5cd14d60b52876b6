"""The HTTP gateway: the original carts app's REST API over cartflow's Kafka contract."""
