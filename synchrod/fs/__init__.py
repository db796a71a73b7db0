"""How bytes move, and where: locating recorder files safely, durable copies
to the target, target paths' usage and writability. Blocking calls only,
run off the event loop."""
