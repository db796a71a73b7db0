"""The monitor: Prometheus metrics, the JSON API with JWT actions, Server-Sent
Events and the web page, served by aiohttp inside the daemon (SPEC §8)."""
