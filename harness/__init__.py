"""What the tests, the chaos run and the benchmarks share: clients that speak to
cartflow as a foreign producer would, worker processes to start and kill,
isolated deployments on the shared servers, and workloads."""
